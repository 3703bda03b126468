// /admin-ops: the seven system cards with their actions, the emergency banner and the
// platform-wide actions, the metrics panel with its charts, and the activity feed.

import { ActivityFeed } from "./activity.js";
import { apiJson } from "./api.js";
import { Series, renderChart } from "./charts.js";
import { $, fill, h } from "./dom.js";
import { initDrawer, openDetail } from "./drawer.js";
import { resumeJobs, watchJob } from "./jobs.js";
import { agoFrom, ago, brief, bytes, duration, humanize, num, pct, utc } from "./format.js";
import { LiveFeed } from "./live.js";
import { confirmAction, initIdentity, renderBanner, toast } from "./ui.js";

const METRICS_MS = 5000;
const STATE_TEXT = {
  running: "Running",
  stopped: "Stopped",
  unreachable: "Unreachable",
  starting: "Starting",
  stopping: "Stopping",
};
const VERBS = {
  trigger: { path: "trigger", label: "Trigger", busy: "Triggering…" },
  stop: { path: "emergency-stop", label: "Stop", busy: "Stopping…" },
  start: { path: "start", label: "Start", busy: "Starting…" },
  restart: { path: "restart", label: "Restart", busy: "Restarting…" },
};
// fields every card shows in its own rows; the rest of a system's status is "extras"
const COMMON = new Set([
  "name",
  "label",
  "running",
  "state",
  "schedule",
  "last_run",
  "error_count",
  "success_rate",
  "last_heartbeat",
  "heartbeat_age_seconds",
  "desired",
  "total_runs",
  "last_crash",
  "instances",
  "instances_active",
]);

const cards = new Map(); // slug -> {root, refs, system}
let received = Date.now(); // when the current dashboard arrived (heartbeat ages count from it)
let live;
let activity;

// --- system cards -----------------------------------------------------------------------

function stateText(state) {
  return STATE_TEXT[state] || humanize(state || "unknown");
}

function fact(label, ref, refs) {
  const dd = h("dd", {});
  refs[ref] = dd;
  return [h("dt", {}, label), dd];
}

function createCard(system) {
  const slug = system.name;
  const refs = {};
  refs.state = h("span", { class: "state" });
  refs.crash = h("p", { class: "crash-note", role: "status", hidden: true });
  refs.instances = h("p", { class: "instances" });
  refs.instances.hidden = true;
  refs.extras = h("dl", { class: "extras" });
  refs.buttons = {};
  for (const [verb, spec] of Object.entries(VERBS)) {
    refs.buttons[verb] = h(
      "button",
      {
        type: "button",
        class: ["btn", "btn-small", verb === "stop" ? "btn-danger-quiet" : null],
        dataset: { action: verb },
        "aria-label": `${spec.label} ${system.label}`,
        onclick: () => runCommand(slug, verb),
      },
      spec.label,
    );
  }
  const titleId = `card-${slug}-title`;
  const root = h(
    "article",
    { class: "card", dataset: { system: slug }, "aria-labelledby": titleId },
    h(
      "header",
      { class: "card-head" },
      h("div", {}, h("h3", { id: titleId, class: "card-title" }, system.label), h("p", { class: "slug" }, slug), refs.instances),
      refs.state,
    ),
    refs.crash,
    h(
      "dl",
      { class: "facts" },
      fact("Schedule", "schedule", refs),
      fact("Last run", "lastRun", refs),
      fact("Errors", "errors", refs),
      fact("Success rate", "success", refs),
      fact("Heartbeat", "heartbeat", refs),
    ),
    refs.extras,
    h(
      "div",
      { class: "card-actions" },
      Object.values(refs.buttons),
      h(
        "button",
        {
          type: "button",
          class: "btn btn-small btn-quiet",
          dataset: { action: "details" },
          "aria-label": `Details of ${system.label}`,
          onclick: () => openDetail(slug, cards.get(slug)?.system.label),
        },
        "Details",
      ),
      slug === "frontend-factory" ? h("a", { class: "btn btn-small btn-quiet", href: "/admin-ops/factory" }, "Open factory") : null,
    ),
  );
  return { root, refs, system, busy: false };
}

function setText(el, text, title) {
  if (el.textContent !== text) el.textContent = text;
  if (title !== undefined && el.title !== title) el.title = title;
}

function heartbeatText(system, now) {
  if (system.heartbeat_age_seconds === null || system.heartbeat_age_seconds === undefined) return "none yet";
  return ago(system.heartbeat_age_seconds + (now - received) / 1000);
}

// "restarted 12 s ago after a crash" for a while after a crash (gateway/views.py: last_crash)
function crashText(system, now) {
  const crash = system.last_crash;
  if (!crash) return "";
  const when = ago(crash.age_seconds + (now - received) / 1000);
  return crash.type === "engine_recovered" ? `restarted ${when} after a crash` : `crashed ${when}; restarting`;
}

