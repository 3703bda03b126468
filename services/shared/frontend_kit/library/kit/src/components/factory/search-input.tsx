"use client";

import { Search } from "lucide-react";
import { useEffect, useRef, useState } from "react";

/** Debounced text search box */
export interface SearchInputProps {
  /** Current text */
  value: string;
  /** Called with the new text */
  onChange: (value: string) => void;
  /** Hint shown when empty */
  placeholder?: string;
}

const DEBOUNCE_MS = 200;

export function SearchInput({ value, onChange, placeholder = "Search" }: SearchInputProps) {
  const [text, setText] = useState(value);
  const latest = useRef({ value, onChange });

  useEffect(() => {
    latest.current = { value, onChange };
  }, [value, onChange]);

  useEffect(() => {
    setText(value); // the parent reset it (or took over a debounced change)
  }, [value]);

  useEffect(() => {
    const timer = window.setTimeout(() => {
      if (text !== latest.current.value) {
        latest.current.onChange(text);
      }
    }, DEBOUNCE_MS);
    return () => window.clearTimeout(timer);
  }, [text]);

  return (
    <label className="aoc-search">
      <Search aria-hidden="true" size={16} />
      <input
        type="search"
        value={text}
        placeholder={placeholder}
        aria-label={placeholder}
        onChange={(event) => setText(event.target.value)}
      />
    </label>
  );
}
