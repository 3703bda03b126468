import type { DetailItem } from "./types";

/** Label/value pairs of one entity */
export interface DetailListProps {
  /** The pairs in display order */
  items: readonly DetailItem[];
}

export function DetailList({ items }: DetailListProps) {
  return (
    <dl className="aoc-panel aoc-detail-list">
      {items.map((item, index) => (
        <div key={index} className="aoc-detail-row">
          <dt>{item.label}</dt>
          <dd>{item.value}</dd>
        </div>
      ))}
    </dl>
  );
}