function renderCrash(card, now) {
  const text = crashText(card.system, now);
  card.refs.crash.hidden = !text;
  setText(card.refs.crash, text, card.system.last_crash?.detail || "");
}

/** "2 instances, 1 active": shown when more than one instance of the engine is alive. */
function instancesText(system) {
  const total = system.instances || 0;
  const active = system.instances_active || 0;
  return total > 1 ? `${total} instances, ${active} active` : "";
}

function renderExtras(card, system) {
  const keys = Object.keys(system).filter((k) => !COMMON.has(k));
  const signature = keys.map((k) => `${k}=${JSON.stringify(system[k])}`).join("|");
  if (card.extrasSignature === signature) return;
  card.extrasSignature = signature;
  fill(
    card.refs.extras,
    keys.map((k) => [h("dt", {}, humanize(k)), h("dd", { title: typeof system[k] === "object" ? JSON.stringify(system[k]) : null }, brief(system[k]))]),
  );
}

function updateCard(card, system, now = Date.now()) {
  card.system = system;
  const { refs, root } = card;
  const state = system.state || (system.running ? "running" : "stopped");
  if (root.dataset.state !== state) root.dataset.state = state;
  refs.state.dataset.state = state;
  setText(refs.state, stateText(state), system.desired && system.desired !== "running" && state !== "stopped" ? `desired: ${system.desired}` : "");
  setText(refs.schedule, system.schedule || "—");
  setText(refs.lastRun, agoFrom(system.last_run, now), utc(system.last_run));
  setText(refs.errors, num(system.error_count));
  setText(refs.success, pct(system.success_rate));
  setText(refs.heartbeat, heartbeatText(system, now), utc(system.last_heartbeat));
  renderCrash(card, now);
  setText(refs.instances, instancesText(system));
  refs.instances.hidden = !(system.instances > 1);
  renderExtras(card, system);
  const { buttons } = refs;
  const hadFocus = root.contains(document.activeElement);
  buttons.trigger.disabled = state === "stopped";
  buttons.stop.disabled = state === "stopped";
  buttons.start.disabled = state === "running";
  buttons.trigger.title = state === "stopped" ? "Start the system before triggering it" : "";
  if (hadFocus && (document.activeElement === document.body || document.activeElement?.disabled)) {
    Object.values(buttons).find((b) => !b.disabled)?.focus();
  }
}

function renderCards(dashboard) {
  const box = $("#cards");
  if (!cards.size) box.replaceChildren();
  box.removeAttribute("aria-busy");
  const now = Date.now();
  for (const system of Object.values(dashboard.systems)) {
    let card = cards.get(system.name);
    if (!card) {
      card = createCard(system);
      cards.set(system.name, card);
      box.append(card.root);
    }
    updateCard(card, system, now);
  }
  const running = dashboard.systems_running ?? Object.values(dashboard.systems).filter((s) => s.running).length;
  const total = dashboard.systems_total ?? Object.keys(dashboard.systems).length;
  setText($("#systems-summary"), `${running} of ${total} running`);
}

function tickAges() {
  const now = Date.now();
  for (const card of cards.values()) {
    setText(card.refs.lastRun, agoFrom(card.system.last_run, now));
    setText(card.refs.heartbeat, heartbeatText(card.system, now));
    renderCrash(card, now);
  }
}

function onDashboard(dashboard) {
  received = Date.now();
  renderCards(dashboard);
  renderBanner(dashboard);
  activity?.setSystems(dashboard.systems);
  if (dashboard.view?.applied_seq) activity?.loadNewer(dashboard.view.applied_seq);
}

// --- commands ---------------------------------------------------------------------------

async function runCommand(slug, verb) {
  const card = cards.get(slug);
  if (!card || card.busy) return;
  const label = card.system.label;
  const spec = VERBS[verb];
  let reason = "";
  if (verb === "stop") {
    const answer = await confirmAction({
      title: `Stop ${label}?`,
      message: `${label} stops now and stays stopped, across restarts, until someone starts it.`,
      confirmLabel: "Stop",
    });
    if (!answer.confirmed) return;
    reason = answer.reason;
  }
  const button = card.refs.buttons[verb];
  card.busy = true;
  card.root.setAttribute("aria-busy", "true");
  button.textContent = spec.busy;
  try {
    const reply = await apiJson(`/api/v1/admin/${spec.path}/${encodeURIComponent(slug)}`, {
      method: "POST",
      json: { reason },
    });
    let message = reply.message || `${spec.label}: done`;
    if (reply.status === "started" && reply.run_id) {
      message += ` (run ${reply.run_id.slice(0, 8)} started; you will be told when it ends)`;
      watchJob(reply.run_id, label);
    }
    if (reply.duplicate) message += " (already handled)";
    toast(message, "ok", `${label}`);
  } catch (error) {
    toast(error.message, "error", `${spec.label} ${label} failed`);
  } finally {
    card.busy = false;
    card.root.removeAttribute("aria-busy");
    button.textContent = spec.label;
    live.poll();
  }
}

