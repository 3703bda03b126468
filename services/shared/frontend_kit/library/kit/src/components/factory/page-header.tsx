import type { ReactNode } from "react";

import type { LucideIcon } from "./types";

/** Page title, description, the page's lucide icon and a slot for page actions */
export interface PageHeaderProps {
  /** Page title */
  title: string;
  /** One line under the title */
  description?: string;
  /** The page's lucide icon (the one its sidebar entry shows) */
  icon?: LucideIcon;
  /** Buttons shown at the right of the header */
  actions?: ReactNode;
}

export function PageHeader({ title, description, icon: Icon, actions }: PageHeaderProps) {
  return (
    <header className="aoc-page-header">
      <div className="aoc-page-title">
        {Icon !== undefined && <Icon aria-hidden="true" className="aoc-page-icon" size={28} />}
        <div>
          <h1>{title}</h1>
          {description ? <p className="aoc-muted">{description}</p> : null}
        </div>
      </div>
      {actions !== undefined && <div className="aoc-actions">{actions}</div>}
    </header>
  );
}
