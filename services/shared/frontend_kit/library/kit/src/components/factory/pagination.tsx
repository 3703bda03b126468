"use client";

import { ChevronLeft, ChevronRight } from "lucide-react";

/** Page switcher with total count */
export interface PaginationProps {
  /** 1-based current page */
  page: number;
  /** Number of pages (at least 1) */
  pageCount: number;
  /** Called with the new page */
  onPageChange: (page: number) => void;
  /** Number of rows over all pages */
  total?: number;
}

export function Pagination({ page, pageCount, onPageChange, total }: PaginationProps) {
  const pages = Math.max(1, pageCount);
  const current = Math.min(Math.max(1, page), pages);
  return (
    <nav className="aoc-pagination" aria-label="Pagination">
      <button
        type="button"
        className="aoc-button aoc-button-secondary"
        onClick={() => onPageChange(current - 1)}
        disabled={current <= 1}
        aria-label="Previous page"
      >
        <ChevronLeft aria-hidden="true" size={16} />
      </button>
      <span className="aoc-page-status">
        Page {current} of {pages}
        {total !== undefined ? ` \u00b7 ${total.toLocaleString()} ${total === 1 ? "row" : "rows"}` : ""}
      </span>
      <button
        type="button"
        className="aoc-button aoc-button-secondary"
        onClick={() => onPageChange(current + 1)}
        disabled={current >= pages}
        aria-label="Next page"
      >
        <ChevronRight aria-hidden="true" size={16} />
      </button>
    </nav>
  );
}
