// Bootstrapped by the AOC Frontend Factory. Nothing here fetches at build time.
// AOC_NEXT_WORKSPACE_ROOT: set by the deploy engine's build when node_modules is a link
// to a directory outside this app (Turbopack only compiles files below its root).
const workspaceRoot = process.env.AOC_NEXT_WORKSPACE_ROOT;

/** @type {import("next").NextConfig} */
const nextConfig = {
  poweredByHeader: false,
  reactStrictMode: true,
  ...(workspaceRoot ? { turbopack: { root: workspaceRoot }, outputFileTracingRoot: workspaceRoot } : {}),
};

export default nextConfig;
