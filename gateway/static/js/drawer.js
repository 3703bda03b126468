// The system detail drawer: everything GET /api/v1/admin/system/{name}/detail returns,
// with the engine's logs (recent_decisions, performance_log, healing_log,
// deploy_history) as tables when the engine has them.

import { apiJson } from "./api.js";
import { $, fill, h, jsonText } from "./dom.js";
import { humanize } from "./format.js";
import { keyValues, recordsTable } from "./records.js";

const LOGS = ["recent_decisions", "performance_log", "healing_log", "deploy_history"];
const SUMMARY = [
  "state",
  "desired",
  "schedule",
  "last_run",
  "error_count",
  "success_rate",
  "total_runs",
  "last_heartbeat",
  "work",
  "boot_id",
];
const HIDDEN = new Set(["name", "label", "running", "loops", "process", ...LOGS, ...SUMMARY]);

function section(title, ...content) {
  return h("section", { class: "drawer-section" }, h("h3", {}, title), ...content);
}

function render(detail) {
  const parts = [];
  const scalar = (v) => v === null || typeof v !== "object";
  const summary = Object.fromEntries(SUMMARY.filter((k) => k in detail).map((k) => [k, detail[k]]));
  // the engine's own scalar figures (alerts_processed, total_deploys, …) join the status
  for (const [k, v] of Object.entries(detail)) if (!HIDDEN.has(k) && scalar(v)) summary[k] = v;
  parts.push(section("Status", keyValues(summary)));
  for (const key of LOGS) {
    if (key in detail) parts.push(section(humanize(key), recordsTable(detail[key])));
  }
  if (Array.isArray(detail.loops)) parts.push(section("Loops", recordsTable(detail.loops)));
  const extras = Object.entries(detail).filter(([k, v]) => !HIDDEN.has(k) && !scalar(v));
  for (const [key, value] of extras) {
    if (Array.isArray(value)) parts.push(section(humanize(key), recordsTable(value)));
    else if (value && typeof value === "object") {
      const rows = Object.entries(value);
      const nested = rows.length && rows.every(([, v]) => v && typeof v === "object" && !Array.isArray(v));
      parts.push(
        section(
          humanize(key),
          nested ? recordsTable(rows.map(([name, v]) => ({ name, ...v }))) : keyValues(value),
        ),
      );
    }
  }
  if (detail.process) parts.push(section("Process", keyValues(detail.process)));
  parts.push(
    h(
      "details",
      { class: "raw" },
      h("summary", {}, "Raw JSON"),
      h("pre", { class: "code-block" }, jsonText(detail)),
    ),
  );
  return parts;
}

export async function openDetail(slug, label) {
  const dialog = $("#drawer");
  const body = $("#drawer-body");
  $("#drawer-title").textContent = label || slug;
  dialog.dataset.system = slug;
  fill(body, h("p", { class: "muted" }, "Loading…"));
  if (!dialog.open) dialog.showModal();
  try {
    const detail = await apiJson(`/api/v1/admin/system/${encodeURIComponent(slug)}/detail`);
    if (dialog.dataset.system === slug) fill(body, render(detail));
  } catch (error) {
    if (dialog.dataset.system === slug) {
      fill(body, h("p", { class: "notice notice-error", role: "alert" }, `Could not load details: ${error.message}`));
    }
  }
}

export function initDrawer() {
  const dialog = $("#drawer");
  $("#drawer-refresh").addEventListener("click", () => openDetail(dialog.dataset.system, $("#drawer-title").textContent));
  // a click on the backdrop (outside the panel) closes it
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
}
