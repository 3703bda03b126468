// /admin-ops/factory: requirements (submit, generate, preview, deploy, delete), the
// template browser, the component library and the factory stats, over /api/v1/factory.

import { ApiError, apiJson } from "./api.js";
import { $, fill, h, jsonText } from "./dom.js";
import { agoFrom, humanize, num, pct, utc } from "./format.js";
import { highlight } from "./highlight.js";
import { LiveFeed, POLL_MS } from "./live.js";
import { keyValues, recordsTable } from "./records.js";
import { confirmAction, initIdentity, renderBanner, toast } from "./ui.js";

const API = "/api/v1/factory";
const PAGE_TYPES = [
  ["data_table", "Data Table"],
  ["dashboard", "Dashboard"],
  ["form", "Form Page"],
  ["detail", "Detail View"],
  ["analytics", "Analytics Page"],
  ["settings", "Settings Page"],
];
const FEATURES = ["search", "filter", "export", "pagination"]; // until the templates say which apply
const FIELD_TYPES = ["string", "text", "number", "integer", "boolean", "date", "datetime", "email", "url", "enum"];
const METHODS = ["GET", "POST", "PUT", "PATCH"];
const SETTLED = new Set(["generated", "deployed", "failed", "cancelled"]);
const CANCELLABLE = new Set(["pending", "generated", "failed", "queued"]);

const state = {
  requirements: [],
  requirementsSignature: "",
  selected: null, // requirement id shown in the preview
  templates: [],
  template: null,
  factorySignature: "",
  available: true,
};

// --- tolerant readers: the factory API's list shapes ---------------------------------------

function listOf(body, ...keys) {
  if (Array.isArray(body)) return body;
  for (const key of keys) {
    const value = body?.[key];
    if (Array.isArray(value)) return value;
    if (value && typeof value === "object") return Object.entries(value).map(([k, v]) => ({ _key: k, ...v }));
  }
  if (body && typeof body === "object") {
    return Object.entries(body)
      .filter(([, v]) => v && typeof v === "object" && !Array.isArray(v))
      .map(([k, v]) => ({ _key: k, ...v }));
  }
  return [];
}

const reqId = (r) => r?.id ?? r?.req_id ?? r?.requirement_id ?? null;
const typeKey = (t) => t?.type ?? t?.page_type ?? t?.key ?? t?._key ?? t?.name;

function unavailable(error) {
  const box = $("#factory-unavailable");
  if (error instanceof ApiError && (error.status === 404 || error.status === 405)) {
    state.available = false;
    box.textContent = "The factory API (/api/v1/factory) is not available on this gateway yet.";
    box.hidden = false;
    return true;
  }
  return false;
}

// --- stats and engine state ----------------------------------------------------------------

async function loadStats() {
  try {
    const stats = await apiJson(`${API}/stats`);
    $("#factory-unavailable").hidden = true;
    state.available = true;
    const known = [
      ["total_requirements", "Requirements", num],
      ["total_generated", "Generated", num],
      ["total_deployed", "Deployed", num],
      ["total_failed", "Failed", num],
      ["avg_generation_time_ms", "Avg generation", (v) => `${num(v, 1)} ms`],
      ["success_rate", "Success rate", pct],
    ];
    const shown = new Set(known.map(([k]) => k));
    const tiles = known
      .filter(([k]) => k in stats)
      .map(([k, label, format]) => [label, format(stats[k])]);
    for (const [k, v] of Object.entries(stats)) {
      if (!shown.has(k) && (typeof v === "number" || typeof v === "string")) tiles.push([humanize(k), String(v)]);
    }
    fill(
      $("#factory-stats"),
      tiles.map(([label, value]) => h("div", { class: "tile" }, h("dt", {}, label), h("dd", {}, value))),
    );
  } catch (error) {
    if (!unavailable(error)) fill($("#factory-stats"), h("p", { class: "muted" }, `Stats unavailable: ${error.message}`));
  }
}

function onDashboard(dashboard) {
  renderBanner(dashboard);
  const engine = dashboard.systems?.["frontend-factory"];
  if (!engine) return;
  const badge = $("#engine-state");
  badge.dataset.state = engine.state;
  badge.textContent = humanize(engine.state);
  $("#engine-note").textContent = `last run ${agoFrom(engine.last_run)}`;
  // the engine's counters change whenever a requirement moves: refresh then
  const signature = ["total_requirements", "total_generated", "total_deployed", "last_run"]
    .map((k) => engine[k])
    .join("|");
  if (signature !== state.factorySignature) {
    state.factorySignature = signature;
    refresh();
  }
}

