"use client";

import { RefreshCw } from "lucide-react";

/** Last-updated time, auto-refresh interval and a refresh button */
export interface RefreshControlProps {
  /** When the data was loaded */
  lastUpdated: Date | null;
  /** A load is in flight */
  refreshing: boolean;
  /** Reload now */
  onRefresh: () => void;
  /** Auto-refresh period, if any */
  intervalSeconds?: number;
}

export function RefreshControl({ lastUpdated, refreshing, onRefresh, intervalSeconds }: RefreshControlProps) {
  return (
    <div className="aoc-refresh">
      <span className="aoc-muted aoc-small" aria-live="polite">
        {lastUpdated === null ? "Not loaded yet" : `Updated ${lastUpdated.toLocaleTimeString()}`}
        {intervalSeconds ? ` \u00b7 every ${intervalSeconds} s` : ""}
      </span>
      <button
        type="button"
        className="aoc-button aoc-button-secondary"
        onClick={onRefresh}
        disabled={refreshing}
        aria-label="Refresh"
      >
        <RefreshCw aria-hidden="true" size={16} className={refreshing ? "aoc-spin" : undefined} />
      </button>
    </div>
  );
}
