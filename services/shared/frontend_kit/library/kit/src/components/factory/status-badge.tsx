/** Coloured badge for an enum value */
export interface StatusBadgeProps {
  /** The value; empty shows a dash */
  value: string | null | undefined;
}

const TONES: Record<string, "bad" | "warn" | "good" | "info"> = {
  critical: "bad",
  high: "bad",
  failed: "bad",
  error: "bad",
  open: "bad",
  escalated: "bad",
  red: "bad",
  medium: "warn",
  warning: "warn",
  pending: "warn",
  amber: "warn",
  accepted: "warn",
  low: "good",
  ok: "good",
  success: "good",
  resolved: "good",
  auto_resolved: "good",
  mitigated: "good",
  deployed: "good",
  green: "good",
};

export function StatusBadge({ value }: StatusBadgeProps) {
  if (value === null || value === undefined || value === "") {
    return <span className="aoc-muted">{"\u2014"}</span>;
  }
  const tone = TONES[value.toLowerCase()] ?? "info";
  return <span className={`aoc-badge aoc-badge-${tone}`}>{value}</span>;
}
