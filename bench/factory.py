"""Generation speed of the frontend factory, per template.

Renders each template's example requirement (and its hostile twin) many times,
interleaved round by round so background load hits every template alike, and reports
the median and p99 per template against the target (median <= 5 ms).

Baseline, measured in the same run and the same Jinja environment: a one-line template
printing one vetted value. The ratio says how much of a page's cost is the page itself
rather than the machinery every render pays.

With --nats it also measures what a caller sees: POST-equivalent generate requests over
NATS request/reply to a running factory engine on a throwaway nats-server (validation,
two fsynced events, the render), median and p99.

With --next it measures the real toolchain (tests/factory/toolchain.py installs it):
- ``next build`` of the kit's bootstrapped app with the six example pages deployed,
  against ``next build`` of the same app with no page (baseline), alternating ABBA;
- the first render of a generated data table in Chromium (a fresh browser context per
  visit: navigation until its 50 rows are in the table, the data coming through the
  app's /api forwarder from a local JSON upstream), against the first render of the
  app's static home page (baseline) in the same browser.

    .venv/bin/python bench/factory.py
    .venv/bin/python bench/factory.py --rounds 2000 --nats
    .venv/bin/python bench/factory.py --rounds 50 --next --builds 2 --visits 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from _common import load_average, machine_facts, nats_server, percentile, print_table, verdict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from contracts.factory import PAGE_TYPES, validate_submission
from contracts.factory.catalog import TEMPLATES
from services.factory.render import Renderer, js_string
from tests.factory.hostile import hostile_requirements

TARGET_MS = 5.0


def measure_renders(rounds: int) -> tuple[dict[str, list[float]], list[float], float]:
    started = time.perf_counter()
    renderer = Renderer()  # loads, compiles and warms the six templates
    cold_ms = (time.perf_counter() - started) * 1000
    hostile = hostile_requirements()
    cases = {}
    for page_type in PAGE_TYPES:
        cases[page_type] = validate_submission(TEMPLATES[page_type].example_config).submission
        cases[f"{page_type} (hostile)"] = validate_submission(hostile[page_type]).submission
    baseline_template = renderer.env.from_string("const TITLE = {{ title }};\n")
    title = js_string("Vulnerability Risk Matrix")
    timings: dict[str, list[float]] = {name: [] for name in cases}
    baseline: list[float] = []
    for _ in range(rounds):
        for name, submission in cases.items():
            t0 = time.perf_counter_ns()
            renderer.render("bench", submission)
            timings[name].append((time.perf_counter_ns() - t0) / 1e6)
        t0 = time.perf_counter_ns()
        baseline_template.render(title=title)
        baseline.append((time.perf_counter_ns() - t0) / 1e6)
    return timings, baseline, cold_ms


async def measure_over_nats(requests: int) -> tuple[list[float], list[float]]:
    """(generate round trips, validate-only preview round trips) in ms."""
    from contracts.factory import FactoryRequest, encode, reply_decoder, request_subject
    from contracts.settings import Settings
    from services.runtime.testing import connect_plain, running_engines

    generate_ms: list[float] = []
    preview_ms: list[float] = []
    with nats_server("always") as (server, workdir):
        settings = Settings(
            nats_url=server.url, data_dir=workdir / "data", schedules={"frontend-factory.queue": 3600}
        )
        async with running_engines(settings, ["frontend-factory"]) as hosts:
            engine = hosts["frontend-factory"].engine
            nc = await connect_plain(server.url)
            js = nc.jetstream()
            body = TEMPLATES["data_table"].example_config
            for n in range(requests):
                submission = {**body, "route": f"/bench/page-{n}"}
                await js.publish(
                    "aoc.in.factory.requirements",
                    json.dumps(submission).encode(),
                    headers={"Aoc-Requirement-Id": f"bench-{n}"},
                )
            deadline = time.monotonic() + 60
            while len(engine.ledger.requirements) < requests and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for n in range(requests):
                request = encode(FactoryRequest(requirement_id=f"bench-{n}", actor="bench"))
                t0 = time.perf_counter_ns()
                reply = reply_decoder.decode(
                    (await nc.request(request_subject("generate"), request, timeout=5)).data
                )
                generate_ms.append((time.perf_counter_ns() - t0) / 1e6)
                assert reply.ok, reply.message
                t0 = time.perf_counter_ns()
                await nc.request(request_subject("preview"), json.dumps(body).encode(), timeout=5)
                preview_ms.append((time.perf_counter_ns() - t0) / 1e6)
            await nc.close()
    return generate_ms, preview_ms


# --- the real toolchain: next build and the first render in Chromium ---------------------------


def _tree(root: Path, with_pages: bool) -> Path:
    from services.factory.frontend import FrontendTree
    from services.factory.render import sidebar_entry
    from services.shared.frontend_kit.install import install

    install(root)
    if with_pages:
        renderer, tree = Renderer(), FrontendTree(root)
        for page_type in PAGE_TYPES:
            submission = validate_submission(TEMPLATES[page_type].example_config).submission
            tree.write_page(submission.route, renderer.render_code(submission), page_type)
            tree.register_sidebar(sidebar_entry(page_type, submission))
    return root


async def measure_next(builds: int, visits: int) -> dict[str, list[float]]:
    from tests.factory.nextapp import build_release, chromium, next_server

    results: dict[str, list[float]] = {
        name: [] for name in ("build empty", "build six", "render home", "render table")
    }
    app = None
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        for n in range(builds):
            pair = (("build empty", False), ("build six", True))
            for name, pages in pair if n % 2 == 0 else pair[::-1]:  # ABBA: neither always goes first
                tree = _tree(base / f"{name}-{n}" / "frontend", pages)
                outcome, _ = await build_release(tree, base / f"rel-{name}-{n}")
                assert outcome.ok, outcome.error
                results[name].append(outcome.run.duration_ms / 1000)
                if pages:
                    app = outcome.app_dir
        assert app is not None
        with _json_upstream(50) as upstream:
            async with next_server(app, upstream) as url, chromium() as browser:
                for _ in range(visits):
                    for name, path, ready in (
                        ("render home", "/", "main h1"),
                        ("render table", "/vulnerabilities/risk", "table.aoc-table tbody tr >> nth=24"),
                    ):
                        context = await browser.new_context()
                        page = await context.new_page()
                        t0 = time.perf_counter()
                        await page.goto(url + path)
                        await page.locator(ready).wait_for(timeout=30_000)
                        results[name].append((time.perf_counter() - t0) * 1000)
                        await context.close()
    return results


class _json_upstream:
    """A local upstream that answers every GET with ``rows`` vulnerability records."""

    def __init__(self, rows: int) -> None:
        import http.server
        import threading

        body = json.dumps(
            [{"cve_id": f"CVE-2031-{n:04d}", "cvss_score": n % 10, "status": "open"} for n in range(rows)]
        ).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc) -> None:
        self.server.shutdown()


def report_next(results: dict[str, list[float]]) -> None:
    rows = []
    for name, label, unit, baseline in (
        ("build empty", "next build, empty app (baseline)", "s", "build empty"),
        ("build six", "next build, six pages", "s", "build empty"),
        ("render home", "first render, home (baseline)", "ms", "render home"),
        ("render table", "first render, data table + 50 rows", "ms", "render home"),
    ):
        values = results[name]
        digits = 1 if unit == "s" else 0
        ratio = percentile(values, 50) / percentile(results[baseline], 50)
        median, p90 = percentile(values, 50), percentile(values, 90)
        rows.append(
            [
                label,
                f"{median:.{digits}f} {unit}",
                f"{p90:.{digits}f} {unit}",
                str(len(values)),
                f"{ratio:.2f}x",
            ]
        )
    print_table(["measure", "median", "p90", "runs", "vs baseline"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500, help="renders per template (default 500)")
    parser.add_argument("--nats", action="store_true", help="also measure generate over NATS")
    parser.add_argument("--requests", type=int, default=200, help="generate requests with --nats")
    parser.add_argument("--next", action="store_true", help="also measure next build and the first render")
    parser.add_argument("--builds", type=int, default=1, help="next builds of each app with --next")
    parser.add_argument("--visits", type=int, default=10, help="first renders of each page with --next")
    args = parser.parse_args()

    print(f"machine: {machine_facts()}")
    print(f"load average before: {load_average()}")
    timings, baseline, cold_ms = measure_renders(args.rounds)
    base = percentile(baseline, 50)
    print(f"\nRenderer() cold start (load, compile, warm 6 templates): {cold_ms:.1f} ms")
    print(f"baseline (one-line template, same environment): median {base * 1000:.1f} us\n")
    rows = []
    worst = 0.0
    for name, values in timings.items():
        median, p99 = percentile(values, 50), percentile(values, 99)
        worst = max(worst, median)
        rows.append(
            [name, f"{median:.3f}", f"{p99:.3f}", f"{median / base:.0f}x", verdict(median <= TARGET_MS)]
        )
    print_table(["template", "median ms", "p99 ms", "vs baseline", f"<= {TARGET_MS:g} ms"], rows)
    print(
        f"\nslowest median {worst:.3f} ms = {worst / TARGET_MS:.2f} of the target; {args.rounds} renders each"
    )

    if args.nats:
        generate_ms, preview_ms = asyncio.run(measure_over_nats(args.requests))
        print(f"\nover NATS ({args.requests} requests, fsync always):")
        print_table(
            ["request", "median ms", "p99 ms"],
            [
                [
                    "generate (2 events + render)",
                    f"{percentile(generate_ms, 50):.2f}",
                    f"{percentile(generate_ms, 99):.2f}",
                ],
                [
                    "generate-preview (render only)",
                    f"{percentile(preview_ms, 50):.2f}",
                    f"{percentile(preview_ms, 99):.2f}",
                ],
            ],
        )
    if args.next:
        print(f"\nthe real toolchain (load average {load_average()}):")
        report_next(asyncio.run(measure_next(args.builds, args.visits)))
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory():
        main()
