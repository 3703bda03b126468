// /admin-ops: the "SIEM export & alerts" panel. What leaves AOC for the SOC's own tools:
// every sink with its health, lag, last delivery and last error, and the control-plane
// alerts (open ones, then the latest transitions). Read from /api/v1/siem every few
// seconds; the SIEM service being down is shown, not hidden.

import { apiJson } from "./api.js";
import { $, fill, h } from "./dom.js";
import { agoFrom, num, utc } from "./format.js";

const POLL_MS = 5000;
const HEALTH_TEXT = { ok: "OK", degraded: "Retrying", refused: "Refused", down: "Service down", disabled: "Disabled" };
const SERVICE_TEXT = { up: "Running", down: "Down", not_running: "Not running" };

function badge(kind, value, text) {
  return h("span", { class: ["siem-badge", `siem-${kind}`], dataset: { value } }, text);
}

function renderService(service) {
  const parts = [badge("service", service.state, SERVICE_TEXT[service.state] || service.state)];
  if (service.detail) parts.push(h("span", { class: "muted" }, ` ${service.detail}`));
  else if (service.updated) parts.push(h("span", { class: "muted" }, ` status ${agoFrom(service.updated)}`));
  // with several instances, which one delivers (the lease holder) and which stand by
  if (service.instance) {
    const standbys = service.standbys || [];
    parts.push(
      h(
        "span",
        { class: "muted", dataset: { field: "instances" } },
        ` · active: ${service.instance}` + (standbys.length ? ` · standby: ${standbys.join(", ")}` : ""),
      ),
    );
  }
  const errors = [];
  if (service.sinks_error) errors.push(h("p", { class: "siem-error", dataset: { error: "sinks" } }, `Sinks not started: ${service.sinks_error}`));
  if (service.rules_error) errors.push(h("p", { class: "siem-error", dataset: { error: "rules" } }, `Rules not loaded: ${service.rules_error}`));
  fill($("#siem-service"), h("p", {}, parts), errors);
}

function renderSinks(sinks) {
  const body = $("#siem-sinks");
  if (!sinks.length) {
    fill(body, h("tr", {}, h("td", { colspan: "7", class: "muted" }, "No sink configured (AOC_SIEM_SINKS)")));
    return;
  }
  fill(
    body,
    sinks.map((sink) =>
      h(
        "tr",
        { dataset: { sink: sink.name, health: sink.health } },
        h("td", {}, h("strong", {}, sink.name), h("div", { class: "muted mono small" }, sink.url)),
        h("td", {}, sink.kind),
        h("td", {}, badge("health", sink.health, HEALTH_TEXT[sink.health] || sink.health)),
        h("td", { class: "num", dataset: { field: "lag" } }, num(sink.lag)),
        h("td", { class: "num", dataset: { field: "delivered" } }, num(sink.delivered)),
        h("td", { title: utc(sink.last_delivery) }, agoFrom(sink.last_delivery)),
        h(
          "td",
          { class: "siem-last-error", title: sink.last_error_at ? utc(sink.last_error_at) : "" },
          sink.last_error ? [sink.last_error, h("div", { class: "muted small" }, agoFrom(sink.last_error_at))] : "—",
        ),
      ),
    ),
  );
}

function renderAlerts(body) {
  const open = body.open_alerts || [];
  fill(
    $("#siem-open"),
    open.length
      ? open.map((alert) =>
          h(
            "li",
            { class: "siem-alert", dataset: { rule: alert.rule, target: alert.target, severity: alert.severity } },
            badge("severity", alert.severity, alert.severity),
            h("strong", {}, ` ${alert.rule}`),
            ` · ${alert.target} · ${alert.title}`,
            h("span", { class: "muted" }, ` · ${agoFrom(alert.fired_at)}`),
            alert.detail ? h("div", { class: "muted small" }, alert.detail) : null,
          ),
        )
      : h("li", { class: "muted" }, "No open alert"),
  );
  const recent = (body.recent_alerts || []).slice(0, 10);
  fill(
    $("#siem-recent"),
    recent.map((t) =>
      h(
        "li",
        { dataset: { type: t.type, rule: t.rule } },
        h("span", { class: "muted" }, `${utc(t.time)} `),
        t.type === "alert_fired" ? "fired " : "resolved ",
        h("strong", {}, t.rule),
        ` · ${t.target}${t.title ? ` · ${t.title}` : ""}`,
      ),
    ),
  );
  $("#siem-rules").textContent = (body.rules || []).map((r) => r.name).join(", ") || "none";
}

async function poll() {
  try {
    const [sinks, alerts] = await Promise.all([apiJson("/api/v1/siem/sinks"), apiJson("/api/v1/siem/alerts")]);
    renderService(sinks.service);
    renderSinks(sinks.sinks);
    renderAlerts(alerts);
    $("#siem-panel").setAttribute("aria-busy", "false");
    $("#siem-note").textContent = `updated ${utc(sinks.timestamp)}`;
  } catch (error) {
    $("#siem-note").textContent = `SIEM view unavailable: ${error.message}`;
  }
}

poll();
setInterval(poll, POLL_MS);
window.aocSiem = { poll }; // for the console and the browser tests
