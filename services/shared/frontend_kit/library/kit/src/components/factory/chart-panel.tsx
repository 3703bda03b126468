import { formatValue } from "./format";
import type { ChartKind, ChartPoint, ValueFormat } from "./types";

/** Line, bar or area chart of labelled values */
export interface ChartPanelProps {
  /** Panel title */
  title: string;
  /** Chart type */
  kind: ChartKind;
  /** Points in display order */
  data: readonly ChartPoint[];
  /** Axis and tooltip format */
  valueFormat?: ValueFormat;
}

const WIDTH = 600;
const HEIGHT = 220;
const PAD = { top: 12, right: 12, bottom: 28, left: 56 };

export function ChartPanel({ title, kind, data, valueFormat = "number" }: ChartPanelProps) {
  const values = data.map((point) => (Number.isFinite(point.value) ? point.value : 0));
  const high = Math.max(0, ...values);
  const low = Math.min(0, ...values);
  const span = high - low || 1;
  const innerWidth = WIDTH - PAD.left - PAD.right;
  const innerHeight = HEIGHT - PAD.top - PAD.bottom;
  const step = data.length > 0 ? innerWidth / data.length : innerWidth;
  const x = (index: number) => PAD.left + step * index + step / 2;
  const y = (value: number) => PAD.top + innerHeight - ((value - low) / span) * innerHeight;
  const line = values.map((value, index) => `${index === 0 ? "M" : "L"}${x(index)},${y(value)}`).join(" ");
  const labelEvery = Math.max(1, Math.ceil(data.length / 8));

  return (
    <figure className="aoc-panel aoc-chart">
      <figcaption>{title}</figcaption>
      {data.length === 0 ? (
        <p className="aoc-muted">No data</p>
      ) : (
        <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={title}>
          <line x1={PAD.left} x2={WIDTH - PAD.right} y1={y(0)} y2={y(0)} className="aoc-chart-axis" />
          <text x={PAD.left - 6} y={y(high)} textAnchor="end" className="aoc-chart-label">
            {formatValue(high, valueFormat)}
          </text>
          <text x={PAD.left - 6} y={y(low)} textAnchor="end" className="aoc-chart-label">
            {formatValue(low, valueFormat)}
          </text>
          {kind === "bar" &&
            values.map((value, index) => (
              <rect
                key={index}
                x={x(index) - step * 0.35}
                width={step * 0.7}
                y={Math.min(y(value), y(0))}
                height={Math.abs(y(value) - y(0))}
                className="aoc-chart-bar"
              >
                <title>{`${data[index]?.label ?? ""}: ${formatValue(value, valueFormat)}`}</title>
              </rect>
            ))}
          {kind === "area" && (
            <path d={`${line} L${x(values.length - 1)},${y(0)} L${x(0)},${y(0)} Z`} className="aoc-chart-area" />
          )}
          {kind !== "bar" && <path d={line} className="aoc-chart-line" />}
          {kind !== "bar" &&
            values.map((value, index) => (
              <circle key={index} cx={x(index)} cy={y(value)} r={3} className="aoc-chart-dot">
                <title>{`${data[index]?.label ?? ""}: ${formatValue(value, valueFormat)}`}</title>
              </circle>
            ))}
          {data.map((point, index) =>
            index % labelEvery === 0 ? (
              <text key={index} x={x(index)} y={HEIGHT - 8} textAnchor="middle" className="aoc-chart-label">
                {point.label.length > 12 ? `${point.label.slice(0, 11)}\u2026` : point.label}
              </text>
            ) : null,
          )}
        </svg>
      )}
    </figure>
  );
}