function summarizeAll(reply, verb) {
  const failed = Object.entries(reply.results || {}).filter(([, r]) => !r.ok);
  const text = `${verb}: ${reply.succeeded} succeeded, ${reply.failed} failed`;
  return failed.length ? `${text} (${failed.map(([slug, r]) => `${slug}: ${r.message || r.error}`).join("; ")})` : text;
}

async function runAll(path, verb, confirmSpec) {
  let reason = "";
  if (confirmSpec) {
    const answer = await confirmAction(confirmSpec);
    if (!answer.confirmed) return;
    reason = answer.reason;
  }
  try {
    const reply = await apiJson(`/api/v1/admin/${path}`, { method: "POST", json: { reason } });
    toast(summarizeAll(reply, verb), reply.ok ? "ok" : "error");
  } catch (error) {
    toast(error.message, "error", `${verb} failed`);
  } finally {
    live.poll();
  }
}

// --- metrics ----------------------------------------------------------------------------

const series = [
  new Series({ key: "cpu", label: "CPU", format: (v) => pct(v) }),
  new Series({ key: "memory", label: "Memory", format: (v) => `${num(v, 1)} MB` }),
  new Series({ key: "events", label: "Events in stream", format: (v) => num(v) }),
  new Series({ key: "running", label: "Systems running", format: (v) => num(v) }),
];

function tiles(box, items) {
  fill(
    box,
    items.map(([label, value, title]) => h("div", { class: "tile", title }, h("dt", {}, label), h("dd", {}, value))),
  );
}

function renderMetrics(m) {
  const js = m.jetstream || {};
  tiles($("#metric-tiles"), [
    ["Uptime", duration(m.uptime_seconds), "The gateway's uptime"],
    ["CPU", pct(m.cpu_percent), "Total over every live AOC process"],
    ["Memory", `${num(m.memory_mb, 1)} MB`, `${num(m.memory_percent, 2)} % of the host`],
    ["Threads", num(m.threads)],
    ["Live connections", num(m.active_sse_connections ?? m.active_ws_connections), "Browsers following the event stream"],
    ["Systems running", `${num(m.autonomous_systems_running)} / ${num(m.autonomous_systems_total)}`],
  ]);
  $("#stream-name").textContent = js.stream || "";
  tiles(
    $("#stream-tiles"),
    js.error
      ? [["State", `unavailable (${js.error})`]]
      : [
          ["Messages", num(js.messages)],
          ["Size", bytes(js.bytes)],
          ["Sequence", `${num(js.first_seq)} – ${num(js.last_seq)}`],
          ["Consumers", num(js.consumer_count)],
          ["Retention", js.max_age_days ? `${num(js.max_age_days)} days` : "—"],
        ],
  );
  const now = Date.now();
  const values = {
    cpu: m.cpu_percent,
    memory: m.memory_mb,
    events: js.messages,
    running: m.autonomous_systems_running,
  };
  for (const s of series) s.add(values[s.key], now);
  drawCharts(now);
  $("#metrics-note").textContent = m.note || "";
}

function drawCharts(now = Date.now()) {
  const box = $("#charts");
  if (box.children.length !== series.length) {
    fill(box, series.map((s) => h("figure", { class: "chart", dataset: { series: s.key } })));
  }
  series.forEach((s, i) => renderChart(box.children[i], s, now));
}

async function pollMetrics() {
  try {
    renderMetrics(await apiJson("/api/v1/admin/metrics"));
  } catch (error) {
    $("#metrics-note").textContent = `Metrics unavailable: ${error.message}`;
  }
}

// --- start ------------------------------------------------------------------------------

function init() {
  initIdentity();
  initDrawer();
  resumeJobs();
  $("#kill-switch").addEventListener("click", () =>
    runAll("emergency-stop-all", "Kill switch", {
      title: "Stop every system?",
      message: "The kill switch stops all seven engines now. They stay stopped until someone starts them.",
      confirmLabel: "Stop all systems",
    }),
  );
  $("#restart-all").addEventListener("click", () =>
    runAll("restart-all", "Restart all", {
      title: "Restart every system?",
      message: "All seven engines stop and start again; stopped engines start too.",
      confirmLabel: "Restart all",
    }),
  );
  $("#start-all").addEventListener("click", () => runAll("start-all", "Start all", null));
  activity = new ActivityFeed();
  live = new LiveFeed(onDashboard).start();
  activity.start();
  pollMetrics();
  setInterval(pollMetrics, METRICS_MS);
  setInterval(tickAges, 1000);
  drawCharts();
  // keyboard: "/" jumps to the activity search
  document.addEventListener("keydown", (event) => {
    if (event.key === "/" && !event.target.closest("input, textarea, select")) {
      event.preventDefault();
      $("#f-q").focus();
    }
  });
  window.aoc = { live, activity, cards }; // for the console and the browser tests
}

init();
