// The activity feed: newest first, filtered on the server (system, result, actor, text),
// older rows fetched by stream-sequence cursor as the list scrolls, new rows fetched
// when the live dashboard says the stream moved on. Exports CSV and JSON.

import { notesCell } from "./annotations.js";
import { apiJson, download } from "./api.js";
import { $, h } from "./dom.js";
import { utc, utcClock } from "./format.js";
import { toast } from "./ui.js";

const PAGE = 50;
const NEWEST = 100;
const MAX_ROWS = 3000;
const RESULTS = ["success", "failed", "accepted", "rejected", "noop", "duplicate", "auto_resolved", "rule_generated"];
const OK_RESULTS = new Set(["success", "accepted", "auto_resolved", "rule_generated", "done"]);
const BAD_RESULTS = new Set(["failed", "rejected", "error"]);

function resultKind(result) {
  if (OK_RESULTS.has(result)) return "ok";
  if (BAD_RESULTS.has(result)) return "bad";
  return "neutral";
}

function row(event, fresh) {
  return h(
    "tr",
    { class: fresh ? "row-new" : null, dataset: { seq: event.seq, id: event.id } },
    h("td", { class: "nowrap" }, h("time", { datetime: event.timestamp, title: utc(event.timestamp) }, utcClock(event.timestamp))),
    h("td", { class: "nowrap" }, event.system),
    h("td", { class: "mono" }, event.action),
    h("td", {}, h("span", { class: ["result", `result-${resultKind(event.result)}`] }, event.result)),
    h("td", { class: "nowrap" }, event.actor),
    h("td", { class: "detail" }, event.detail),
    notesCell(event),
  );
}

export class ActivityFeed {
  constructor() {
    this.tbody = $("#activity-rows");
    this.scroller = $("#activity-scroll");
    this.more = $("#activity-load");
    this.end = $("#activity-end");
    this.note = $("#activity-note");
    this.inputs = {
      system: $("#f-system"),
      result: $("#f-result"),
      actor: $("#f-actor"),
      q: $("#f-q"),
      tag: $("#f-tag"),
    };
    this.systems = new Set();
    this.results = new Set();
    this.actors = new Set();
    this.generation = 0; // bumps on reset, so late answers to old queries are dropped
    this.top = 0; // newest stream sequence shown
    this.cursor = null; // next_before for older rows
    this.done = false;
    this.loading = false;
    this.newer = null; // in-flight fetch of newer rows
    this.checked = 0; // the stream sequence the newest query saw
    this.wanted = 0; // the newest stream sequence the live view announced
    this.count = 0;
    for (const r of RESULTS) this.addOption(this.inputs.result, this.results, r, r);
  }

