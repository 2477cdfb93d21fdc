// The dashboard: sign-in, the hash router (each view its own address), live refresh.

import * as api from "./api.js";
import { h, replace } from "./dom.js";
import { showError, clearError, notice, dialogOpen } from "./ui.js";
import * as overview from "./overview.js";
import * as tasks from "./tasks.js";
import * as deadLetters from "./deadletters.js";
import * as queues from "./queues.js";
import * as schedules from "./schedules.js";
import * as workers from "./workers.js";

const REFRESH_MS = 5000;
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const live = document.getElementById("live");
const signout = document.getElementById("signout");

// view name -> (rest of the path, query) -> { title, el, refresh }
const VIEWS = {
  overview: () => overview.view(),
  tasks: (rest, q) => (rest.length ? tasks.taskPage(rest[0]) : tasks.view(q)),
  "dead-letters": (rest, q) => deadLetters.view(q),
  queues: (rest) => (rest.length ? queues.queuePage(rest[0]) : queues.view()),
  schedules: (rest) => (rest.length ? schedules.schedulePage(rest[0]) : schedules.view()),
  workers: () => workers.view(),
};

let current = null;
let loading = false;
let timer = null;

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, search] = raw.split("?", 2);
  const parts = path.split("/").filter(Boolean).map((p) => {
    try { return decodeURIComponent(p); } catch { return p; }
  });
  return { name: parts[0] || "overview", rest: parts.slice(1), query: new URLSearchParams(search || "") };
}

async function refresh() {
  if (!current || loading || !api.signedIn()) return;
  loading = true;
  try {
    await current.refresh();
    clearError();
    live.textContent = "Updated " + new Date().toLocaleTimeString();
  } catch (err) {
    if (!(err instanceof api.ApiError && err.status === 401)) showError(err);
  } finally {
    loading = false;
  }
}

function show() {
  if (!api.signedIn()) {
    signIn("");
    return;
  }
  nav.hidden = false;
  signout.hidden = false;
  const { name, rest, query } = parseHash();
  const make = VIEWS[name];
  if (!make) {
    location.replace("#/overview");
    return;
  }
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  current = make(rest, query);
  document.title = current.title + " · DTQ";
  replace(main, current.el);
  loading = false;
  refresh();
}

function signIn(message) {
  current = null;
  nav.hidden = true;
  signout.hidden = true;
  live.textContent = "";
  document.title = "Sign in · DTQ";
  const user = h("input", { name: "username", autocomplete: "username", required: true, id: "username" });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true, id: "password" });
  const error = h("p", { class: "error", role: "alert", id: "signin-error", hidden: !message, text: message });
  const button = h("button", { type: "submit", class: "primary", text: "Sign in" });
  const form = h("form", { class: "signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title", text: "Sign in to DTQ" }),
    h("p", { class: "muted", text: "An admin account of this API." }),
    h("label", { for: "username", text: "Username" }), user,
    h("label", { for: "password", text: "Password" }), password,
    error, button);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    error.hidden = true;
    try {
      await api.signIn(user.value, password.value);
      clearError();
      notice("");
      show();
    } catch (err) {
      let text = err.message;
      if (err.status === 401) text = "Wrong username or password.";
      else if (err.status === 429) text = "Too many failed sign-ins for this user; wait a little and try again.";
      else if (err.status === 400) text = "Enter a username and a password.";
      error.textContent = text;
      error.hidden = false;
      button.disabled = false;
      password.value = "";
      password.focus();
    }
  });
  replace(main, form);
  user.focus();
}

api.onExpired(() => {
  if (current !== null) signIn("Your session has expired. Sign in again to return to this page.");
});

signout.addEventListener("click", () => {
  api.forget();
  notice("");
  clearError();
  signIn("");
});

document.getElementById("skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

window.addEventListener("hashchange", () => {
  notice("");
  show();
});

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});

timer = setInterval(() => {
  if (!document.hidden && !dialogOpen()) refresh();
}, REFRESH_MS);

show();
