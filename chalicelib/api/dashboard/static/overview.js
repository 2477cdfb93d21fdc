// Overview: every queue's depths and settings, the health of Redis and PostgreSQL, the
// record's lag (unrecorded events), the workers alive, and the last hour as charts
// (GET /stats/timeline: per-minute figures the server keeps, so a reload keeps them).

import * as api from "./api.js";
import { h, replace, table, row, route, query, num } from "./dom.js";
import { lineChart, legend } from "./chart.js";

const MINUTES = 60;

// The timeline's buckets (per queue and minute, quiet minutes left out) → one slot per
// minute of the last hour: successes and failures summed over the queues; the wait's
// p50 and p99 of the slowest queue that minute (percentiles of several queues cannot
// be added up).
export function slots(buckets, nowMs) {
  const last = Math.floor(nowMs / 60000) * 60000;
  const xs = [];
  for (let i = MINUTES - 1; i >= 0; i--) xs.push(last - i * 60000);
  const at = new Map(xs.map((ms, i) => [ms, i]));
  const ok = xs.map(() => 0), bad = xs.map(() => 0);
  const p50 = xs.map(() => null), p99 = xs.map(() => null);
  for (const b of buckets) {
    const i = at.get(Date.parse(b.minute));
    if (i === undefined) continue;
    ok[i] += b.succeeded;
    bad[i] += b.failed;
    if (b.p50_ms !== null) p50[i] = Math.max(p50[i] ?? 0, b.p50_ms);
    if (b.p99_ms !== null) p99[i] = Math.max(p99[i] ?? 0, b.p99_ms);
  }
  return { xs, ok, bad, p50, p99 };
}

function charts(timeline) {
  const t = slots(timeline.buckets, Date.now());
  const done = [
    { name: "succeeded", cls: "c-ok", values: t.ok },
    { name: "failed attempts", cls: "c-bad", values: t.bad },
  ];
  const wait = [
    { name: "p50", cls: "c-p50", values: t.p50 },
    { name: "p99", cls: "c-p99", values: t.p99 },
  ];
  return [
    h("figure", { id: "chart-throughput" },
      h("figcaption", { text: "Throughput, tasks per minute (last hour)" }),
      lineChart("Tasks succeeded and failed attempts per minute over the last hour", t.xs, done),
      legend(done)),
    h("figure", { id: "chart-latency" },
      h("figcaption", { text: "Wait from due to start, ms (slowest queue each minute)" }),
      lineChart("p50 and p99 of the wait from due to start per minute over the last hour", t.xs, wait),
      legend(wait)),
  ];
}

export function rateText(rate) {
  return rate ? `${rate.per_second}/s (burst ${rate.burst})` : "none";
}

function healthCard(name, check) {
  const ok = check && check.status === "ok";
  return h("div", { class: "card " + (ok ? "ok" : "bad") },
    h("h2", { text: name }),
    h("p", { class: "big", text: ok ? "ok" : (check ? check.status : "unknown") }),
    h("p", { class: "muted", text: ok ? `${check.latency_ms} ms` : (check && check.error) || "" }));
}

function stat(name, value, note) {
  return h("div", { class: "card" }, h("h2", { text: name }), h("p", { class: "big", text: value }),
    h("p", { class: "muted", text: note || "" }));
}

export function queueRows(list) {
  return list.map((q) => row(
    h("a", { href: route("queues", q.name), text: q.name }),
    num(q.depth.scheduled), num(q.depth.queued), num(q.depth.running), num(q.depth.retrying),
    q.depth.dead ? h("a", { href: "#/dead-letters" + query({ queue: q.name }), text: String(q.depth.dead) }) : "0",
    q.paused ? h("span", { class: "badge s-paused", text: "paused" }) : "no",
    q.concurrency === null ? "none" : String(q.concurrency),
    rateText(q.rate_limit),
    num(q.unrecorded_events)));
}

export const QUEUE_HEADERS = ["Queue", "Scheduled", "Queued", "Running", "Retrying", "Dead", "Paused", "Concurrency", "Rate limit", "Unrecorded"];

export function view() {
  const cards = h("div", { class: "cards" });
  const graphs = h("div", { class: "charts" });
  const queues = h("div");
  const el = h("section", { "aria-labelledby": "h-overview" },
    h("h1", { id: "h-overview", text: "Overview" }), cards, graphs,
    h("h2", { text: "Queues" }), queues);
  async function refresh() {
    const [health, qs, ws, timeline] = await Promise.all([
      api.request("GET", "health", undefined, { auth: false, okStatuses: [503] }),
      api.get("queues"),
      api.get("workers"),
      api.get("stats/timeline", { minutes: MINUTES }),
    ]);
    replace(graphs, charts(timeline));
    const alive = ws.workers.filter((w) => w.alive).length;
    const unrecorded = qs.queues.reduce((n, q) => n + (q.unrecorded_events || 0), 0);
    replace(cards,
      healthCard("Redis", health.checks.redis),
      healthCard("PostgreSQL", health.checks.postgres),
      stat("Workers alive", String(alive), `${ws.workers.length - alive} not seen lately`),
      stat("Unrecorded events", String(unrecorded), "transitions waiting for the record"));
    replace(queues, table(QUEUE_HEADERS, queueRows(qs.queues), "Queues"));
  }
  return { title: "Overview", el, refresh };
}
