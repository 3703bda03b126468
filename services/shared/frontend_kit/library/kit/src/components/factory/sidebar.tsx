"use client";

import { FileText } from "lucide-react";
import Link from "next/link";
import { usePathname } from "next/navigation";
import type { ReactNode } from "react";

import registry from "../../config/factory-sidebar.json";
import { SIDEBAR_ICONS } from "../../config/factory-sidebar-icons";
import type { SidebarEntry } from "./types";

/** Navigation from the sidebar registry (src/config/factory-sidebar.json), by section */
export interface SidebarProps {
  /** Heading above the links */
  title?: string;
  /** Shown below the links (e.g. TokenSignIn) */
  footer?: ReactNode;
}

export function Sidebar({ title = "AOC", footer }: SidebarProps) {
  const pathname = usePathname();
  const sections = new Map<string, SidebarEntry[]>();
  for (const entry of sidebarEntries(registry)) {
    sections.set(entry.section, [...(sections.get(entry.section) ?? []), entry]);
  }
  return (
    <nav className="aoc-sidebar" aria-label="Pages">
      <Link href="/" className="aoc-sidebar-title">
        {title}
      </Link>
      {sections.size === 0 && <p className="aoc-muted aoc-small">No pages deployed yet</p>}
      {[...sections].map(([section, entries]) => (
        <div key={section} className="aoc-sidebar-section">
          <h2>{section}</h2>
          <ul>
            {entries.map((entry) => {
              const Icon = SIDEBAR_ICONS[entry.icon] ?? FileText;
              const active = pathname === entry.href || pathname.startsWith(`${entry.href}/`);
              return (
                <li key={entry.href}>
                  <Link href={entry.href} aria-current={active ? "page" : undefined}>
                    <Icon aria-hidden="true" size={16} />
                    {entry.label}
                  </Link>
                </li>
              );
            })}
          </ul>
        </div>
      ))}
      {footer !== undefined && <div className="aoc-sidebar-footer">{footer}</div>}
    </nav>
  );
}

// The registry is data a person may edit: take the entries that have what a link needs.
export function sidebarEntries(body: unknown): SidebarEntry[] {
  const entries = body !== null && typeof body === "object" ? (body as { entries?: unknown }).entries : undefined;
  if (!Array.isArray(entries)) {
    return [];
  }
  return entries.filter(
    (entry): entry is SidebarEntry =>
      entry !== null &&
      typeof entry === "object" &&
      typeof entry.href === "string" &&
      entry.href.startsWith("/") &&
      !entry.href.startsWith("//") &&
      typeof entry.label === "string" &&
      typeof entry.section === "string" &&
      typeof entry.icon === "string",
  );
}
