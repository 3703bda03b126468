// Formatting helpers: pure functions from values to short strings.

export function parseTime(value) {
  if (!value) return null;
  const t = Date.parse(value);
  return Number.isNaN(t) ? null : t;
}

/** "4 s ago", "12 min ago", "3 h ago", "2 d ago"; "never" for nothing. */
export function ago(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "never";
  const s = Math.max(0, seconds);
  if (s < 1) return "just now";
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function agoFrom(iso, now = Date.now()) {
  const t = parseTime(iso);
  return t === null ? "never" : ago((now - t) / 1000);
}

/** "2026-03-01 12:00:00 UTC" */
export function utc(iso) {
  const t = parseTime(iso);
  if (t === null) return "";
  return new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

/** "12:00:05" (UTC) */
export function utcClock(iso) {
  const t = parseTime(iso);
  return t === null ? "" : new Date(t).toISOString().slice(11, 19);
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  let s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d}d ${h}h ${m}m`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export function num(value, digits = 0) {
  if (value === null || value === undefined || value === "") return "—";
  const n = Number(value);
  if (Number.isNaN(n)) return String(value);
  return n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

export function pct(value) {
  return value === null || value === undefined ? "—" : `${num(value, 1)} %`;
}

export function bytes(value) {
  if (value === null || value === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let n = Number(value);
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${num(n, i ? 1 : 0)} ${units[i]}`;
}

/** snake_case → "Snake case" */
export function humanize(key) {
  const text = String(key).replace(/[_-]+/g, " ").trim();
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** Any value in one short line of text. */
export function brief(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value === "number") return num(value, 2);
  if (Array.isArray(value)) return value.length === 1 ? "1 entry" : `${value.length} entries`;
  if (typeof value === "object") {
    const n = Object.keys(value).length;
    return n === 1 ? "1 item" : `${n} items`;
  }
  return String(value);
}
