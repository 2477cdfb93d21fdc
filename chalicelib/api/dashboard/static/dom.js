// Building the page. Every value from the API is written as text (textContent, or a
// property such as .value / .href set from a checked string), never as HTML, so a
// payload holding markup renders as the characters it is.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") el.textContent = String(value);
    else if (key === "class") el.className = value;
    else if (key === "value") el.value = String(value);
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "href") el.setAttribute("href", safeHref(value));
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// Links inside the dashboard only: hash routes.
function safeHref(value) {
  const text = String(value);
  return text.startsWith("#/") ? text : "#/overview";
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function route(...parts) {
  return "#/" + parts.map((p) => encodeURIComponent(String(p))).join("/");
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const text = q.toString();
  return text ? "?" + text : "";
}

// A time in the reader's zone, with the UTC time in the title.
export function time(iso) {
  if (!iso) return h("span", { class: "muted", text: "—" });
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h("span", { text: iso });
  return h("time", { datetime: iso, title: d.toISOString().replace(".000Z", "Z") + " UTC", text: localTime(d) });
}

export function localTime(d) {
  return d.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
}

export function firstLine(text) {
  if (text === null || text === undefined) return "";
  const line = String(text).split("\n").find((l) => l.trim()) || "";
  return line.length > 160 ? line.slice(0, 157) + "…" : line;
}

export function json(value) {
  return h("pre", { class: "code", tabindex: "0", text: JSON.stringify(value, null, 2) });
}

export function badge(status) {
  return h("span", { class: "badge s-" + String(status).replace(/[^a-z_]/g, ""), text: status });
}

export function taskLink(id) {
  return h("a", { href: route("tasks", id), class: "id", text: id });
}

// A table that scrolls inside itself on a narrow screen, never the page.
export function table(headers, rows, caption) {
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
    h("table", {},
      h("caption", { class: "sr-only", text: caption }),
      h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "muted", text: "Nothing here." })))));
}

export function row(...cells) {
  return h("tr", {}, cells.map((c) => h("td", {}, c)));
}

export function field(label, control) {
  return h("label", { class: "field" }, h("span", { text: label }), control);
}

export function dl(pairs) {
  return h("dl", { class: "props" }, pairs.map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]));
}

export function num(n) {
  return n === null || n === undefined ? "—" : String(n);
}
