// Schedules: enable / disable, run now, next fire times and last runs, and a live
// preview of a cron expression that marks fire times moved by a DST gap or repeated.

import * as api from "./api.js";
import { h, replace, table, row, time, route, taskLink, badge, field, dl, json } from "./dom.js";
import { act } from "./ui.js";

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

export function view() {
  const body = h("div");
  const el = h("section", { "aria-labelledby": "h-schedules" }, h("h1", { id: "h-schedules", text: "Schedules" }), body);
  async function refresh() {
    const { schedules } = await api.get("schedules");
    const rows = schedules.map((s) => row(
      h("a", { href: route("schedules", s.id), text: s.name }),
      h("code", { text: s.cron }), s.timezone,
      s.enabled ? "enabled" : h("span", { class: "badge s-paused", text: "disabled" }),
      time(s.next_run_at), s.task ? `${s.task.name} → ${s.task.queue || "default"}` : "",
      h("span", { class: "group" }, toggle(s, refresh), runNow(s, refresh))));
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
  const el = h("section", { "aria-labelledby": "h-schedule" },
    h("p", {}, h("a", { href: "#/schedules", text: "← Schedules" })),
    h("h1", { id: "h-schedule", text: "Schedule" }), actions, info,
    h("h2", { text: "Edit, with a preview of the next fire times" }), form, preview, runs);
  let schedule = null;
  let filled = false;
  let timer = null;

  async function showPreview() {
    if (!cron.value.trim()) return replace(preview);
    try {
      const p = await api.get("schedules/preview", { cron: cron.value.trim(), timezone: zone.value.trim() || "UTC", after: after.value.trim(), count: 10 });
      const fires = p.fires || p.fire_times.map((at) => ({ at, dst: null }));
      replace(preview, h("p", { class: "muted", text: "Next fire times:" }), fireList(fires));
    } catch (err) {
      replace(preview, h("p", { class: "error", text: err.status === 400 ? err.message : "Preview unavailable: " + err.message }));
    }
  }
  const later = () => { clearTimeout(timer); timer = setTimeout(showPreview, 300); };
  cron.addEventListener("input", later);
  zone.addEventListener("input", later);
  after.addEventListener("input", later);
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
    replace(actions, toggle(s, refresh), runNow(s, refresh));
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
      filled = true;
      showPreview();
    }
  }
  return { title: "Schedule", el, refresh };
}
