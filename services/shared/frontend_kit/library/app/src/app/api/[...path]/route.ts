// Bootstrapped by the AOC Frontend Factory: the pages call /api/... on this origin and
// this handler forwards the call to the AOC gateway at AOC_API_URL (read per request, so
// one build serves any environment). The caller's Authorization header goes along;
// the browser never talks to the gateway directly, so no CORS is needed.
import type { NextRequest } from "next/server";

export const dynamic = "force-dynamic";

// request headers worth forwarding; everything else (cookies of this origin, hop-by-hop
// headers) stays here
const FORWARDED_REQUEST = ["accept", "authorization", "content-type", "idempotency-key", "x-request-id"];
const FORWARDED_RESPONSE = ["cache-control", "content-type", "retry-after", "www-authenticate", "x-request-id"];
const TIMEOUT_MS = 30_000;

type Context = { params: Promise<{ path: string[] }> };

async function forward(request: NextRequest, context: Context): Promise<Response> {
  const upstream = process.env.AOC_API_URL;
  if (!upstream) {
    return Response.json({ detail: "AOC_API_URL is not set: this app does not know where the AOC gateway is" }, { status: 502 });
  }
  const { path } = await context.params;
  if (path.some((segment) => segment === "" || segment === "." || segment === "..")) {
    return Response.json({ detail: "invalid path" }, { status: 400 });
  }
  const target = new URL(`/api/${path.map(encodeURIComponent).join("/")}${request.nextUrl.search}`, upstream);
  const headers = new Headers();
  for (const name of FORWARDED_REQUEST) {
    const value = request.headers.get(name);
    if (value !== null) {
      headers.set(name, value);
    }
  }
  const hasBody = request.method !== "GET" && request.method !== "HEAD";
  let answer: Response;
  try {
    answer = await fetch(target, {
      method: request.method,
      headers,
      body: hasBody ? await request.arrayBuffer() : undefined,
      redirect: "manual",
      cache: "no-store",
      signal: AbortSignal.any([request.signal, AbortSignal.timeout(TIMEOUT_MS)]),
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return Response.json({ detail: `the AOC gateway did not answer (${reason})` }, { status: 504 });
  }
  const responseHeaders = new Headers();
  for (const name of FORWARDED_RESPONSE) {
    const value = answer.headers.get(name);
    if (value !== null) {
      responseHeaders.set(name, value);
    }
  }
  return new Response(answer.body, { status: answer.status, headers: responseHeaders });
}

export { forward as DELETE, forward as GET, forward as PATCH, forward as POST, forward as PUT };
