// Workers: the fleet, alive or not.

import * as api from "./api.js";
import { h, replace, table, row, time, taskLink } from "./dom.js";

export function view() {
  const body = h("div");
  const el = h("section", { "aria-labelledby": "h-workers" }, h("h1", { id: "h-workers", text: "Workers" }), body);
  async function refresh() {
    const { workers } = await api.get("workers");
    const rows = workers.map((w) => row(
      h("span", { class: "id", text: w.worker_id }),
      w.alive ? h("span", { class: "badge s-succeeded", text: "alive" }) : h("span", { class: "badge s-dead", text: "gone" }),
      w.hostname || "", w.mode || "", (w.queues || []).join(", "), w.concurrency === null ? "" : String(w.concurrency),
      (w.running || []).length ? h("ul", { class: "plain" }, w.running.map((id) => h("li", {}, taskLink(id)))) : "idle",
      time(w.last_seen_at)));
    replace(body, table(["Worker", "State", "Host", "Mode", "Queues", "Concurrency", "Running", "Last heartbeat"], rows, "Workers"));
  }
  return { title: "Workers", el, refresh };
}
