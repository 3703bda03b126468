// The one way this app talks to the gateway. Every request, including the
// server-sent-event stream, goes through api(): it is where credentials are added.
// The bearer token lives in sessionStorage under TOKEN_KEY (this tab only); a 401 fires
// the "aoc:unauthorized" event, on which the page asks for a token (ui.js).

export const TOKEN_KEY = "aoc.token";

function storage() {
  try {
    return window.sessionStorage;
  } catch {
    return null; // storage disabled: run without
  }
}

export function authToken() {
  return storage()?.getItem(TOKEN_KEY) || null;
}

export function setAuthToken(token) {
  const s = storage();
  if (!s) return;
  if (token) s.setItem(TOKEN_KEY, token);
  else s.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** fetch() with the app's headers. Returns the Response; never throws on HTTP status. */
export async function api(path, { method = "GET", json, headers, signal, accept } = {}) {
  const h = new Headers(headers || {});
  const token = authToken();
  if (token) h.set("Authorization", `Bearer ${token}`);
  if (accept) h.set("Accept", accept);
  let body;
  if (json !== undefined) {
    h.set("Content-Type", "application/json");
    body = JSON.stringify(json);
  }
  const response = await fetch(path, {
    method,
    headers: h,
    body,
    signal,
    credentials: "same-origin",
    cache: "no-store",
  });
  if (response.status === 401) {
    window.dispatchEvent(new CustomEvent("aoc:unauthorized", { detail: { path } }));
  }
  return response;
}

function errorMessage(status, body) {
  if (body && typeof body === "object") {
    if (typeof body.message === "string" && body.message) return body.message;
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) {
      // FastAPI validation errors: "field: message"
      return body.detail
        .map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".") || "request"}: ${d.msg}`)
        .join("; ");
    }
  }
  return `HTTP ${status}`;
}

/** JSON request; resolves to the parsed body, rejects with ApiError on HTTP errors. */
export async function apiJson(path, options = {}) {
  const response = await api(path, { accept: "application/json", ...options });
  let body = null;
  const text = await response.text();
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  }
  if (!response.ok) throw new ApiError(response.status, errorMessage(response.status, body), body);
  return body;
}

/** Download a response body as a file (keeps the auth header on the request). */
export async function download(path, filename) {
  const response = await api(path);
  if (!response.ok) throw new ApiError(response.status, `Export failed: HTTP ${response.status}`);
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * Server-sent events over fetch (so the stream carries the same headers as every other
 * request; EventSource cannot send Authorization). Resolves when the server ends the
 * stream; rejects on network errors or an HTTP error status.
 */
export async function stream(path, { onEvent, onOpen, onBytes, signal }) {
  const response = await api(path, { accept: "text/event-stream", signal });
  if (!response.ok || !response.body) throw new ApiError(response.status, `stream: HTTP ${response.status}`);
  onOpen?.();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let event = "message";
  let data = [];
  let id = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onBytes?.();
    buffer += value;
    // a trailing "\r" may be the first half of "\r\n": keep it for the next chunk
    const cut = buffer.endsWith("\r") ? buffer.length - 1 : buffer.length;
    const lines = buffer.slice(0, cut).split(/\r\n|\n|\r/);
    buffer = lines.pop() + buffer.slice(cut);
    for (const line of lines) {
      if (line === "") {
        if (data.length) onEvent(event, data.join("\n"), id);
        event = "message";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue; // comment / keep-alive ping
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val.startsWith(" ")) val = val.slice(1);
      if (field === "event") event = val;
      else if (field === "data") data.push(val);
      else if (field === "id") id = val;
    }
  }
}
