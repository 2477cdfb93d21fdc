// The JSON API, on the origin (and path prefix) the dashboard was served from. The token
// lives in sessionStorage (this tab only, gone when it closes), never in a cookie.

const KEY = "dtq.session";
// .../dashboard/static/api.<hash>.js -> .../ (the API's root, a stage prefix included)
export const BASE = new URL("../../", import.meta.url);

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

let session = load();
const expiredListeners = [];

function load() {
  try {
    const raw = sessionStorage.getItem(KEY);
    const s = raw ? JSON.parse(raw) : null;
    return s && s.token && s.expires > Date.now() ? s : null;
  } catch {
    return null;
  }
}

export function signedIn() {
  if (session && session.expires <= Date.now()) forget();
  return session !== null;
}

export function username() {
  return session ? session.username : "";
}

export function onExpired(fn) {
  expiredListeners.push(fn);
}

export function forget() {
  session = null;
  try { sessionStorage.removeItem(KEY); } catch { /* storage off: memory only */ }
}

export async function signIn(user, password) {
  const body = await request("POST", "auth/login", { username: user, password }, { auth: false });
  if (body.role !== "admin") {
    throw new ApiError(403, "forbidden",
      `“${user}” has the ${body.role} role; the dashboard needs an admin account.`);
  }
  session = { token: body.access_token, username: user, expires: Date.now() + body.expires_in * 1000 - 5000 };
  try { sessionStorage.setItem(KEY, JSON.stringify(session)); } catch { /* memory only */ }
}

export function get(path, params) {
  return request("GET", path + queryString(params));
}
export function post(path, body) {
  return request("POST", path, body === undefined ? {} : body);
}
export function patch(path, body) {
  return request("PATCH", path, body);
}
export function del(path) {
  return request("DELETE", path);
}

function queryString(params) {
  if (!params) return "";
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const text = q.toString();
  return text ? "?" + text : "";
}

export function url(path) {
  return new URL(path, BASE).href;
}

// One call. Errors come back as ApiError with the API's code and message; a 401 on a
// signed-in call means the token expired (or was revoked): the sign-in form comes back.
export async function request(method, path, body, { auth = true, okStatuses = [] } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (auth) {
    if (!signedIn()) {
      expired();
      throw new ApiError(401, "unauthorized", "Your session has ended; sign in again.");
    }
    headers.Authorization = "Bearer " + session.token;
  }
  let response;
  try {
    response = await fetch(url(path), {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", cache: "no-store", redirect: "error",
    });
  } catch (err) {
    throw new ApiError(0, "network", "The API did not answer (network error).");
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  if (response.ok || okStatuses.includes(response.status)) return data;
  const error = (data && data.error) || {};
  const err = new ApiError(response.status, error.code || "http_" + response.status,
    error.message || `HTTP ${response.status}`, data);
  if (response.status === 401 && auth) {
    forget();
    expired();
  }
  throw err;
}

function expired() {
  for (const fn of expiredListeners) fn();
}

// The same request as a curl command, the token left as a shell variable.
export function curl(method, path, body) {
  const parts = ["curl", "-sS", "-X", method, shellQuote(url(path)), "-H", shellQuote("Authorization: Bearer $DTQ_TOKEN")];
  parts[parts.length - 1] = '"Authorization: Bearer $DTQ_TOKEN"';
  if (body !== undefined) {
    parts.push("-H", shellQuote("Content-Type: application/json"), "-d", shellQuote(JSON.stringify(body)));
  }
  return parts.join(" ");
}

export function shellQuote(text) {
  return "'" + String(text).replaceAll("'", "'\\''") + "'";
}
