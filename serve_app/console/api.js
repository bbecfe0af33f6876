// The API as the console calls it: same origin, the signed-in JWT as a bearer token, no cookies.
// The token's claims are read here only to decide what to show; every call is checked by the API.
"use strict";

const KEY = "treasury.console.token";
const root = document.body.dataset.apiRoot || "";

export function token() {
  return sessionStorage.getItem(KEY);
}

export function signIn(text) {
  sessionStorage.setItem(KEY, text.trim());
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

function b64url(part) {
  const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
  const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
}

/** The token's subject, scopes and expiry, for display; null when it is not a JWT. Not a verification. */
export function claims(jwt) {
  try {
    const parts = String(jwt || "").split(".");
    if (parts.length !== 3) return null;
    const body = JSON.parse(b64url(parts[1]));
    return {
      sub: String(body.sub ?? "?"),
      scopes: new Set(String(body.scope ?? "").split(/\s+/).filter(Boolean)),
      exp: typeof body.exp === "number" ? new Date(body.exp * 1000) : null,
    };
  } catch {
    return null;
  }
}

/** One call: {status, ok, body}; body is the parsed JSON (or null). Never throws on an HTTP status. */
export async function call(method, path, body) {
  const headers = { Accept: "application/json" };
  const jwt = token();
  if (jwt) headers.Authorization = `Bearer ${jwt}`;
  const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(root + path, init);
  } catch (exc) {
    return { status: 0, ok: false, body: { error: { field: "$", reason: `network: ${exc}` } } };
  }
  let parsed = null;
  try {
    parsed = await response.json();
  } catch {
    parsed = null;
  }
  return { status: response.status, ok: response.ok, body: parsed };
}

/** The reason an answer gives ({"error": {"field", "reason"}}), or its status. */
export function reason(answer) {
  const err = answer.body && answer.body.error;
  if (err && typeof err === "object") return `${answer.status}: ${err.field ? err.field + ": " : ""}${err.reason}`;
  if (answer.body && answer.body.detail) return `${answer.status}: ${JSON.stringify(answer.body.detail)}`;
  return `HTTP ${answer.status}`;
}
