// Overview: every queue's depths and settings, the health of Redis and PostgreSQL, the
// record's lag (unrecorded events) and the workers alive.

import * as api from "./api.js";
import { h, replace, table, row, route, query, num } from "./dom.js";

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
  const queues = h("div");
  const el = h("section", { "aria-labelledby": "h-overview" },
    h("h1", { id: "h-overview", text: "Overview" }), cards,
    h("h2", { text: "Queues" }), queues);
  async function refresh() {
    const [health, qs, ws] = await Promise.all([
      api.request("GET", "health", undefined, { auth: false, okStatuses: [503] }),
      api.get("queues"),
      api.get("workers"),
    ]);
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
