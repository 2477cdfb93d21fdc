// Tasks: the list (filters and cursor paging in the address) and the task page.

import * as api from "./api.js";
import { h, replace, table, row, time, taskLink, badge, firstLine, route, query, field, dl, json, num } from "./dom.js";
import { act, notice } from "./ui.js";

export const STATUSES = ["scheduled", "queued", "running", "retrying", "succeeded", "dead", "canceled"];
const TERMINAL = new Set(["succeeded", "dead", "canceled"]);

// An ISO time (UTC) <-> the value of a datetime-local input (the reader's zone).
function toLocalInput(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return "";
  const local = new Date(d.getTime() - d.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 16);
}

function fromLocalInput(value) {
  const d = new Date(value);
  return value && !Number.isNaN(d.getTime()) ? d.toISOString() : "";
}

export function view(q) {
  const filters = { status: q.get("status") || "", queue: q.get("queue") || "", name: q.get("name") || "",
    created_after: q.get("created_after") || "", created_before: q.get("created_before") || "" };
  const cursor = q.get("cursor") || "";
  const status = h("select", { id: "f-status" },
    h("option", { value: "", text: "any" }), STATUSES.map((s) => h("option", { value: s, text: s, selected: s === filters.status })));
  const queue = h("input", { id: "f-queue", value: filters.queue, placeholder: "any", autocomplete: "off" });
  const name = h("input", { id: "f-name", value: filters.name, placeholder: "any", autocomplete: "off" });
  const since = h("input", { id: "f-after", type: "datetime-local", value: toLocalInput(filters.created_after) });
  const until = h("input", { id: "f-before", type: "datetime-local", value: toLocalInput(filters.created_before) });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter tasks" },
    field("Status", status), field("Queue", queue), field("Name", name),
    field("Created from", since), field("Created before", until),
    h("button", { type: "submit", text: "Filter" }));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = "#/tasks" + query({ status: status.value, queue: queue.value.trim(), name: name.value.trim(),
      created_after: fromLocalInput(since.value), created_before: fromLocalInput(until.value) });
  });
  const list = h("div");
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const el = h("section", { "aria-labelledby": "h-tasks" }, h("h1", { id: "h-tasks", text: "Tasks" }), form, list, pager);
  async function refresh() {
    const page = await api.get("tasks", { ...filters, limit: 50, cursor });
    replace(list, taskTable(page.tasks, "Tasks, newest first"));
    replace(pager,
      cursor ? h("a", { href: "#/tasks" + query(filters), text: "Newest" }) : null,
      page.next_cursor ? h("a", { href: "#/tasks" + query({ ...filters, cursor: page.next_cursor }), text: "Older →" }) : null);
  }
  return { title: "Tasks", el, refresh };
}

export function taskTable(tasks, caption) {
  return table(["Id", "Name", "Queue", "Status", "Attempts", "Created", "Error"],
    tasks.map((t) => row(taskLink(t.id), t.name, t.queue, badge(t.status), `${t.attempts}/${t.max_attempts}`,
      time(t.created_at), h("span", { class: "error-line", text: firstLine(t.error) }))), caption);
}

// The body that enqueues the same task again (for "copy as curl").
function taskBody(t) {
  const body = { name: t.name, queue: t.queue, priority: t.priority, payload: t.payload,
    max_attempts: t.max_attempts, timeout_seconds: t.timeout_seconds, backoff: t.backoff };
  if (t.lock_key) body.lock_key = t.lock_key;
  if (t.webhook_url) body.webhook_url = t.webhook_url;
  return body;
}

function historyItem(e) {
  const details = [];
  if (e.worker_id) details.push(`worker ${e.worker_id}`);
  if (e.attempt) details.push(`attempt ${e.attempt}`);
  if (e.reason) details.push(`reason ${e.reason}`);
  if (e.delivery) details.push(`${e.delivery.event || ""} attempt ${e.delivery.attempt ?? ""} → ${e.delivery.status_code ?? "no answer"}`);
  if (e.progress) details.push(`${Math.round(e.progress.fraction * 100)}% ${e.progress.message || ""}`);
  if (e.run_at) details.push(`next run ${new Date(e.run_at).toLocaleString()}`);
  return h("li", { class: "event ev-" + String(e.event).replace(/[^a-z_]/g, "") },
    time(e.at), " ", h("strong", { text: e.event }), details.length ? " — " + details.join(", ") : "",
    e.error ? h("pre", { class: "code small", text: e.error }) : null);
}

