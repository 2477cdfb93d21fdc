// Schedules: create, enable / disable, run now, delete, next fire times and last runs,
// edit of the cron, zone and task, and a live preview of a cron expression that marks
// fire times moved by a DST gap or repeated.

import * as api from "./api.js";
import { h, replace, table, row, time, route, taskLink, badge, field, dl, json } from "./dom.js";
import { act, notice, showError, clearError } from "./ui.js";

function path(id) {
  return "schedules/" + encodeURIComponent(id);
}

function toggle(s, after) {
  const verb = s.enabled ? "Disable" : "Enable";
  return h("button", { type: "button", class: "small", text: verb, "aria-label": `${verb} schedule ${s.name}`,
    onclick: () => act(`${verb} schedule “${s.name}”?`, verb, () => api.patch(path(s.id), { enabled: !s.enabled }),
      (r) => `Schedule “${r.name}” ${r.enabled ? "enabled" : "disabled"}`, after) });
}

function runNow(s, after) {
  return h("button", { type: "button", class: "small", text: "Run now", "aria-label": `Run schedule ${s.name} now`,
    onclick: () => act(`Enqueue the task of “${s.name}” now?`, "Run now", () => api.post(path(s.id) + "/run"),
      (t) => `Enqueued task ${t.id}`, after) });
}

function remove(s, after) {
  return h("button", { type: "button", class: "small danger", text: "Delete", "aria-label": `Delete schedule ${s.name}`,
    onclick: () => act(`Delete schedule “${s.name}”? The tasks it enqueued stay.`, "Delete", () => api.del(path(s.id)),
      () => `Schedule “${s.name}” deleted`, after) });
}

// The task body as the textarea holds it: a JSON object, or an error naming the field.
function parseTask(text) {
  let task;
  try { task = JSON.parse(text); } catch { return { error: "task: must be JSON, e.g. {\"name\": \"reports.daily\"}" }; }
  if (!task || typeof task !== "object" || Array.isArray(task)) return { error: "task: must be a JSON object" };
  return { task };
}

// A live preview of the next five fire times of a cron and zone, into `out`.
function previewer(cron, zone, out, after) {
  let timer = null;
  async function show() {
    if (!cron.value.trim()) return replace(out);
    try {
      const p = await api.get("schedules/preview", { cron: cron.value.trim(), timezone: zone.value.trim() || "UTC",
        after: after ? after.value.trim() : "", count: after ? 10 : 5 });
      const fires = p.fires || p.fire_times.map((at) => ({ at, dst: null }));
      replace(out, h("p", { class: "muted", text: "Next fire times:" }), fireList(fires));
    } catch (err) {
      replace(out, h("p", { class: "error", text: err.status === 400 ? err.message : "Preview unavailable: " + err.message }));
    }
  }
  const later = () => { clearTimeout(timer); timer = setTimeout(show, 300); };
  for (const input of [cron, zone, after]) if (input) input.addEventListener("input", later);
  return show;
}

function createForm(after) {
  const name = h("input", { id: "n-name", autocomplete: "off", required: true });
  const cron = h("input", { id: "n-cron", autocomplete: "off", spellcheck: false, required: true, placeholder: "0 3 * * *" });
  const zone = h("input", { id: "n-zone", autocomplete: "off", spellcheck: false, value: "UTC" });
  const task = h("textarea", { id: "n-task", rows: 3, spellcheck: false, value: '{"name": "", "queue": "default", "payload": {}}' });
  const out = h("div", { "aria-live": "polite", id: "n-preview" });
  const problem = h("p", { class: "error", id: "n-error", role: "alert" });
  const form = h("form", { "aria-label": "New schedule" },
    h("div", { class: "filters" }, field("Name", name), field("Cron", cron), field("Time zone", zone)),
    field("Task (JSON: name, queue, payload, priority, …)", task), problem,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary", text: "Create schedule" })), out);
  previewer(cron, zone, out, null);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    problem.textContent = "";
    const parsed = parseTask(task.value);
    if (parsed.error) { problem.textContent = parsed.error; return; }
    const body = { name: name.value.trim(), cron: cron.value.trim(), timezone: zone.value.trim() || "UTC", task: parsed.task };
    notice("");
    try {
      const s = await api.post("schedules", body);
      notice(`Schedule “${s.name}” created`);
      clearError();
      name.value = "";
      cron.value = "";
      replace(out);
      await after();
    } catch (err) {
      if (err.status === 400 || err.status === 409) problem.textContent = err.message;
      else showError(err);
    }
  });
  return h("details", { class: "new" }, h("summary", { text: "New schedule" }), form);
}

