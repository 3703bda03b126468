import { formatValue } from "./format";

/** Panel listing related records with automatic columns */
export interface RecordListProps {
  /** Panel title */
  title: string;
  /** The records */
  records: readonly Record<string, unknown>[];
  /** Show a skeleton */
  loading?: boolean;
  /** Shown when there are no records */
  emptyMessage?: string;
}

const MAX_COLUMNS = 8;

export function RecordList({ title, records, loading = false, emptyMessage = "Nothing here" }: RecordListProps) {
  // the columns are the keys of the first records that hold plain values
  const keys: string[] = [];
  for (const record of records.slice(0, 20)) {
    for (const [key, value] of Object.entries(record)) {
      if (!keys.includes(key) && (value === null || typeof value !== "object") && keys.length < MAX_COLUMNS) {
        keys.push(key);
      }
    }
  }
  return (
    <section className="aoc-panel aoc-record-list">
      <h2>{title}</h2>
      {loading && records.length === 0 ? (
        <p className="aoc-muted">Loading{"\u2026"}</p>
      ) : records.length === 0 ? (
        <p className="aoc-muted">{emptyMessage}</p>
      ) : (
        <div className="aoc-table-wrap">
          <table className="aoc-table">
            <thead>
              <tr>
                {keys.map((key) => (
                  <th key={key} scope="col">
                    {key}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {records.map((record, index) => (
                <tr key={index}>
                  {keys.map((key) => (
                    <td key={key}>{formatValue(record[key])}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
