// Rendering arbitrary engine data (logs, histories, nested status) as tables and lists
// of text. Used by the system drawer and the factory page.

import { h } from "./dom.js";
import { brief, humanize, parseTime, utc } from "./format.js";

const TIME_KEY = /(^|_)(time|timestamp|at|run|heartbeat|started|finished|created|updated|deployed|generated)(_at)?$/;
const MAX_COLUMNS = 8;

/** One cell value as text: times readable, nested values summarised. */
export function cellText(key, value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "string" && TIME_KEY.test(key) && parseTime(value) !== null) return utc(value);
  if (typeof value === "object") {
    const json = JSON.stringify(value);
    return json.length <= 80 ? json : brief(value);
  }
  return brief(value);
}

/** A list of records as a table (columns = union of keys); scalars as a list. */
export function recordsTable(list, { limit = 50, empty = "No entries yet" } = {}) {
  if (!Array.isArray(list) || list.length === 0) return h("p", { class: "muted" }, empty);
  if (list.every((item) => item === null || typeof item !== "object")) {
    return h("ul", { class: "plain-list" }, list.slice(0, limit).map((item) => h("li", {}, brief(item))));
  }
  const columns = [];
  for (const item of list) {
    for (const key of Object.keys(item || {})) if (!columns.includes(key)) columns.push(key);
  }
  const shown = columns.slice(0, MAX_COLUMNS);
  const rows = list.slice(0, limit);
  const table = h(
    "table",
    { class: "table table-compact" },
    h("thead", {}, h("tr", {}, shown.map((c) => h("th", { scope: "col" }, humanize(c))))),
    h(
      "tbody",
      {},
      rows.map((item) => h("tr", {}, shown.map((c) => h("td", {}, cellText(c, item?.[c]))))),
    ),
  );
  const notes = [];
  if (list.length > limit) notes.push(`showing ${limit} of ${list.length}`);
  if (columns.length > shown.length) notes.push(`${columns.length - shown.length} more fields in the raw JSON`);
  return h(
    "div",
    { class: "table-scroll" },
    table,
    notes.length ? h("p", { class: "muted small" }, notes.join(" · ")) : null,
  );
}

/** An object as a definition list; nested values as one line of JSON text. */
export function keyValues(object, { skip = [] } = {}) {
  const entries = Object.entries(object || {}).filter(([k]) => !skip.includes(k));
  if (!entries.length) return h("p", { class: "muted" }, "Nothing to show");
  return h(
    "dl",
    { class: "kv" },
    entries.map(([key, value]) => [h("dt", {}, humanize(key)), h("dd", {}, cellText(key, value))]),
  );
}
