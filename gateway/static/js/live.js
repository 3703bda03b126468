// Keeping the dashboard current: server-sent events from /api/v1/admin/stream, with
// polling of /api/v1/admin/dashboard every 8 s whenever the stream is down. The header
// indicator says which of the two is feeding the page, and when it last heard anything.

import { apiJson, stream } from "./api.js";
import { setLive } from "./ui.js";

export const POLL_MS = 8000;
const SILENCE_MS = 35_000; // the gateway pings every 15 s; twice that in silence = broken
const MAX_BACKOFF_MS = 15_000;

export class LiveFeed {
  /** onDashboard(dashboard, source) is called for every fresh dashboard. */
  constructor(onDashboard) {
    this.onDashboard = onDashboard;
    this.streaming = false;
    this.lastUpdate = 0; // when a dashboard last arrived (any source)
    this.lastBytes = 0; // when the stream last said anything (including pings)
    this.serverStale = false;
    this.failures = 0;
    this.abort = null;
  }

  start() {
    this.connect();
    this.poll(); // first paint does not wait for the stream
    this.pollTimer = setInterval(() => {
      if (!this.streaming) this.poll();
    }, POLL_MS);
    this.tick = setInterval(() => this.check(), 1000);
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && !this.streaming) this.poll();
    });
    return this;
  }

  /** Fetch the dashboard once now (also used after this page sends a command). */
  async poll() {
    try {
      const dashboard = await apiJson("/api/v1/admin/dashboard");
      this.deliver(dashboard, "poll");
    } catch {
      this.render();
    }
  }

  deliver(dashboard, source) {
    this.lastUpdate = Date.now();
    this.serverStale = Boolean(dashboard.view?.stale);
    this.onDashboard(dashboard, source);
    this.render();
  }

  async connect() {
    this.abort = new AbortController();
    try {
      await stream("/api/v1/admin/stream", {
        signal: this.abort.signal,
        onOpen: () => {
          this.streaming = true;
          this.failures = 0;
          this.lastBytes = Date.now();
          this.render();
        },
        onBytes: () => {
          this.lastBytes = Date.now();
        },
        onEvent: (event, data) => {
          if (event !== "dashboard") return;
          try {
            this.deliver(JSON.parse(data), "sse");
          } catch {
            /* a malformed event is skipped; the next one replaces it */
          }
        },
      });
    } catch {
      /* network error, HTTP error or abort: fall through to reconnect */
    }
    this.streaming = false;
    this.render();
    this.failures += 1;
    const wait = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(this.failures, 5));
    setTimeout(() => this.connect(), wait);
  }

  check() {
    if (this.streaming && Date.now() - this.lastBytes > SILENCE_MS) this.abort?.abort();
    this.render();
  }

  state() {
    const fresh = this.lastUpdate && Date.now() - this.lastUpdate < POLL_MS * 2.5;
    if (this.serverStale) return ["stale", "gateway lost the event stream"];
    if (this.streaming) return ["live", null];
    if (fresh) return ["polling", null];
    return [this.lastUpdate ? "stale" : "connecting", null];
  }

  render() {
    const [state, detail] = this.state();
    setLive(state, { lastUpdate: this.lastUpdate, detail });
  }
}
