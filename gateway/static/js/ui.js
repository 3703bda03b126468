// Shared page furniture: toasts, the confirmation dialog, the live indicator, who is
// signed in (and the sign-in dialog), the emergency banner.

import { apiJson, authToken, setAuthToken } from "./api.js";
import { $, h } from "./dom.js";
import { ago } from "./format.js";

export const TOAST_MS = 4000;

/** A toast: kind "ok" | "error" | "info"; removed after 4 s (or on its close button). */
export function toast(message, kind = "ok", title) {
  const box = $("#toasts");
  const label = title || { ok: "Done", error: "Failed", info: "Note" }[kind] || "Note";
  const close = h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss" }, "×");
  const el = h(
    "div",
    { class: ["toast", `toast-${kind}`], role: kind === "error" ? "alert" : "status" },
    h("strong", { class: "toast-label" }, label),
    h("span", { class: "toast-text" }, message),
    close,
  );
  const remove = () => el.remove();
  close.addEventListener("click", remove);
  setTimeout(remove, TOAST_MS);
  box.append(el);
  while (box.children.length > 5) box.firstElementChild.remove();
  return el;
}

/**
 * Ask before doing something. Resolves to {confirmed, reason}.
 * Uses the page's <dialog>, so it is modal, keyboard-operable and never a browser alert.
 */
export function confirmAction({ title, message, confirmLabel = "Confirm", danger = true, reason = true }) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-message").textContent = message;
  const ok = $("#confirm-ok");
  ok.textContent = confirmLabel;
  ok.classList.toggle("btn-danger", danger);
  ok.classList.toggle("btn-primary", !danger);
  $("#confirm-reason-field").hidden = !reason;
  const reasonInput = $("#confirm-reason");
  reasonInput.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => resolve({ confirmed: dialog.returnValue === "confirm", reason: reasonInput.value.trim() }),
      { once: true },
    );
    dialog.returnValue = "cancel";
    dialog.showModal();
    (reason ? reasonInput : $("#confirm-cancel")).focus();
  });
}

const LIVE_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  polling: "Polling (stream down)",
  stale: "Stale",
  offline: "Offline",
};

/** Update the header indicator. state: connecting | live | polling | stale | offline */
export function setLive(state, { lastUpdate, detail } = {}) {
  const box = $("#live");
  if (!box) return;
  if (box.dataset.state !== state) box.dataset.state = state;
  const label = detail ? `${LIVE_TEXT[state]}: ${detail}` : LIVE_TEXT[state];
  const labelEl = $("#live-label");
  if (labelEl.textContent !== label) labelEl.textContent = label;
  $("#live-age").textContent = lastUpdate ? `updated ${ago((Date.now() - lastUpdate) / 1000)}` : "";
}

/**
 * Who is signed in. With auth on, GET /api/v1/auth/me names the token's holder and role;
 * without a token (or with a refused one) the API answers 401 and the sign-in dialog
 * opens. A gateway without the auth API (404) runs login-less: nothing is shown.
 */
export async function initIdentity() {
  const form = $("#signin-form");
  form.addEventListener("submit", signIn);
  $("#signout").addEventListener("click", () => {
    setAuthToken(null);
    window.location.reload();
  });
  window.addEventListener("aoc:unauthorized", askForToken);
  try {
    const me = await apiJson("/api/v1/auth/me");
    const role = me.role ? ` (${me.role})` : "";
    $("#identity-name").textContent = `Signed in as ${me.name}${role}`;
    $("#signout").hidden = !authToken();
    $("#identity").hidden = false;
  } catch {
    /* 401: the unauthorized event asks for a token; 404: no auth on this gateway */
  }
}

function askForToken() {
  const dialog = $("#signin");
  if (dialog.open) return;
  const error = $("#signin-error");
  error.hidden = !authToken();
  error.textContent = authToken() ? "The stored token was refused (expired or revoked?)." : "";
  dialog.showModal();
  $("#signin-token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const input = $("#signin-token");
  const token = input.value.trim();
  const error = $("#signin-error");
  if (!token) {
    input.focus();
    return;
  }
  setAuthToken(token);
  try {
    await apiJson("/api/v1/auth/me");
    window.location.reload(); // every view starts again with the token
  } catch (failure) {
    setAuthToken(null);
    error.textContent = failure.status === 401 ? "That token was refused." : `Sign-in failed: ${failure.message}`;
    error.hidden = false;
    input.select();
  }
}

/** Emergency banner: shown while any system is not running. */
export function renderBanner(dashboard) {
  const banner = $("#emergency");
  const down = Object.values(dashboard.systems || {}).filter((s) => !s.running);
  if (!dashboard.emergency_mode && !down.length) {
    banner.hidden = true;
    return;
  }
  const total = Object.keys(dashboard.systems || {}).length;
  const names = down.map((s) => `${s.label} (${s.state})`).join(", ");
  $("#emergency-text").textContent = `${down.length} of ${total} systems not running: ${names}`;
  banner.hidden = false;
}

