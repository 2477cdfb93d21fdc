// Queues: pause / resume, concurrency, rate limit and durability, each confirmed in the page.

import * as api from "./api.js";
import { h, replace, table, route, query, num, field, dl } from "./dom.js";
import { act } from "./ui.js";
import { rateText } from "./overview.js";

function patch(name, body) {
  return api.patch("queues/" + encodeURIComponent(name), body);
}

function pauseButton(q, after) {
  const verb = q.paused ? "Resume" : "Pause";
  return h("button", { type: "button", class: q.paused ? "" : "danger small", text: verb, "aria-label": `${verb} queue ${q.name}`,
    onclick: () => act(q.paused ? `Resume queue “${q.name}”? Its tasks start again.` : `Pause queue “${q.name}”? It keeps accepting tasks and starts none.`,
      verb, () => patch(q.name, { paused: !q.paused }), (r) => `Queue “${r.name}” ${r.paused ? "paused" : "resumed"}`, after) });
}

export function view() {
  const body = h("div");
  const el = h("section", { "aria-labelledby": "h-queues" }, h("h1", { id: "h-queues", text: "Queues" }), body);
  async function refresh() {
    const { queues } = await api.get("queues");
    const rows = queues.map((q) => h("tr", {},
      h("td", {}, h("a", { href: route("queues", q.name), text: q.name })),
      h("td", { text: `${q.depth.queued} queued · ${q.depth.running} running · ${q.depth.scheduled + q.depth.retrying} waiting` }),
      h("td", {}, q.depth.dead ? h("a", { href: "#/dead-letters" + query({ queue: q.name }), text: String(q.depth.dead) }) : "0"),
      h("td", {}, q.paused ? h("span", { class: "badge s-paused", text: "paused" }) : "running"),
      h("td", { text: q.concurrency === null ? "none" : String(q.concurrency) }),
      h("td", { text: rateText(q.rate_limit) }),
      h("td", {}, pauseButton(q, refresh), " ", h("a", { href: route("queues", q.name), text: "Settings", "aria-label": `Settings of queue ${q.name}` }))));
    replace(body, table(["Queue", "Depth", "Dead", "State", "Concurrency", "Rate limit", "Actions"], rows, "Queues"));
  }
  return { title: "Queues", el, refresh };
}

export function queuePage(name) {
  const info = h("div");
  const controls = h("div");
  const el = h("section", { "aria-labelledby": "h-queue" },
    h("p", {}, h("a", { href: "#/queues", text: "← Queues" })),
    h("h1", { id: "h-queue" }, "Queue ", h("span", { text: name })), info, controls);
  let built = false;
  const concurrency = h("input", { id: "q-concurrency", type: "number", min: "1", max: "100000", step: "1", placeholder: "no cap" });
  const perSecond = h("input", { id: "q-rate", type: "number", min: "0.001", step: "any", placeholder: "no limit" });
  const burst = h("input", { id: "q-burst", type: "number", min: "1", step: "1", placeholder: "burst" });
  const durability = h("select", { id: "q-durability" },
    h("option", { value: "record", text: "record: accepted once its row is committed in PostgreSQL" }),
    h("option", { value: "queue", text: "queue: accepted once it is in Redis; recorded within the record lag" }));
  const pauseSlot = h("span");

  function build(q) {
    const concForm = h("form", { class: "filters", "aria-label": "Concurrency" },
      field("Concurrency (tasks at once, empty: no cap)", concurrency), h("button", { type: "submit", text: "Set concurrency" }));
    concForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const value = concurrency.value.trim() === "" ? null : Number(concurrency.value);
      act(value === null ? `Remove the concurrency cap of “${name}”?` : `Let at most ${value} tasks of “${name}” run at once?`, "Set",
        () => patch(name, { concurrency: value }), (r) => `Concurrency of “${name}”: ${r.concurrency === null ? "no cap" : r.concurrency}`, refresh);
    });
    const rateForm = h("form", { class: "filters", "aria-label": "Rate limit" },
      field("Starts per second (empty: no limit)", perSecond), field("Burst", burst), h("button", { type: "submit", text: "Set rate limit" }));
    rateForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const off = perSecond.value.trim() === "";
      const value = off ? null : { per_second: Number(perSecond.value), burst: Number(burst.value || 1) };
      act(off ? `Remove the rate limit of “${name}”?` : `Start at most ${value.per_second} tasks of “${name}” per second (burst ${value.burst})?`, "Set",
        () => patch(name, { rate_limit: value }), (r) => `Rate limit of “${name}”: ${rateText(r.rate_limit)}`, refresh);
    });
    const durForm = h("form", { class: "filters", "aria-label": "Durability" },
      field("Durability of new tasks", durability), h("button", { type: "submit", text: "Set durability" }));
    durForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const value = durability.value;
      act(value === "queue"
        ? `Accept new tasks of “${name}” once they are in Redis? A Redis data loss can then lose tasks not yet recorded.`
        : `Accept new tasks of “${name}” only once their rows are committed in PostgreSQL?`, "Set",
        () => patch(name, { durability: value }), (r) => `Durability of “${name}”: ${r.durability}`, refresh);
    });
    replace(controls, h("h2", { text: "Settings" }), h("div", { class: "actions" }, pauseSlot), concForm, rateForm, durForm);
    concurrency.value = q.concurrency === null ? "" : String(q.concurrency);
    perSecond.value = q.rate_limit ? String(q.rate_limit.per_second) : "";
    burst.value = q.rate_limit ? String(q.rate_limit.burst) : "";
    durability.value = q.durability;
    built = true;
  }

  async function refresh() {
    const q = await api.get("queues/" + encodeURIComponent(name));
    replace(info, dl([
      ["State", q.paused ? h("span", { class: "badge s-paused", text: "paused" }) : "running"],
      ["Scheduled", num(q.depth.scheduled)], ["Queued", num(q.depth.queued)], ["Running", num(q.depth.running)],
      ["Retrying", num(q.depth.retrying)],
      ["Dead", h("a", { href: "#/dead-letters" + query({ queue: name }), text: String(q.depth.dead) })],
      ["Oldest queued", q.oldest_queued_age_seconds === null ? "—" : `${Math.round(q.oldest_queued_age_seconds)} s`],
      ["Concurrency", q.concurrency === null ? "no cap" : String(q.concurrency)],
      ["Rate limit", rateText(q.rate_limit)],
      ["Durability", q.durability],
      ["Unrecorded events", num(q.unrecorded_events)],
      ["Default webhook", q.webhook_url || "—"],
      ["Tasks", h("a", { href: "#/tasks" + query({ queue: name }), text: "tasks of this queue" })],
    ]));
    if (!built) build(q);
    replace(pauseSlot, pauseButton(q, refresh));
  }
  return { title: "Queue " + name, el, refresh };
}
