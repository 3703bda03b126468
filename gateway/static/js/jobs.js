// Long triggers: an engine that answers "started" hands out a run id; the dashboard
// follows that run (GET /api/v1/jobs/<run id>) and toasts when it ends. The runs it
// follows are kept in this tab's sessionStorage, so a reload keeps following them.

import { api } from "./api.js";
import { toast } from "./ui.js";

const KEY = "aoc.jobs";
const POLL_MS = 1000;
const GIVE_UP_MS = 6 * 60 * 60 * 1000;
const watching = new Set();

function saved() {
  try {
    return JSON.parse(window.sessionStorage.getItem(KEY) || "{}");
  } catch {
    return {};
  }
}

function save(jobs) {
  try {
    window.sessionStorage.setItem(KEY, JSON.stringify(jobs));
  } catch {
    // storage disabled: follow without surviving a reload
  }
}

/** Follow one run until it ends; toast its outcome. */
export function watchJob(runId, label) {
  const jobs = saved();
  if (!jobs[runId]) jobs[runId] = { label, since: Date.now() };
  save(jobs);
  follow(runId);
}

/** Pick up the runs this tab was following before a reload. */
export function resumeJobs() {
  for (const runId of Object.keys(saved())) follow(runId);
}

function forget(runId) {
  const jobs = saved();
  delete jobs[runId];
  save(jobs);
  watching.delete(runId);
}

function follow(runId) {
  if (watching.has(runId)) return;
  watching.add(runId);
  const tick = async () => {
    const job = saved()[runId];
    if (!job) return watching.delete(runId);
    if (Date.now() - job.since > GIVE_UP_MS) return forget(runId);
    let body = null;
    try {
      const response = await api(`/api/v1/jobs/${encodeURIComponent(runId)}`, { accept: "application/json" });
      if (response.ok) body = await response.json();
    } catch {
      // the gateway is away for a moment: try again
    }
    if (body && body.status !== "running") {
      forget(runId);
      const took = body.outcome && typeof body.outcome.duration_ms === "number" ? ` in ${(body.outcome.duration_ms / 1000).toFixed(1)} s` : "";
      if (body.status === "succeeded") {
        const detail = (body.result && (body.result.detail || body.result.result)) || "done";
        toast(`Job ${runId.slice(0, 8)} finished${took}: ${detail}`, "ok", `${job.label} job succeeded`);
      } else {
        toast(`Job ${runId.slice(0, 8)} failed${took}: ${body.error || "no detail"}`, "error", `${job.label} job failed`);
      }
      return;
    }
    setTimeout(tick, POLL_MS);
  };
  setTimeout(tick, POLL_MS);
}
