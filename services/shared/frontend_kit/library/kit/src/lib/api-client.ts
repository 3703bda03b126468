// The one HTTP client of the factory's pages (installed by AOC; see docs/factory.md).
//
// - Same origin by default: the pages call /api/... and the app forwards it to the AOC
//   gateway (src/app/api/[...path]/route.ts, AOC_API_URL). NEXT_PUBLIC_AOC_API_BASE
//   points it at another origin instead (the gateway must list this one in
//   AOC_CORS_ORIGINS).
// - Credentials: the bearer token the AOC dashboard keeps in this tab's sessionStorage
//   ("aoc.token"; TokenSignIn sets it), else a same-origin session (cookies go along).
// - Errors: a non-2xx answer becomes an ApiError whose message is the API's own JSON
//   "detail" (FastAPI's string or per-field list), so ErrorBanner shows what went wrong.
// - Abort: every call takes an AbortSignal; pages abort their requests on unmount.

export const TOKEN_STORAGE_KEY = "aoc.token";

const BASE_URL = (process.env.NEXT_PUBLIC_AOC_API_BASE ?? "").replace(/\/+$/, "");

export interface RequestOptions {
  signal?: AbortSignal;
  headers?: Readonly<Record<string, string>>;
}

export class ApiError extends Error {
  readonly status: number;
  readonly detail: unknown;

  constructor(status: number, message: string, detail: unknown) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.detail = detail;
  }
}

export interface ApiClient {
  get<T>(path: string, options?: RequestOptions): Promise<T>;
  post<T>(path: string, body?: unknown, options?: RequestOptions): Promise<T>;
  put<T>(path: string, body?: unknown, options?: RequestOptions): Promise<T>;
  patch<T>(path: string, body?: unknown, options?: RequestOptions): Promise<T>;
  delete<T>(path: string, options?: RequestOptions): Promise<T>;
  // GET a list of records: a JSON array, or an object that carries one (AOC's list
  // endpoints answer {"advisories": [...], "total": ...}).
  list<T>(path: string, options?: RequestOptions): Promise<T[]>;
}

export function getToken(): string | null {
  if (typeof window === "undefined") {
    return null;
  }
  try {
    return window.sessionStorage.getItem(TOKEN_STORAGE_KEY);
  } catch {
    return null; // storage disabled: a same-origin session may still work
  }
}

export function setToken(token: string | null): void {
  if (typeof window === "undefined") {
    return;
  }
  if (token === null || token.trim() === "") {
    window.sessionStorage.removeItem(TOKEN_STORAGE_KEY);
  } else {
    window.sessionStorage.setItem(TOKEN_STORAGE_KEY, token.trim());
  }
}

async function request<T>(method: string, path: string, body: unknown, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json", ...options.headers };
  const token = getToken();
  if (token !== null) {
    headers.Authorization = `Bearer ${token}`;
  }
  const init: RequestInit = {
    method,
    headers,
    credentials: "same-origin",
    cache: "no-store",
    signal: options.signal,
  };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response: Response;
  try {
    response = await fetch(BASE_URL + path, init);
  } catch (error) {
    if (options.signal?.aborted) {
      throw error; // the caller went away; it checks its signal and ignores this
    }
    const reason = error instanceof Error ? error.message : String(error);
    throw new ApiError(0, `Cannot reach the API (${reason})`, null);
  }
  const text = await response.text();
  const parsed = parseJson(text);
  if (!response.ok) {
    throw new ApiError(response.status, errorText(response, parsed, text), parsed);
  }
  return (text === "" ? undefined : parsed) as T;
}

function parseJson(text: string): unknown {
  if (text === "") {
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function errorText(response: Response, parsed: unknown, text: string): string {
  const prefix = `${response.status} ${response.statusText}`.trim();
  const detail = parsed !== null && typeof parsed === "object" ? (parsed as { detail?: unknown }).detail : undefined;
  if (typeof detail === "string" && detail !== "") {
    return response.status === 401 ? `Sign in with an API token: ${detail}` : `${prefix}: ${detail}`;
  }
  if (Array.isArray(detail)) {
    const fields = detail.map((item) => {
      const entry = item as { loc?: unknown; msg?: unknown };
      const where = Array.isArray(entry.loc) ? entry.loc.filter((part) => part !== "body").join(".") : "";
      return where ? `${where}: ${String(entry.msg)}` : String(entry.msg);
    });
    return `${prefix}: ${fields.join("; ")}`;
  }
  if (response.status === 401) {
    return "Sign in with an API token to see this page";
  }
  return text !== "" && parsed === undefined ? `${prefix}: ${text.slice(0, 200)}` : prefix;
}

// The records in a list answer: the array itself, or the one array of records an
// envelope object carries (preferring items, data, results, rows when it has several).
export function recordsOf<T>(body: unknown): T[] {
  if (Array.isArray(body)) {
    return body as T[];
  }
  if (body !== null && typeof body === "object") {
    const arrays = Object.entries(body as Record<string, unknown>).filter(
      ([, value]) => Array.isArray(value) && value.every((item) => item !== null && typeof item === "object"),
    );
    const preferred = arrays.find(([key]) => ["items", "data", "results", "rows"].includes(key));
    const chosen = preferred ?? arrays[0];
    if (chosen !== undefined) {
      return chosen[1] as T[];
    }
  }
  throw new ApiError(0, "The API did not answer with a list of records", body);
}

export const api: ApiClient = {
  get: <T>(path: string, options?: RequestOptions) => request<T>("GET", path, undefined, options),
  post: <T>(path: string, body?: unknown, options?: RequestOptions) => request<T>("POST", path, body, options),
  put: <T>(path: string, body?: unknown, options?: RequestOptions) => request<T>("PUT", path, body, options),
  patch: <T>(path: string, body?: unknown, options?: RequestOptions) => request<T>("PATCH", path, body, options),
  delete: <T>(path: string, options?: RequestOptions) => request<T>("DELETE", path, undefined, options),
  list: async <T>(path: string, options?: RequestOptions) =>
    recordsOf<T>(await request<unknown>("GET", path, undefined, options)),
};
