"use client";

import { ArrowDown, ArrowUp, ArrowUpDown } from "lucide-react";

import { formatValue } from "./format";
import { StatusBadge } from "./status-badge";
import type { ColumnDef, SortState } from "./types";

/** Table of typed rows with sortable columns, loading and empty states */
export interface DataTableProps<T> {
  /** Which keys to show, with labels and types */
  columns: readonly ColumnDef<T>[];
  /** The rows of the current page */
  rows: readonly T[];
  /** Stable React key of a row */
  rowKey: (row: T, index: number) => string;
  /** Show a skeleton instead of rows */
  loading?: boolean;
  /** Shown when there are no rows */
  emptyMessage?: string;
  /** The active sort */
  sort?: SortState<T> | null;
  /** Called when a header is clicked */
  onSortChange?: (sort: SortState<T> | null) => void;
}

const SKELETON_ROWS = 5;

export function DataTable<T>({
  columns,
  rows,
  rowKey,
  loading = false,
  emptyMessage = "No records",
  sort = null,
  onSortChange,
}: DataTableProps<T>) {
  // a click cycles a column: ascending, descending, unsorted
  const nextSort = (key: keyof T & string): SortState<T> | null => {
    if (sort === null || sort.key !== key) {
      return { key, direction: "asc" };
    }
    return sort.direction === "asc" ? { key, direction: "desc" } : null;
  };

  return (
    <div className="aoc-table-wrap">
      <table className="aoc-table" aria-busy={loading}>
        <thead>
          <tr>
            {columns.map((column) => {
              const active = sort !== null && sort.key === column.key;
              const ariaSort = active ? (sort.direction === "asc" ? "ascending" : "descending") : "none";
              const Arrow = !active ? ArrowUpDown : sort.direction === "asc" ? ArrowUp : ArrowDown;
              return (
                <th key={column.key} scope="col" aria-sort={ariaSort}>
                  {column.sortable !== false && onSortChange !== undefined ? (
                    <button type="button" className="aoc-sort" onClick={() => onSortChange(nextSort(column.key))}>
                      {column.label}
                      <Arrow aria-hidden="true" size={14} />
                    </button>
                  ) : (
                    column.label
                  )}
                </th>
              );
            })}
          </tr>
        </thead>
        <tbody>
          {loading && rows.length === 0
            ? Array.from({ length: SKELETON_ROWS }, (_unused, index) => (
                <tr key={`skeleton-${index}`} className="aoc-skeleton-row">
                  {columns.map((column) => (
                    <td key={column.key}>
                      <span className="aoc-skeleton" />
                    </td>
                  ))}
                </tr>
              ))
            : rows.map((row, index) => (
                <tr key={rowKey(row, index)}>
                  {columns.map((column) => (
                    <td key={column.key} data-column={column.key}>
                      {column.type === "enum" ? (
                        <StatusBadge value={cellText(row[column.key])} />
                      ) : (
                        formatValue(row[column.key], column.type)
                      )}
                    </td>
                  ))}
                </tr>
              ))}
          {!loading && rows.length === 0 && (
            <tr>
              <td className="aoc-empty" colSpan={Math.max(columns.length, 1)}>
                {emptyMessage}
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}

function cellText(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value);
}
