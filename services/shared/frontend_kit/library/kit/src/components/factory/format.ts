// Display formatting shared by the factory components (cells, metrics, exports).
import type { FieldType, ValueFormat } from "./types";

export const EMPTY_VALUE = "\u2014";

export function formatValue(value: unknown, format: ValueFormat | FieldType = "text"): string {
  if (value === null || value === undefined || value === "") {
    return EMPTY_VALUE;
  }
  switch (format) {
    case "boolean":
      return value === true || value === "true" ? "Yes" : value === false || value === "false" ? "No" : String(value);
    case "date":
    case "datetime": {
      const moment = new Date(String(value));
      if (Number.isNaN(moment.getTime())) {
        return String(value);
      }
      return format === "date" ? moment.toLocaleDateString() : moment.toLocaleString();
    }
    case "number":
    case "integer":
      return typeof value === "number"
        ? value.toLocaleString(undefined, { maximumFractionDigits: format === "integer" ? 0 : 2 })
        : String(value);
    case "percent":
      return typeof value === "number" ? `${value.toLocaleString(undefined, { maximumFractionDigits: 1 })}%` : String(value);
    default:
      return typeof value === "object" ? JSON.stringify(value) : String(value);
  }
}

// The value as plain text for an export (no locale formatting: machines read it).
export function plainValue(value: unknown): string {
  if (value === null || value === undefined) {
    return "";
  }
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}
