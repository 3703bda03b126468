"use client";

import { TriangleAlert } from "lucide-react";

/** Error message with an optional retry button */
export interface ErrorBannerProps {
  /** What went wrong */
  message: string;
  /** Retry handler */
  onRetry?: () => void;
}

export function ErrorBanner({ message, onRetry }: ErrorBannerProps) {
  return (
    <div className="aoc-banner aoc-banner-error" role="alert">
      <TriangleAlert aria-hidden="true" size={18} />
      <span className="aoc-banner-text">{message}</span>
      {onRetry !== undefined && (
        <button type="button" className="aoc-button aoc-button-secondary" onClick={onRetry}>
          Retry
        </button>
      )}
    </div>
  );
}
