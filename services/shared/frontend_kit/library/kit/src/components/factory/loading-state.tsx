/** Placeholder shown while the first load is in flight */
export interface LoadingStateProps {
  /** What is loading */
  label?: string;
}

export function LoadingState({ label }: LoadingStateProps) {
  return (
    <div className="aoc-loading" role="status" aria-live="polite">
      <span className="aoc-spinner" aria-hidden="true" />
      {label ? `Loading ${label}\u2026` : "Loading\u2026"}
    </div>
  );
}
