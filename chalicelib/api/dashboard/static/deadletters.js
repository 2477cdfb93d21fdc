// Dead letters: dead tasks with their last error; replay one, a selection, or a whole queue.

import * as api from "./api.js";
import { h, replace, table, time, taskLink, firstLine, query, field } from "./dom.js";
import { act } from "./ui.js";

export function view(q) {
  const queue = q.get("queue") || "";
  const cursor = q.get("cursor") || "";
  const selected = new Set();
  const queueInput = h("input", { id: "dl-queue", value: queue, placeholder: "any", autocomplete: "off" });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter dead letters" },
    field("Queue", queueInput), h("button", { type: "submit", text: "Filter" }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = "#/dead-letters" + query({ queue: queueInput.value.trim() });
  });
  const replaySelected = h("button", { type: "button", id: "replay-selected", disabled: true, text: "Replay selected" });
  const replayQueue = h("button", { type: "button", id: "replay-queue", text: "Replay all in queue…" });
  const queueSelect = h("select", { id: "replay-queue-name", "aria-label": "Queue to replay" });
  const toolbar = h("div", { class: "actions" }, replaySelected, h("span", { class: "group" }, queueSelect, replayQueue));
  const list = h("div");
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const el = h("section", { "aria-labelledby": "h-dead" },
    h("h1", { id: "h-dead", text: "Dead letters" }), form, toolbar, list, pager);

  const replayed = (r) => `${r.replayed} replayed`;
  function updateSelection() {
    replaySelected.disabled = selected.size === 0;
    replaySelected.textContent = selected.size ? `Replay selected (${selected.size})` : "Replay selected";
  }
  replaySelected.addEventListener("click", () => {
    const ids = [...selected];
    act(`Replay ${ids.length} dead task${ids.length === 1 ? "" : "s"}?`, "Replay",
      () => api.post("dead-letter/replay", { ids }), replayed, () => { selected.clear(); updateSelection(); return refresh(); });
  });
  replayQueue.addEventListener("click", () => {
    const name = queueSelect.value;
    if (!name) return;
    act(`Replay every dead task of queue “${name}”?`, "Replay queue",
      () => api.post("dead-letter/replay", { queue: name }), replayed, refresh);
  });

  async function refresh() {
    const [page, qs] = await Promise.all([api.get("dead-letter", { queue, limit: 50, cursor }), api.get("queues")]);
    const withDead = qs.queues.filter((x) => x.depth.dead > 0);
    const keep = queueSelect.value;
    replace(queueSelect, withDead.length ? withDead.map((x) => h("option", { value: x.name, text: `${x.name} (${x.depth.dead})`, selected: x.name === (keep || queue) }))
      : h("option", { value: "", text: "no queue has dead tasks" }));
    replayQueue.disabled = withDead.length === 0;
    const ids = new Set(page.tasks.map((t) => t.id));
    for (const id of [...selected]) if (!ids.has(id)) selected.delete(id);
    updateSelection();
    const rows = page.tasks.map((t) => {
      const box = h("input", { type: "checkbox", checked: selected.has(t.id), "aria-label": `Select task ${t.id}` });
      box.addEventListener("change", () => { if (box.checked) selected.add(t.id); else selected.delete(t.id); updateSelection(); });
      const one = h("button", { type: "button", class: "small", text: "Replay", "aria-label": `Replay task ${t.id}`, onclick: () =>
        act(`Replay dead task ${t.id}?`, "Replay", () => api.post("dead-letter/replay", { ids: [t.id] }), replayed, refresh) });
      return h("tr", {}, h("td", {}, box), h("td", {}, taskLink(t.id)), h("td", { text: t.name }), h("td", { text: t.queue }),
        h("td", { text: `${t.attempts}/${t.max_attempts}` }), h("td", {}, time(t.finished_at)),
        h("td", {}, h("span", { class: "error-line", text: firstLine(t.error) })), h("td", {}, one));
    });
    replace(list, table(["Select", "Id", "Name", "Queue", "Attempts", "Died", "Last error", "Action"], rows, "Dead tasks, newest first"));
    replace(pager,
      cursor ? h("a", { href: "#/dead-letters" + query({ queue }), text: "Newest" }) : null,
      page.next_cursor ? h("a", { href: "#/dead-letters" + query({ queue, cursor: page.next_cursor }), text: "Older →" }) : null);
  }
  return { title: "Dead letters", el, refresh };
}