  start() {
    let timer;
    const later = () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.reset(), 300);
    };
    this.inputs.system.addEventListener("change", () => this.reset());
    this.inputs.result.addEventListener("change", () => this.reset());
    this.inputs.actor.addEventListener("input", later);
    this.inputs.q.addEventListener("input", later);
    this.inputs.tag.addEventListener("input", later);
    $("#activity-filters").addEventListener("submit", (event) => {
      event.preventDefault();
      this.reset();
    });
    this.more.addEventListener("click", () => this.loadOlder());
    $("#export-csv").addEventListener("click", () => this.export("csv"));
    $("#export-json").addEventListener("click", () => this.export("json"));
    new IntersectionObserver(
      (entries) => {
        if (entries.some((e) => e.isIntersecting)) this.loadOlder();
      },
      { root: this.scroller, rootMargin: "120px" },
    ).observe($("#activity-more"));
    return this.reset();
  }

  /** Known systems for the filter (labels from the dashboard). */
  setSystems(systems) {
    for (const s of Object.values(systems)) this.addOption(this.inputs.system, this.systems, s.name, s.label);
  }

  addOption(select, seen, value, label) {
    if (!value || seen.has(value)) return;
    seen.add(value);
    select.append(h("option", { value }, label === value ? value : `${label} (${value})`));
  }

  params(extra = {}) {
    const params = new URLSearchParams();
    for (const [key, input] of Object.entries(this.inputs)) {
      const value = input.value.trim();
      if (value) params.set(key, value);
    }
    for (const [key, value] of Object.entries(extra)) if (value !== null && value !== undefined) params.set(key, value);
    return params;
  }

  learn(events) {
    for (const e of events) {
      this.addOption(this.inputs.system, this.systems, e.system, e.system);
      this.addOption(this.inputs.result, this.results, e.result, e.result);
      if (e.actor && !this.actors.has(e.actor) && this.actors.size < 200) {
        this.actors.add(e.actor);
        $("#actors").append(h("option", { value: e.actor }));
      }
    }
  }

  async reset() {
    this.generation += 1;
    this.tbody.replaceChildren();
    this.top = 0;
    this.checked = 0;
    this.count = 0;
    this.cursor = null;
    this.done = false;
    this.loading = false;
    await this.loadOlder();
  }

  async loadOlder() {
    if (this.loading || this.done) return;
    this.loading = true;
    const generation = this.generation;
    this.scroller.setAttribute("aria-busy", "true");
    try {
      const page = await apiJson(`/api/v1/admin/activity-log?${this.params({ limit: PAGE, before: this.cursor })}`);
      if (generation !== this.generation) return;
      if (this.cursor === null) this.checked = Math.max(this.checked, page.last_seq);
      const events = page.events.filter((e) => this.cursor === null || e.seq < this.cursor);
      this.learn(events);
      this.tbody.append(...events.map((e) => row(e, false)));
      this.count += events.length;
      if (events.length) this.top = Math.max(this.top, events[0].seq);
      this.cursor = page.next_before;
      this.done = page.next_before === null || this.count >= MAX_ROWS;
    } catch (error) {
      if (generation === this.generation) this.note.textContent = `Activity unavailable: ${error.message}`;
      return;
    } finally {
      if (generation === this.generation) {
        this.loading = false;
        this.scroller.removeAttribute("aria-busy");
        this.renderFooter();
      }
    }
    // a short first page may not fill the box: keep going until it scrolls or ends
    if (!this.done && this.scroller.scrollHeight <= this.scroller.clientHeight + 120) this.loadOlder();
  }

  /** The stream reached `seq`: fetch rows newer than the top one (one request at a time). */
  async loadNewer(seq) {
    this.wanted = Math.max(this.wanted, seq);
    if (this.newer || this.loading || this.wanted <= this.checked) return;
    const generation = this.generation;
    this.newer = this.fetchNewer(generation);
    let ok = false;
    try {
      ok = await this.newer;
    } finally {
      this.newer = null;
    }
    if (ok && generation === this.generation && this.wanted > this.checked) await this.loadNewer(this.wanted);
  }

  async fetchNewer(generation) {
    try {
      const page = await apiJson(`/api/v1/admin/activity-log?${this.params({ limit: NEWEST })}`);
      if (generation !== this.generation) return false;
      this.checked = Math.max(this.checked, page.last_seq);
      const fresh = page.events.filter((e) => e.seq > this.top);
      if (fresh.length === NEWEST) {
        await this.reset(); // more arrived than one page: start over rather than leave a hole
        return false;
      }
      if (!fresh.length) return true;
      this.learn(fresh);
      this.tbody.prepend(...fresh.map((e) => row(e, true)));
      this.count += fresh.length;
      this.top = fresh[0].seq;
      if (this.count > MAX_ROWS) {
        while (this.count > MAX_ROWS) {
          this.tbody.lastElementChild.remove();
          this.count -= 1;
        }
        this.cursor = Number(this.tbody.lastElementChild.dataset.seq);
      }
      this.renderFooter();
      return true;
    } catch {
      return false; // the next live update tries again
    }
  }

  renderFooter() {
    this.more.hidden = this.done;
    this.end.hidden = !this.done;
    this.end.textContent = this.count ? "End of the log held in memory" : "No events match these filters";
    this.note.textContent = this.count ? `${this.count} events shown, newest first` : "";
  }

  async export(format) {
    const stamp = new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-");
    try {
      await download(`/api/v1/admin/activity-log?${this.params({ limit: 1000, format })}`, `aoc-activity-${stamp}.${format}`);
      toast(`Exported up to 1000 events as ${format.toUpperCase()}`, "ok");
    } catch (error) {
      toast(error.message, "error");
    }
  }
}