export function view() {
  const body = h("div");
  const el = h("section", { "aria-labelledby": "h-schedules" }, h("h1", { id: "h-schedules", text: "Schedules" }));
  el.append(createForm(() => refresh()), body);
  async function refresh() {
    const { schedules } = await api.get("schedules");
    const rows = schedules.map((s) => row(
      h("a", { href: route("schedules", s.id), text: s.name }),
      h("code", { text: s.cron }), s.timezone,
      s.enabled ? "enabled" : h("span", { class: "badge s-paused", text: "disabled" }),
      time(s.next_run_at), s.task ? `${s.task.name} → ${s.task.queue || "default"}` : "",
      h("span", { class: "group" }, toggle(s, refresh), runNow(s, refresh), remove(s, refresh))));
    replace(body, table(["Schedule", "Cron", "Zone", "State", "Next run", "Task", "Actions"], rows, "Schedules"));
  }
  return { title: "Schedules", el, refresh };
}

// The preview of fire times; each is marked when the preview says DST moved or repeated it.
export function fireList(fires) {
  return h("ol", { class: "fires" }, fires.map((f) => {
    const mark = f.dst === "gap" ? "moved by a DST gap" : f.dst === "repeat" ? "in a repeated DST hour" : "";
    return h("li", { class: mark ? "dst" : "" }, time(f.at), f.local ? h("span", { class: "muted", text: ` (${f.local} in the zone)` }) : null,
      mark ? h("span", { class: "badge s-dst", text: mark }) : null);
  }));
}

export function schedulePage(id) {
  const info = h("div");
  const runs = h("div");
  const actions = h("div", { class: "actions" });
  const cron = h("input", { id: "s-cron", autocomplete: "off", spellcheck: false });
  const zone = h("input", { id: "s-zone", autocomplete: "off", spellcheck: false });
  const after = h("input", { id: "s-after", autocomplete: "off", spellcheck: false, placeholder: "now" });
  const preview = h("div", { "aria-live": "polite", id: "s-preview" });
  const save = h("button", { type: "submit", text: "Save cron and zone" });
  const form = h("form", { class: "filters", "aria-label": "Edit the cron and zone" },
    field("Cron", cron), field("Time zone", zone), field("Preview from (ISO time, empty: now)", after), save);
  const taskText = h("textarea", { id: "s-task", rows: 6, spellcheck: false });
  const taskProblem = h("p", { class: "error", role: "alert" });
  const taskForm = h("form", { "aria-label": "Edit the task" },
    field("Task (JSON: name, queue, payload, priority, …)", taskText), taskProblem,
    h("div", { class: "actions" }, h("button", { type: "submit", text: "Save task" })));
  const el = h("section", { "aria-labelledby": "h-schedule" },
    h("p", {}, h("a", { href: "#/schedules", text: "← Schedules" })),
    h("h1", { id: "h-schedule", text: "Schedule" }), actions, info,
    h("h2", { text: "Edit, with a preview of the next fire times" }), form, preview,
    h("h2", { text: "The task it enqueues" }), taskForm, runs);
  let schedule = null;
  let filled = false;
  const showPreview = previewer(cron, zone, preview, after);
  taskForm.addEventListener("submit", (e) => {
    e.preventDefault();
    taskProblem.textContent = "";
    const parsed = parseTask(taskText.value);
    if (parsed.error) { taskProblem.textContent = parsed.error; return; }
    act(`Change the task of “${schedule.name}”?`, "Save", () => api.patch(path(id), { task: parsed.task }),
      (s) => `Task of “${s.name}” saved`, () => { filled = false; return refresh(); });
  });
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const body = { cron: cron.value.trim(), timezone: zone.value.trim() || "UTC" };
    act(`Change “${schedule.name}” to ${body.cron} in ${body.timezone}?`, "Save",
      () => api.patch(path(id), body), (s) => `Schedule “${s.name}” saved`, () => { filled = false; return refresh(); });
  });

  async function refresh() {
    const s = await api.get(path(id));
    schedule = s;
    el.querySelector("h1").textContent = "Schedule " + s.name;
    replace(actions, toggle(s, refresh), runNow(s, refresh),
      remove(s, () => { location.hash = "#/schedules"; }));
    replace(info, dl([
      ["Cron", h("code", { text: s.cron })], ["Zone", s.timezone], ["State", s.enabled ? "enabled" : "disabled"],
      ["Catch-up", s.catchup], ["Overlap", s.overlap], ["Source", s.source || "API"],
      ["Next fire times", h("ol", { class: "fires" }, (s.next_fire_times || []).map((t) => h("li", {}, time(t))))],
      ["Task", json(s.task)],
    ]));
    replace(runs, h("h2", { text: "Last runs" }), table(["Fire time", "Task", "Status"],
      (s.last_runs || []).map((r) => row(time(r.fire_at), r.task_id ? taskLink(r.task_id) : "—", badge(r.status))), "Last runs"));
    if (!filled) {
      cron.value = s.cron;
      zone.value = s.timezone;
      taskText.value = JSON.stringify(s.task, null, 2);
      filled = true;
      showPreview();
    }
  }
  return { title: "Schedule", el, refresh };
}
