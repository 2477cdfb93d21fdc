// What every view shares: the error banner, the notice of the last action, and the
// in-page confirmation.

import { ApiError } from "./api.js";

const $ = (id) => document.getElementById(id);

export function showError(err) {
  const banner = $("banner");
  let text;
  if (err instanceof ApiError) {
    if (err.status === 503) text = `The API is degraded (503): ${err.message}. Showing the last data; retrying every 5 s.`;
    else if (err.status === 0) text = `${err.message} Retrying every 5 s.`;
    else text = `${err.status ? err.status + " " : ""}${err.message}`;
  } else {
    text = `Something went wrong in the page: ${err && err.message ? err.message : err}`;
    console.error(err);
  }
  banner.textContent = text;
  banner.hidden = false;
}

export function clearError() {
  const banner = $("banner");
  banner.hidden = true;
  banner.textContent = "";
}

// What the last action did ("3 replayed"), shown until the next one.
export function notice(text) {
  const el = $("notice");
  el.textContent = text;
  el.hidden = !text;
}

// Ask in the page; resolves true when confirmed.
export function confirm(text, okLabel = "Confirm") {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
    $("confirm-cancel").focus();
  });
}

export function dialogOpen() {
  return $("confirm").open;
}

// Run an action that changes state: ask first, then say what it did (or what failed),
// then bring the view up to date.
export async function act(question, okLabel, action, describe, after) {
  if (!(await confirm(question, okLabel))) return false;
  notice("");
  let result;
  try {
    result = await action();
  } catch (err) {
    showError(err);
    return false;
  }
  notice(describe(result));
  clearError();
  if (after) {
    try { await after(); } catch (err) { showError(err); }
  }
  return true;
}