export function taskPage(id) {
  const head = h("div");
  const actions = h("div", { class: "actions" });
  const curlBox = h("div");
  const body = h("div");
  const el = h("section", { "aria-labelledby": "h-task" },
    h("p", {}, h("a", { href: "#/tasks", text: "← Tasks" })),
    h("h1", { id: "h-task" }, "Task ", h("span", { class: "id", text: id })), head, actions, curlBox, body);
  let task = null;
  const path = "tasks/" + encodeURIComponent(id);

  function curl() {
    const command = api.curl("POST", "tasks", taskBody(task));
    const box = h("textarea", { readonly: true, rows: 4, "aria-label": "curl command that enqueues this task again", value: command });
    replace(curlBox, h("p", { class: "muted", text: "Enqueues the same task again; set DTQ_TOKEN to an admin token." }), box);
    box.select();
    if (navigator.clipboard) {
      navigator.clipboard.writeText(command).then(() => notice("curl command copied"), () => notice("Select the command and copy it"));
    }
  }

  function renderActions() {
    const list = [];
    if (!TERMINAL.has(task.status)) {
      list.push(h("button", { type: "button", class: "danger", text: "Cancel task", onclick: () =>
        act(`Cancel task ${id}?`, "Cancel task", () => api.post(path + "/cancel"),
          (t) => (t.status === "canceled" ? "Task canceled" : "Cancel requested; the worker stops it at its next lease extension"),
          refresh) }));
    }
    if (task.status === "dead" || task.status === "canceled") {
      list.push(h("button", { type: "button", text: "Retry task", onclick: () =>
        act(`Run task ${id} again?`, "Retry", () => api.post(path + "/retry"), () => "Task queued again", refresh) }));
    }
    list.push(h("button", { type: "button", text: "Copy as curl", onclick: curl }));
    replace(actions, list);
  }

  async function refresh() {
    task = await api.get(path);
    const t = task;
    replace(head, dl([
      ["Status", badge(t.status)],
      ["Name", t.name],
      ["Queue", h("a", { href: route("queues", t.queue), text: t.queue })],
      ["Priority", num(t.priority)],
      ["Attempts", `${t.attempts} of ${t.max_attempts}`],
      ["Fence", num(t.fence)],
      ["Lease holder", t.worker_id || "—"],
      ["Cancel requested", t.cancel_requested ? "yes" : "no"],
      ["Progress", t.progress ? `${Math.round(t.progress.fraction * 100)}% ${t.progress.message}` : "—"],
      ["Created", time(t.created_at)],
      ["Run at", time(t.run_at)],
      ["Started", time(t.started_at)],
      ["Finished", time(t.finished_at)],
      ["Timeout", `${t.timeout_seconds} s`],
      ["Idempotency key", t.idempotency_key || "—"],
      ["Lock key", t.lock_key || "—"],
      ["Schedule", t.schedule_id ? h("a", { href: route("schedules", t.schedule_id), class: "id", text: t.schedule_id }) : "—"],
      ["Webhook", t.webhook_url || "—"],
    ]));
    renderActions();
    replace(body,
      h("h2", { text: "Payload" }), json(t.payload),
      h("h2", { text: "Result" }), t.result === null || t.result === undefined ? h("p", { class: "muted", text: "none" }) : json(t.result),
      h("h2", { text: "Error" }), t.error ? h("pre", { class: "code error-text", tabindex: "0", text: t.error }) : h("p", { class: "muted", text: "none" }),
      h("h2", { text: "History" }), h("ol", { class: "timeline" }, (t.history || []).map(historyItem)));
  }
  return { title: "Task " + id, el, refresh };
}
