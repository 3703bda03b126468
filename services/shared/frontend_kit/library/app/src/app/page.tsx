export default function Home() {
  return (
    <div className="space-y-4 p-6">
      <h1>AOC</h1>
      <p className="aoc-muted">
        The pages the Frontend Factory deploys appear in the sidebar. Submit a requirement at
        /admin-ops/factory on the AOC gateway.
      </p>
    </div>
  );
}
