"use client";

import { useId } from "react";
import type { ReactNode } from "react";

import type { FieldSpec, FieldValue } from "./types";

/** Input for one typed field (text, number, select, checkbox, date), with its error */
export interface FormFieldProps {
  /** Name, label, type, required, options */
  spec: FieldSpec;
  /** Current value */
  value: FieldValue;
  /** Called with the new value */
  onChange: (value: FieldValue) => void;
  /** Validation message shown under the input */
  error?: string;
  /** Read-only while saving */
  disabled?: boolean;
}

const INPUT_TYPES: Partial<Record<FieldSpec["type"], string>> = {
  email: "email",
  url: "url",
  date: "date",
  datetime: "datetime-local",
  number: "number",
  integer: "number",
};

export function FormField({ spec, value, onChange, error, disabled = false }: FormFieldProps) {
  const id = useId();
  const errorId = `${id}-error`;
  const described = error ? { "aria-invalid": true, "aria-describedby": errorId } : {};
  const text = value === null ? "" : String(value);

  let control: ReactNode;
  if (spec.type === "boolean") {
    control = (
      <input
        id={id}
        name={spec.name}
        type="checkbox"
        checked={value === true}
        disabled={disabled}
        onChange={(event) => onChange(event.target.checked)}
        {...described}
      />
    );
  } else if (spec.type === "enum") {
    control = (
      <select
        id={id}
        name={spec.name}
        value={text}
        required={spec.required}
        disabled={disabled}
        onChange={(event) => onChange(event.target.value === "" ? null : event.target.value)}
        {...described}
      >
        <option value="">{spec.required ? "Choose\u2026" : "\u2014"}</option>
        {(spec.options ?? []).map((option, index) => (
          <option key={index} value={option}>
            {option}
          </option>
        ))}
      </select>
    );
  } else if (spec.type === "text") {
    control = (
      <textarea
        id={id}
        name={spec.name}
        value={text}
        rows={4}
        required={spec.required}
        disabled={disabled}
        onChange={(event) => onChange(event.target.value)}
        {...described}
      />
    );
  } else {
    const numeric = spec.type === "number" || spec.type === "integer";
    control = (
      <input
        id={id}
        name={spec.name}
        type={INPUT_TYPES[spec.type] ?? "text"}
        step={spec.type === "integer" ? 1 : numeric ? "any" : undefined}
        value={text}
        required={spec.required}
        disabled={disabled}
        onChange={(event) => onChange(numeric ? toNumber(event.target.value) : event.target.value)}
        {...described}
      />
    );
  }

  return (
    <div className={spec.type === "boolean" ? "aoc-field aoc-field-check" : "aoc-field"}>
      <label htmlFor={id}>
        {spec.label}
        {spec.required ? <span className="aoc-required"> *</span> : null}
      </label>
      {control}
      {error ? (
        <p id={errorId} className="aoc-field-error">
          {error}
        </p>
      ) : null}
    </div>
  );
}

// '' clears the field; what is not a number stays text, so validation can say so
function toNumber(raw: string): FieldValue {
  if (raw.trim() === "") {
    return null;
  }
  const parsed = Number(raw);
  return Number.isNaN(parsed) ? raw : parsed;
}