let refreshing = null;
function refresh() {
  refreshing ??= Promise.all([loadRequirements(), loadStats()]).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

// --- requirements table --------------------------------------------------------------------

function statusBadge(status) {
  return h("span", { class: "status", dataset: { status: status || "unknown" } }, humanize(status || "unknown"));
}

function actionButton(label, onclick, attrs = {}) {
  return h("button", { type: "button", class: "btn btn-small", onclick, ...attrs }, label);
}

function requirementRow(r) {
  const id = reqId(r);
  const status = r.status;
  const actions = [];
  if (status === "pending" || status === "failed") {
    actions.push(actionButton("Generate", () => generate(id), { "aria-label": `Generate ${r.title}` }));
  }
  if (r.has_code || status === "generated" || status === "deployed") {
    actions.push(actionButton("Preview", () => showPreview(id), { "aria-label": `Preview ${r.title}` }));
  }
  if (status === "generated") {
    actions.push(actionButton("Deploy", () => deploy(id), { class: "btn btn-small btn-primary", "aria-label": `Deploy ${r.title}` }));
  }
  if (CANCELLABLE.has(status)) {
    actions.push(
      actionButton("Delete", () => remove(id), { class: "btn btn-small btn-danger-quiet", "aria-label": `Delete ${r.title}` }),
    );
  }
  const updated = r.updated_at || r.deployed_at || r.generated_at || r.created_at || r.submitted_at;
  return h(
    "tr",
    { dataset: { id, status }, "aria-selected": String(state.selected === id) },
    h("td", {}, h("div", {}, r.title || "(untitled)"), h("div", { class: "muted small mono", title: id }, String(id).slice(0, 12))),
    h("td", { class: "mono route" }, r.route || ""),
    h("td", {}, h("div", {}, r.page_type || ""), h("div", { class: "muted small" }, r.priority || "")),
    h("td", {}, statusBadge(status), r.error ? h("div", { class: "small muted" }, r.error) : null),
    h("td", { class: "nowrap", title: utc(updated) }, updated ? agoFrom(updated) : ""),
    h("td", {}, h("div", { class: "req-actions" }, actions)),
  );
}

async function loadRequirements() {
  try {
    const body = await apiJson(`${API}/requirements`);
    const signature = JSON.stringify(body);
    if (signature === state.requirementsSignature) return; // unchanged: leave the table (and focus) alone
    state.requirementsSignature = signature;
    state.requirements = listOf(body, "requirements", "items");
    renderRequirements();
  } catch (error) {
    if (!unavailable(error)) toast(`Requirements unavailable: ${error.message}`, "error");
    fill($("#req-rows"), h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No requirements to show")));
  }
}

function renderRequirements() {
  const rows = state.requirements.map(requirementRow);
  const body = $("#req-rows");
  if (!rows.length) {
    fill(body, h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No requirements yet: submit one with the form.")));
    return;
  }
  // keep keyboard focus on the same action of the same row across re-renders
  const focused = document.activeElement;
  const focusRow = focused?.closest?.("#req-rows tr")?.dataset.id;
  const focusLabel = focused?.textContent;
  fill(body, rows);
  if (focusRow) {
    const row = body.querySelector(`tr[data-id="${CSS.escape(focusRow)}"]`);
    const again = row && Array.from(row.querySelectorAll("button")).find((b) => b.textContent === focusLabel);
    (again || row?.querySelector("button"))?.focus();
  }
}

async function waitSettled(id, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await apiJson(`${API}/requirements/${encodeURIComponent(id)}`);
    if (SETTLED.has(r.status) || Date.now() > deadline) return r;
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
}

async function generate(id) {
  try {
    const reply = await apiJson(`${API}/requirements/${encodeURIComponent(id)}/generate`, { method: "POST" });
    const settled = SETTLED.has(reply?.status) ? reply : await waitSettled(id);
    await refresh();
    if (settled.status === "failed") {
      toast(settled.error || settled.message || "Generation failed", "error", "Generate failed");
      return;
    }
    const ms = settled.generation_time_ms ?? reply?.generation_time_ms;
    toast(`Generated${ms !== undefined ? ` in ${num(ms, 1)} ms` : ""}`, "ok", settled.title || "Generate");
    await showPreview(id);
  } catch (error) {
    toast(error.message, "error", "Generate failed");
    refresh();
  }
}

async function deploy(id) {
  const r = state.requirements.find((x) => reqId(x) === id) || {};
  const answer = await confirmAction({
    title: `Deploy ${r.title || "this page"}?`,
    message: `Writes ${r.route || "the page"} into the frontend tree and asks the Auto-Deploy Pipeline for a new release.`,
    confirmLabel: "Deploy",
    danger: false,
    reason: false,
  });
  if (!answer.confirmed) return;
  try {
    const reply = await apiJson(`${API}/requirements/${encodeURIComponent(id)}/deploy`, { method: "POST" });
    const where = reply?.deployed_path || reply?.file_path || reply?.path || r.route || "";
    toast(`Deployed${where ? ` to ${where}` : ""}`, "ok", r.title || "Deploy");
  } catch (error) {
    toast(error.message, "error", "Deploy failed");
  }
  await refresh();
  if (state.selected === id) await showPreview(id);
}

async function remove(id) {
  const r = state.requirements.find((x) => reqId(x) === id) || {};
  const answer = await confirmAction({
    title: `Delete ${r.title || "this requirement"}?`,
    message: "The requirement is cancelled and removed from the queue. Deployed files stay in place.",
    confirmLabel: "Delete",
    reason: false,
  });
  if (!answer.confirmed) return;
  try {
    await apiJson(`${API}/requirements/${encodeURIComponent(id)}`, { method: "DELETE" });
    toast("Requirement deleted", "ok", r.title || "Delete");
    if (state.selected === id) closePreview();
  } catch (error) {
    toast(error.message, "error", "Delete failed");
  }
  await refresh();
}

// --- preview -------------------------------------------------------------------------------

function codeView(source) {
  const text = String(source ?? "");
  const lines = text.split("\n").length;
  const gutter = Array.from({ length: lines }, (_, i) => i + 1).join("\n");
  return [h("pre", { class: "gutter", "aria-hidden": "true" }, gutter), h("pre", {}, h("code", { class: "tsx" }, highlight(text)))];
}

/** An object as key/values, with its lists as tables and deeper objects as JSON text. */
function structured(value, empty) {
  if (value === null || value === undefined) return h("p", { class: "muted" }, empty);
  if (Array.isArray(value)) return recordsTable(value, { empty });
  if (typeof value !== "object") return h("p", {}, String(value));
  const entries = Object.entries(value);
  const flat = Object.fromEntries(entries.filter(([, v]) => v === null || typeof v !== "object" || (Array.isArray(v) && !v.length)));
  const parts = Object.keys(flat).length ? [keyValues(flat)] : [];
  for (const [key, v] of entries) {
    if (Array.isArray(v) && v.length) parts.push(h("h4", { class: "minor" }, humanize(key)), recordsTable(v));
    else if (v && typeof v === "object" && !Array.isArray(v)) {
      parts.push(h("h4", { class: "minor" }, humanize(key)), h("pre", { class: "code-block" }, jsonText(v)));
    }
  }
  return h("div", {}, parts);
}

function renderPreview(preview, { requirement = null, oneShot = false } = {}) {
  const panel = $("#preview");
  const code = preview.tsx_code ?? preview.code ?? "";
  const lines = preview.code_lines ?? String(code).split("\n").length;
  $("#preview-title").textContent = `Preview: ${requirement?.title || preview.title || "generated page"}`;
  const meta = [`${num(lines)} lines of TSX`];
  const file = preview.file_path || preview.output_path || preview.path;
  if (file) meta.push(file);
  if (requirement?.status) meta.push(`status ${requirement.status}`);
  if (preview.generation_time_ms !== undefined) meta.push(`generated in ${num(preview.generation_time_ms, 1)} ms`);
  if (preview.complexity !== undefined) meta.push(`complexity ${typeof preview.complexity === "object" ? JSON.stringify(preview.complexity) : preview.complexity}`);
  if (oneShot) meta.push("not saved: submit the requirement to keep it");
  $("#preview-meta").textContent = meta.join(" · ");
  fill($("#preview-code"), codeView(code));
  fill($("#preview-wiring"), structured(preview.api_wiring, "No API wiring"));
  fill($("#preview-sidebar"), structured(preview.sidebar_entry, "No sidebar entry"));
  const validation = preview.validation ?? preview.warnings;
  $("#preview-extra-wrap").hidden = validation === undefined;
  if (validation !== undefined) fill($("#preview-extra"), structured(validation, "Valid"));
  const history = requirement?.history;
  $("#preview-history-wrap").hidden = !Array.isArray(history);
  if (Array.isArray(history)) fill($("#preview-history"), recordsTable(history));

  const id = reqId(requirement);
  const actions = [];
  if (id && requirement.status === "generated") actions.push(actionButton("Deploy", () => deploy(id), { class: "btn btn-small btn-primary" }));
  if (id && CANCELLABLE.has(requirement.status)) {
    actions.push(actionButton("Delete", () => remove(id), { class: "btn btn-small btn-danger-quiet" }));
  }
  actions.push(actionButton("Close", closePreview, { class: "btn btn-small btn-quiet" }));
  fill($("#preview-actions"), actions);
  panel.dataset.id = id || "";
  panel.hidden = false;
}

async function showPreview(id) {
  try {
    const [preview, requirement] = await Promise.all([
      apiJson(`${API}/requirements/${encodeURIComponent(id)}/preview`),
      apiJson(`${API}/requirements/${encodeURIComponent(id)}`),
    ]);
    state.selected = id;
    renderRequirements();
    renderPreview(preview, { requirement });
    $("#preview").scrollIntoView({ block: "nearest" });
  } catch (error) {
    toast(error.message, "error", "Preview failed");
  }
}

function closePreview() {
  state.selected = null;
  $("#preview").hidden = true;
  renderRequirements();
}

// --- the submit form ---------------------------------------------------------------------

function option(value, label, selected) {
  return h("option", { value, selected }, label);
}

function fieldRow(field = {}) {
  const type = h("select", { "aria-label": "Field type", class: "narrow" }, FIELD_TYPES.map((t) => option(t, t, t === (field.type || "string"))));
  const values = h("input", {
    "aria-label": "Enum values (comma separated)",
    placeholder: "values: a, b, c",
    value: (field.values || field.options || []).join(", "),
  });
  const sync = () => {
    values.hidden = type.value !== "enum";
  };
  type.addEventListener("change", sync);
  const row = h(
    "div",
    { class: "row-edit", dataset: { kind: "field" } },
    h("input", { "aria-label": "Field name", placeholder: "name", value: field.name || "", dataset: { key: "name" } }),
    h("input", { "aria-label": "Field label", placeholder: "Label", value: field.label || "", dataset: { key: "label" } }),
    type,
    h("label", { class: "check" }, h("input", { type: "checkbox", checked: Boolean(field.required) }), "required"),
    values,
    h("button", { type: "button", class: "btn btn-small btn-quiet", "aria-label": "Remove field", onclick: () => row.remove() }, "Remove"),
  );
  sync();
  return row;
}

function endpointRow(endpoint = {}) {
  const row = h(
    "div",
    { class: "row-edit", dataset: { kind: "endpoint" } },
    h("select", { "aria-label": "HTTP method", class: "narrow" }, METHODS.map((m) => option(m, m, m === (endpoint.method || "GET")))),
    h("input", { "aria-label": "Endpoint path", placeholder: "/api/v1/…", value: endpoint.path || "", spellcheck: "false" }),
    h("input", { "aria-label": "Endpoint description", placeholder: "what it returns", value: endpoint.description || "" }),
    h("button", { type: "button", class: "btn btn-small btn-quiet", "aria-label": "Remove endpoint", onclick: () => row.remove() }, "Remove"),
  );
  return row;
}

/** The feature checkboxes the selected page type supports (checked ones stay checked). */
function featureBoxes() {
  const box = $("#r-features");
  const type = $("#r-page-type").value;
  const template = state.templates.find((t) => typeKey(t) === type);
  const features = Array.isArray(template?.features) ? template.features : FEATURES;
  const checked = new Set(Array.from(box.querySelectorAll("input:checked")).map((i) => i.value));
  fill(
    box,
    features.length
      ? features.map((feature) =>
          h("label", { class: "check" }, h("input", { type: "checkbox", name: "features", value: feature, checked: checked.has(feature) }), humanize(feature)),
        )
      : h("span", { class: "muted small" }, "This page type has no optional features"),
  );
}

function readForm() {
  const value = (id) => $(id).value.trim();
  const fields = Array.from(document.querySelectorAll('#r-fields [data-kind="field"]')).map((row) => {
    const [name, label, values] = row.querySelectorAll("input:not([type=checkbox])");
    const field = {
      name: name.value.trim(),
      type: row.querySelector("select").value,
      required: row.querySelector("input[type=checkbox]").checked,
    };
    if (label.value.trim()) field.label = label.value.trim();
    if (field.type === "enum") field.values = values.value.split(",").map((v) => v.trim()).filter(Boolean);
    return field;
  });
  const endpoints = Array.from(document.querySelectorAll('#r-endpoints [data-kind="endpoint"]')).map((row) => {
    const [path, description] = row.querySelectorAll("input");
    const endpoint = { method: row.querySelector("select").value, path: path.value.trim() };
    if (description.value.trim()) endpoint.description = description.value.trim();
    return endpoint;
  });
  const body = {
    title: value("#r-title"),
    description: value("#r-description"),
    page_type: $("#r-page-type").value,
    route: value("#r-route"),
    api_endpoints: endpoints.filter((e) => e.path),
    data_fields: fields.filter((f) => f.name),
    features: Array.from(document.querySelectorAll('#r-features input:checked')).map((i) => i.value),
    sidebar_section: value("#r-section") || "main",
    sidebar_icon: value("#r-icon") || undefined,
    priority: $("#r-priority").value,
  };
  const refreshInterval = value("#r-refresh");
  if (refreshInterval !== "") body.refresh_interval = Number(refreshInterval);
  return body;
}

const FIELD_INPUTS = {
  title: "#r-title",
  description: "#r-description",
  page_type: "#r-page-type",
  route: "#r-route",
  sidebar_section: "#r-section",
  sidebar_icon: "#r-icon",
  priority: "#r-priority",
  refresh_interval: "#r-refresh",
};

/** Mark the inputs a 422 names (loc ["body", "route"] or ["body", "data_fields", 0, "name"]). */
function markServerErrors(error) {
  const details = Array.isArray(error?.body?.detail) ? error.body.detail : [];
  for (const d of details) {
    const loc = (d.loc || []).filter((p) => p !== "body");
    let input = FIELD_INPUTS[loc[0]] ? $(FIELD_INPUTS[loc[0]]) : null;
    if (loc[0] === "data_fields" || loc[0] === "api_endpoints") {
      const kind = loc[0] === "data_fields" ? "field" : "endpoint";
      const row = document.querySelectorAll(`#r-${kind}s [data-kind="${kind}"]`)[loc[1]];
      input = row?.querySelector("input");
    }
    input?.setAttribute("aria-invalid", "true");
  }
  $('#req-form [aria-invalid="true"]')?.focus();
}

function showErrors(messages) {
  const box = $("#form-errors");
  box.textContent = messages.join("\n");
  box.hidden = !messages.length;
}

function checkForm(body) {
  const problems = [];
  for (const el of document.querySelectorAll("#req-form [aria-invalid]")) el.removeAttribute("aria-invalid");
  const mark = (id, bad) => $(id).setAttribute("aria-invalid", String(bad));
  mark("#r-title", !body.title);
  if (!body.title) problems.push("Title is required.");
  const routeOk = body.route.startsWith("/"); // the gateway checks the rest and says what is wrong
  mark("#r-route", !routeOk);
  if (!routeOk) problems.push("Route must start with /, e.g. /vulnerabilities/risk.");
  if (!body.page_type) problems.push("Choose a page type.");
  return problems;
}

async function submit(event) {
  event.preventDefault();
  const body = readForm();
  const problems = checkForm(body);
  showErrors(problems);
  if (problems.length) {
    $('#req-form [aria-invalid="true"]')?.focus();
    return;
  }
  const button = $("#r-submit");
  button.disabled = true;
  try {
    const created = await apiJson(`${API}/requirements`, { method: "POST", json: body });
    toast(`Queued as ${reqId(created) || "a new requirement"}`, "ok", body.title);
    showErrors([]);
    state.selected = reqId(created);
    await refresh();
  } catch (error) {
    showErrors([error.message]);
    markServerErrors(error);
    toast(error.message, "error", "Submit failed");
  } finally {
    button.disabled = false;
  }
}

async function previewOnce() {
  const body = readForm();
  const problems = checkForm(body);
  showErrors(problems);
  if (problems.length) return;
  try {
    const preview = await apiJson(`${API}/generate-preview`, { method: "POST", json: body });
    state.selected = null;
    renderRequirements();
    renderPreview(preview, { oneShot: true });
  } catch (error) {
    showErrors([error.message]);
    markServerErrors(error);
    toast(error.message, "error", "Preview failed");
  }
}

function resetForm() {
  fill($("#r-fields"), fieldRow());
  fill($("#r-endpoints"), endpointRow());
  showErrors([]);
  for (const el of document.querySelectorAll("#req-form [aria-invalid]")) el.removeAttribute("aria-invalid");
}

/** Fill the form from a template's example config (fields the form knows). */
function useExample(type, example) {
  $("#r-page-type").value = type;
  const set = (id, v) => {
    if (v !== undefined && v !== null) $(id).value = v;
  };
  set("#r-title", example.title);
  set("#r-description", example.description);
  set("#r-route", example.route);
  set("#r-section", example.sidebar_section);
  set("#r-icon", example.sidebar_icon);
  set("#r-priority", example.priority);
  set("#r-refresh", example.refresh_interval);
  if (Array.isArray(example.data_fields)) fill($("#r-fields"), example.data_fields.map(fieldRow));
  if (Array.isArray(example.api_endpoints)) fill($("#r-endpoints"), example.api_endpoints.map(endpointRow));
  featureBoxes();
  if (Array.isArray(example.features)) {
    for (const box of document.querySelectorAll("#r-features input")) box.checked = example.features.includes(box.value);
  }
  $("#r-title").focus();
  toast(`Form filled from the ${type} example`, "info");
}

// --- templates and components ------------------------------------------------------------

function schemaType(p) {
  if (!p || typeof p !== "object") return "";
  if ("const" in p) return JSON.stringify(p.const);
  if (Array.isArray(p.enum)) return p.enum.join(" | ");
  if (p.type === "array") {
    const item = p.items?.properties ? `{${Object.keys(p.items.properties).join(", ")}}` : schemaType(p.items);
    return `array of ${item || "items"}`;
  }
  return p.type ?? (p.anyOf || p.oneOf || []).map(schemaType).join(" | ");
}

function schemaView(schema) {
  const props = schema?.properties || schema?.schema?.properties;
  if (props && typeof props === "object") {
    const required = new Set(schema.required || schema.schema?.required || []);
    return recordsTable(
      Object.entries(props).map(([name, p]) => ({
        name,
        type: schemaType(p),
        required: required.has(name),
        description: [p?.description, p?.pattern ? `pattern ${p.pattern}` : null, p?.maxLength ? `≤ ${p.maxLength} chars` : null]
          .filter(Boolean)
          .join(" · "),
      })),
    );
  }
  return h("pre", { class: "code-block" }, jsonText(schema));
}

async function selectTemplate(type) {
  state.template = type;
  for (const tab of document.querySelectorAll("#template-tabs [role=tab]")) {
    const on = tab.dataset.type === type;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
  }
  const info = state.templates.find((t) => typeKey(t) === type) || {};
  const panel = $("#template-detail");
  panel.setAttribute("aria-labelledby", `tab-${type}`);
  const example = info.example_config;
  const parts = [
    h("p", {}, h("strong", {}, info.label || humanize(type)), info.description ? ` — ${info.description}` : ""),
  ];
  if (Array.isArray(info.config_keys)) {
    parts.push(h("p", { class: "muted small" }, `Config keys: ${info.config_keys.join(", ")}`));
  }
  const schemaBox = h("div", {}, h("p", { class: "muted" }, "Loading schema…"));
  parts.push(h("h3", { class: "subhead" }, "Schema"), schemaBox);
  if (example !== undefined) {
    parts.push(
      h("h3", { class: "subhead" }, "Example config"),
      h("pre", { class: "code-block" }, jsonText(example)),
      h("div", {}, actionButton("Use this example in the form", () => useExample(type, example || {}))),
    );
  }
  fill(panel, parts);
  try {
    const schema = await apiJson(`${API}/templates/${encodeURIComponent(type)}/schema`);
    if (state.template === type) fill(schemaBox, schemaView(schema));
  } catch (error) {
    if (state.template === type) fill(schemaBox, h("p", { class: "muted" }, `Schema unavailable: ${error.message}`));
  }
}

function renderTabs() {
  const tabs = $("#template-tabs");
  const types = state.templates.length ? state.templates : PAGE_TYPES.map(([type, label]) => ({ type, label }));
  fill(
    tabs,
    types.map((t, i) =>
      h(
        "button",
        {
          type: "button",
          role: "tab",
          class: "btn btn-small tab",
          id: `tab-${typeKey(t)}`,
          dataset: { type: typeKey(t) },
          "aria-selected": "false",
          tabIndex: i === 0 ? 0 : -1,
          onclick: () => selectTemplate(typeKey(t)),
        },
        t.label || humanize(typeKey(t)),
      ),
    ),
  );
  // arrow keys move between tabs (WAI-ARIA tabs pattern)
  tabs.addEventListener("keydown", (event) => {
    if (!["ArrowLeft", "ArrowRight", "Home", "End"].includes(event.key)) return;
    const all = Array.from(tabs.querySelectorAll("[role=tab]"));
    let i = all.indexOf(document.activeElement);
    if (event.key === "ArrowLeft") i = (i - 1 + all.length) % all.length;
    else if (event.key === "ArrowRight") i = (i + 1) % all.length;
    else if (event.key === "Home") i = 0;
    else i = all.length - 1;
    all[i].focus();
    selectTemplate(all[i].dataset.type);
    event.preventDefault();
  });
  const select = $("#r-page-type");
  const current = select.value;
  fill(select, types.map((t) => option(typeKey(t), t.label || humanize(typeKey(t)), typeKey(t) === current)));
  featureBoxes();
  if (types.length) selectTemplate(state.template || typeKey(types[0]));
}

async function loadTemplates() {
  try {
    state.templates = listOf(await apiJson(`${API}/templates`), "templates", "items");
  } catch (error) {
    unavailable(error);
    state.templates = [];
  }
  renderTabs();
}

function propsList(props) {
  if (!props) return null;
  const items = Array.isArray(props)
    ? props.map((p) => (typeof p === "object" ? `${p.name}${p.type ? `: ${p.type}` : ""}${p.required ? "" : "?"}` : String(p)))
    : Object.entries(props).map(([k, v]) => (typeof v === "string" ? `${k}: ${v}` : k));
  return h("ul", { class: "props", "aria-label": "Props" }, items.map((p) => h("li", {}, p)));
}

async function loadComponents() {
  try {
    const components = listOf(await apiJson(`${API}/component-library`), "components", "items");
    $("#components-note").textContent = `${components.length} components`;
    fill(
      $("#components"),
      components.length
        ? components.map((c) =>
            h(
              "article",
              { class: "component" },
              h("h3", {}, c.name || c._key),
              c.description ? h("p", {}, c.description) : null,
              propsList(c.props),
            ),
          )
        : h("p", { class: "muted" }, "No components registered"),
    );
  } catch (error) {
    if (!unavailable(error)) fill($("#components"), h("p", { class: "muted" }, `Component library unavailable: ${error.message}`));
  }
}

// --- start ------------------------------------------------------------------------------

function init() {
  initIdentity();
  resetForm();
  $("#req-form").addEventListener("submit", submit);
  $("#req-form").addEventListener("reset", () => setTimeout(resetForm));
  $("#r-preview").addEventListener("click", previewOnce);
  $("#r-page-type").addEventListener("change", featureBoxes);
  $("#add-field").addEventListener("click", () => {
    const row = fieldRow();
    $("#r-fields").append(row);
    row.querySelector("input").focus();
  });
  $("#add-endpoint").addEventListener("click", () => {
    const row = endpointRow();
    $("#r-endpoints").append(row);
    row.querySelector("input").focus();
  });
  $("#req-refresh").addEventListener("click", () => refresh());
  renderTabs();
  loadTemplates();
  loadComponents();
  refresh();
  new LiveFeed(onDashboard).start();
  setInterval(() => {
    if (!document.hidden) refresh();
  }, POLL_MS);
}

init();
