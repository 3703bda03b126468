import { CircleCheck } from "lucide-react";

/** Confirmation message */
export interface SuccessBannerProps {
  /** What succeeded */
  message: string;
}

export function SuccessBanner({ message }: SuccessBannerProps) {
  return (
    <div className="aoc-banner aoc-banner-success" role="status">
      <CircleCheck aria-hidden="true" size={18} />
      <span className="aoc-banner-text">{message}</span>
    </div>
  );
}
