// The types every factory component and every generated page speaks.
import type { ReactNode } from "react";

export type { LucideIcon } from "lucide-react";

export type FieldType =
  | "string"
  | "text"
  | "number"
  | "integer"
  | "boolean"
  | "date"
  | "datetime"
  | "email"
  | "url"
  | "enum";

export type FieldValue = string | number | boolean | null;

export type ValueFormat = "text" | "number" | "integer" | "percent" | "date" | "datetime" | "boolean";

export interface ColumnDef<T> {
  key: keyof T & string;
  label: string;
  type: FieldType;
  sortable?: boolean;
}

export interface SortState<T> {
  key: keyof T & string;
  direction: "asc" | "desc";
}

export interface FilterOption {
  value: string;
  label: string;
}

export interface FieldSpec {
  name: string;
  label: string;
  type: FieldType;
  required: boolean;
  options?: readonly string[];
}

export interface ChartPoint {
  label: string;
  value: number;
}

export type ChartKind = "line" | "bar" | "area";

export interface DetailItem {
  label: string;
  value: ReactNode;
}

// One entry of src/config/factory-sidebar.json (written by the factory on each deploy).
export interface SidebarEntry {
  id: string;
  label: string;
  href: string;
  section: string;
  icon: string;
  priority?: string;
}
