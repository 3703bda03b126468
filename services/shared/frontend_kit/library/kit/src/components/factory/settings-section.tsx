import type { ReactNode } from "react";

/** Titled group of settings */
export interface SettingsSectionProps {
  /** Section title */
  title: string;
  /** The fields */
  children: ReactNode;
  /** Section help text */
  description?: string;
}

export function SettingsSection({ title, children, description }: SettingsSectionProps) {
  return (
    <section className="aoc-panel aoc-settings-section">
      <h2>{title}</h2>
      {description ? <p className="aoc-muted">{description}</p> : null}
      <div className="space-y-4">{children}</div>
    </section>
  );
}
