"use client";

import type { ReactNode } from "react";

/** Button in the design system's variants */
export interface ButtonProps {
  /** Label */
  children: ReactNode;
  /** Click handler */
  onClick?: () => void;
  /** Form role (default button) */
  type?: "button" | "submit";
  /** Look */
  variant?: "primary" | "secondary" | "danger";
  /** Disabled */
  disabled?: boolean;
}

export function Button({ children, onClick, type = "button", variant = "secondary", disabled = false }: ButtonProps) {
  return (
    <button type={type} className={`aoc-button aoc-button-${variant}`} onClick={onClick} disabled={disabled}>
      {children}
    </button>
  );
}
