import { formatValue } from "./format";
import type { ValueFormat } from "./types";

/** One number with its label */
export interface MetricCardProps {
  /** What is measured */
  label: string;
  /** The value; null shows a dash */
  value: number | string | null;
  /** How to format the value */
  format?: ValueFormat;
  /** Small print under the value */
  hint?: string;
}

export function MetricCard({ label, value, format = "number", hint }: MetricCardProps) {
  return (
    <div className="aoc-panel aoc-metric">
      <div className="aoc-metric-label">{label}</div>
      <div className="aoc-metric-value">{formatValue(value, format)}</div>
      {hint ? <div className="aoc-muted aoc-small">{hint}</div> : null}
    </div>
  );
}
