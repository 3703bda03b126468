"use client";

import { Download } from "lucide-react";

import { plainValue } from "./format";
import type { ColumnDef } from "./types";

/** Downloads the given rows as CSV or JSON */
export interface ExportButtonProps<T> {
  /** What to export */
  rows: readonly T[];
  /** Columns and their headers */
  columns: readonly ColumnDef<T>[];
  /** File name without extension */
  filename: string;
  /** Grey it out */
  disabled?: boolean;
}

export function ExportButton<T>({ rows, columns, filename, disabled = false }: ExportButtonProps<T>) {
  const empty = disabled || rows.length === 0;
  return (
    <div className="aoc-export" role="group" aria-label="Export">
      <button
        type="button"
        className="aoc-button aoc-button-secondary"
        disabled={empty}
        onClick={() => download(`${filename}.csv`, "text/csv;charset=utf-8", toCsv(rows, columns))}
      >
        <Download aria-hidden="true" size={16} />
        CSV
      </button>
      <button
        type="button"
        className="aoc-button aoc-button-secondary"
        disabled={empty}
        onClick={() => download(`${filename}.json`, "application/json", toJson(rows, columns))}
      >
        JSON
      </button>
    </div>
  );
}

export function toCsv<T>(rows: readonly T[], columns: readonly ColumnDef<T>[]): string {
  const lines = [columns.map((column) => csvCell(column.label)).join(",")];
  for (const row of rows) {
    lines.push(columns.map((column) => csvCell(plainValue(row[column.key]))).join(","));
  }
  return lines.join("\r\n") + "\r\n";
}

function toJson<T>(rows: readonly T[], columns: readonly ColumnDef<T>[]): string {
  const picked = rows.map((row) => Object.fromEntries(columns.map((column) => [column.key, row[column.key] ?? null])));
  return JSON.stringify(picked, null, 2) + "\n";
}

// RFC 4180 quoting; a cell a spreadsheet would run as a formula gets a leading quote
function csvCell(text: string): string {
  const safe = /^[=+\-@\t\r]/.test(text) ? `'${text}` : text;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

function download(name: string, type: string, content: string): void {
  const url = URL.createObjectURL(new Blob([content], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 0);
}
