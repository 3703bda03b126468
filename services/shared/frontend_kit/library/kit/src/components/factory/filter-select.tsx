"use client";

import { useId } from "react";

import type { FilterOption } from "./types";

/** Single-choice filter; the empty value means 'all' */
export interface FilterSelectProps {
  /** What is filtered */
  label: string;
  /** Selected option value, or '' for all */
  value: string;
  /** The choices */
  options: readonly FilterOption[];
  /** Called with the chosen value */
  onChange: (value: string) => void;
}

export function FilterSelect({ label, value, options, onChange }: FilterSelectProps) {
  const id = useId();
  return (
    <div className="aoc-field aoc-filter">
      <label htmlFor={id}>{label}</label>
      <select id={id} value={value} onChange={(event) => onChange(event.target.value)}>
        <option value="">All</option>
        {options.map((option, index) => (
          <option key={index} value={option.value}>
            {option.label}
          </option>
        ))}
      </select>
    </div>
  );
}
