"""The `aoc` command.

    aoc up                                   embedded stack: nats-server, seven engines, gateway
    aoc status [--json]                      one line per engine, from the gateway's dashboard
    aoc trigger|stop|start|restart <system|all> [--reason TEXT]
    aoc trigger <system|all> --wait [--timeout S]   follow a long run to its result
    aoc mcp                                  an MCP server on stdio (docs/operator-tools.md)
    aoc audit replay [--since] [--until] [--system] [--actor] [--format jsonl|csv] [-o FILE]

Control commands talk HTTP to the gateway (so they are authorized and audited like
the web UI); `audit replay` reads the stream itself (so it works without the gateway).
Heavy imports happen inside the command that needs them, to keep `aoc status` quick.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.settings import Settings
from contracts.systems import ALL, SYSTEMS
from services.runtime.bus import nats_credentials
from services.shared.tokens import read_admin_token

API = "/api/v1/admin"
HTTP_TIMEOUT_S = 30.0  # a bulk command waits for seven engines, each up to the control timeout

# `aoc <verb> <system>` -> the gateway endpoint for one system and for all of them.
# `trigger all` has no bulk endpoint: each system is triggered in turn.
ENDPOINTS = {
    "trigger": ("trigger/{system}", None),
    "stop": ("emergency-stop/{system}", "emergency-stop-all"),
    "start": ("start/{system}", "start-all"),
    "restart": ("restart/{system}", "restart-all"),
}


class CliError(Exception):
    """Ends the command with this message on stderr and exit code 1."""


# --- talking to the gateway ---------------------------------------------------------------


def gateway_url(settings: Settings) -> str:
    return os.environ.get("AOC_GATEWAY_URL") or f"http://127.0.0.1:{settings.http_port}"


def request_headers() -> dict[str, str]:
    # The gateway records the token's identity as the actor; without AOC_TOKEN, the admin
    # token `aoc up` wrote into this data dir (a local operator at the console).
    token = os.environ.get("AOC_TOKEN") or read_admin_token(Settings())
    return {"Authorization": f"Bearer {token}"} if token else {}


def call_gateway(method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One request; returns (status, decoded JSON body). Transport failures are CliErrors."""
    import httpx

    base = gateway_url(Settings())
    url = f"{base}{path}" if path.startswith("/") else f"{base}{API}/{path}"  # "/api/v1/jobs/..": as is
    try:
        response = httpx.request(method, url, json=body, headers=request_headers(), timeout=HTTP_TIMEOUT_S)
    except httpx.ConnectError:
        hint = "is `aoc up` running? is AOC_GATEWAY_URL right?"
        raise CliError(f"cannot reach the gateway at {base} ({hint})") from None
    except httpx.HTTPError as exc:
        raise CliError(f"request to {base} failed: {exc}") from None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"detail": response.text.strip() or response.reason_phrase}


# --- control commands ---------------------------------------------------------------------


def describe_reply(system: str, reply: Any, status: int = 200) -> tuple[bool, str]:
    """A reply (or error body) as (ok, one human line)."""
    if not isinstance(reply, dict):
        return False, f"FAILED  {system}: unexpected reply {reply!r}"
    if status >= 400 or not reply.get("ok", False):
        reason = reply.get("detail") or reply.get("message") or reply.get("error") or f"HTTP {status}"
        if isinstance(reason, dict | list):  # e.g. a detail carrying the engine's reply
            reason = json.dumps(reason)
        return False, f"FAILED  {system}: {reason}"
    message = reply.get("message") or reply.get("verb") or "done"
    if reply.get("status") == "started":
        message += f" (run {reply.get('run_id')})"
    elif reply.get("state"):
        message += f" [state: {reply['state']}]"
    if reply.get("duplicate"):
        message += " (duplicate: already handled)"
    return True, f"ok      {system}: {message}"


def control(verb: str, target: str, reason: str, wait: bool = False, timeout: float = 600.0) -> int:
    single, bulk = ENDPOINTS[verb]
    body = {"reason": reason}
    replies: list[tuple[str, Any, int]] = []
    if target != ALL:
        status, reply = call_gateway("POST", single.format(system=target), body)
        replies.append((target, reply, status))
        outcomes = [describe_reply(target, reply, status)]
    elif bulk is None:
        for slug in SYSTEMS:
            status, reply = call_gateway("POST", single.format(system=slug), body)
            replies.append((slug, reply, status))
        outcomes = [describe_reply(slug, reply, status) for slug, reply, status in replies]
    else:
        status, reply = call_gateway("POST", bulk, body)
        outcomes = bulk_outcomes(reply, status)
    for _, line in outcomes:
        print(line)
    ok = bool(outcomes) and all(ok for ok, _ in outcomes)
    if wait and verb == "trigger":
        started = [
            (slug, reply["run_id"])
            for slug, reply, status in replies
            if status < 400
            and isinstance(reply, dict)
            and reply.get("status") == "started"
            and reply.get("run_id")
        ]
        for slug, run_id in started:
            ok = wait_for_job(slug, run_id, timeout) and ok
    return 0 if ok else 1


# --- jobs: follow a long trigger to its result ---------------------------------------------

POLL_S = 0.5


def wait_for_job(system: str, run_id: str, timeout: float, poll: float = POLL_S) -> bool:
    """Poll GET /api/v1/jobs/<run id> until the run ends; progress on stderr, the result
    on stdout. True when it succeeded."""
    deadline = time.monotonic() + timeout
    begun = time.monotonic()
    shown = -1
    while True:
        status, job = call_gateway("GET", f"/api/v1/jobs/{run_id}")
        if status == 200 and isinstance(job, dict) and job.get("status") in ("succeeded", "failed"):
            if shown >= 0:
                print(file=sys.stderr)
            return report_job(system, job)
        if status >= 400 and status != 404:  # 404: the gateway has not seen the run yet
            detail = job.get("detail") if isinstance(job, dict) else job
            raise CliError(f"job {run_id} of {system}: HTTP {status}: {detail}")
        elapsed = int(time.monotonic() - begun)
        if elapsed != shown:
            print(
                f"\r...     {system}: running ({elapsed}s, run {run_id})", end="", file=sys.stderr, flush=True
            )
            shown = elapsed
        if time.monotonic() >= deadline:
            print(file=sys.stderr)
            raise CliError(
                f"{system} run {run_id} still running after {timeout:g} s; it goes on (aoc jobs later)"
            )
        time.sleep(poll)


def report_job(system: str, job: dict[str, Any]) -> bool:
    succeeded = job.get("status") == "succeeded"
    outcome = job.get("outcome") or {}
    took = outcome.get("duration_ms")
    took_text = f" in {took / 1000:.1f}s" if isinstance(took, int | float) else ""
    if succeeded:
        detail = outcome.get("detail") or outcome.get("result") or "done"
        print(f"ok      {system}: job {job.get('run_id')} succeeded{took_text}: {detail}")
    else:
        print(f"FAILED  {system}: job {job.get('run_id')} failed{took_text}: {job.get('error')}")
    print(json.dumps(job.get("result") if succeeded else job, indent=2, default=str))
    return succeeded


def bulk_outcomes(reply: Any, status: int) -> list[tuple[bool, str]]:
    results = reply.get("results") if isinstance(reply, dict) else None
    if status >= 400 or not isinstance(results, dict):
        return [describe_reply(ALL, reply, status)]
    return [describe_reply(slug, result) for slug, result in results.items()]


# --- status -------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def age(value: Any, now: datetime) -> str:
    """'12s', '5m', '3h', '2d' since ``value``; '-' when never."""
    when = parse_time(value)
    if when is None:
        return "-"
    seconds = max(0.0, (now - when).total_seconds())
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"


def status_table(dashboard: dict[str, Any], now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    header = ("SYSTEM", "STATE", "LAST RUN", "ERRORS", "SUCCESS %", "HEARTBEAT")
    rows = [header]
    for slug, info in (dashboard.get("systems") or {}).items():
        last_run = age(info.get("last_run"), now)
        rate = info.get("success_rate")
        rows.append(
            (
                slug,
                str(info.get("state", "?")),
                last_run if last_run == "-" else f"{last_run} ago",
                str(info.get("error_count", "-")),
                f"{rate:.1f}" if isinstance(rate, int | float) else "-",
                age(info.get("last_heartbeat"), now),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    if dashboard.get("emergency_mode"):
        lines.insert(0, "EMERGENCY MODE: not every engine is running")
    return "\n".join(lines)


def status(as_json: bool) -> int:
    code, dashboard = call_gateway("GET", "dashboard")
    if code >= 400 or not isinstance(dashboard, dict):
        detail = dashboard.get("detail") if isinstance(dashboard, dict) else dashboard
        raise CliError(f"dashboard unavailable (HTTP {code}): {detail}")
    if as_json:
        print(json.dumps(dashboard, indent=2))
    else:
        print(status_table(dashboard))
    return 0


# --- audit replay -------------------------------------------------------------------------


def audit_replay(args: argparse.Namespace) -> int:
    from services.launcher import audit

    try:
        since = audit.parse_when(args.since) if args.since else None
        until = audit.parse_when(args.until) if args.until else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    options = audit.ReplayOptions(
        since=since, until=until, system=args.system, actor=args.actor, format=args.format
    )
    settings = Settings()
    # on the secure embedded server, read as the operator user (docs/security.md §3)
    credentials = nats_credentials(settings, settings.nats_user or "operator")
    return audit.run_replay_command(settings.effective_nats_url, options, args.output, credentials)


def up_settings(args: argparse.Namespace) -> Settings:
    """Settings for `aoc up`: the environment, with the command-line flags on top."""
    overrides = {"nats_cluster": args.nats_cluster, "instances": args.instances}
    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValueError as exc:  # pydantic's ValidationError: say which flag, in one line
        raise CliError(" ".join(str(exc).split())) from None


# --- factory init ------------------------------------------------------------------------


def factory_init(root: Path | None, as_json: bool) -> int:
    """Install (or upgrade) the frontend kit into the frontend tree, as the factory does
    on its first deploy: a pure file operation from a shared library, no engine, no bus."""
    from contracts.factory import FactorySettings
    from services.shared.frontend_kit.install import install
    from services.shared.frontend_kit.owned import RefusedWrite

    target = (root or FactorySettings().frontend(Settings())).resolve()
    try:
        report = install(target)
    except (RefusedWrite, OSError) as exc:
        raise CliError(f"cannot install the frontend kit into {target}: {exc}") from None
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    what = "bootstrapped a Next.js app with" if report.bootstrapped else "installed"
    if report.previous_version == report.version and not report.written and not report.removed:
        print(f"{target}: frontend kit {report.version} is up to date ({len(report.unchanged)} files)")
    else:
        since = f" (was {report.previous_version})" if report.previous_version else ""
        print(f"{target}: {what} frontend kit {report.version}{since}")
        for path in report.written:
            print(f"  wrote    {path}")
        for path in report.removed:
            print(f"  removed  {path}")
    for path, why in report.kept.items():
        print(f"  kept     {path}: {why}")
    if report.bootstrapped and not (target / "node_modules").exists():
        print(f"next: cd {target} && npm ci && npm run build   (or let the deploy engine build releases)")
    return 0


# --- the parser ---------------------------------------------------------------------------


def system_arg(value: str) -> str:
    if value != ALL and value not in SYSTEMS:
        known = ", ".join((ALL, *SYSTEMS))
        raise argparse.ArgumentTypeError(f"unknown system {value!r}; expected one of: {known}")
    return value


REPLAY_EPILOG = """\
times: ISO 8601 (2024-05-01T12:00:00Z; no zone means UTC) or relative to now (30m, 2h, 7d).
They compare with the time the stream stored each event.

output: jsonl = one JSON object per event (the event envelope plus "seq", its stream
sequence); csv = seq,time,system,type,actor,action,result,detail,correlation_id,id.
Gaps in the stream sequence (deleted or expired events) are reported on stderr, with a
summary line at the end.

exit status: 0 replay complete; 1 error (NATS unreachable, no stream, bad time); 2 usage;
3 replay complete but sequence gaps were found; 4 events were evicted by size
before their retention age (AOC_EVENTS is too small for its load; their audit records
are replayed from AOC_AUDIT)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aoc", description="AOC: Admin Operations Center")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up_cmd = commands.add_parser(
        "up",
        help="run nats-server (unless NATS_URL is set), the seven engines and the gateway",
        description="Start the embedded stack and supervise it; Ctrl-C or SIGTERM stops everything. "
        "Uses AOC_DATA_DIR, AOC_NATS_PORT, AOC_HTTP_PORT; with NATS_URL set, starts no nats-server.",
    )
    up_cmd.add_argument(
        "--nats-cluster",
        type=int,
        metavar="N",
        help="embedded nats-servers: 1, or a loopback cluster of 3 (5) with replicated streams "
        "(AOC_NATS_CLUSTER)",
    )
    up_cmd.add_argument(
        "--instances", type=int, metavar="N", help="processes per engine (AOC_INSTANCES; docs/scale-out.md)"
    )
    status_cmd = commands.add_parser("status", help="state of every engine (from the gateway)")
    status_cmd.add_argument("--json", action="store_true", help="print the raw dashboard JSON")

    for verb in ENDPOINTS:
        cmd = commands.add_parser(verb, help=f"{verb} one engine, or all of them")
        cmd.add_argument("system", type=system_arg, help=f"system slug or 'all': {', '.join(SYSTEMS)}")
        cmd.add_argument("--reason", default="", help="why (recorded in the audit log)")
        if verb == "trigger":
            cmd.add_argument(
                "--wait", action="store_true", help="when the run outlasts the reply, follow it to its result"
            )
            cmd.add_argument("--timeout", type=float, default=600.0, help="give up waiting after S seconds")

    commands.add_parser(
        "mcp",
        help="serve the Model Context Protocol on stdio (for Claude Desktop, Cursor ...)",
        description="An MCP server over stdio that calls the gateway's API with AOC_TOKEN "
        "(gateway from AOC_GATEWAY_URL). See docs/operator-tools.md.",
    )

    audit_cmd = commands.add_parser("audit", help="the audit log")
    audit_commands = audit_cmd.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    replay = audit_commands.add_parser(
        "replay",
        help="print events straight from the stream",
        description="Replay the AOC_EVENTS stream, one line per event.",
        epilog=REPLAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("--since", help="first event time (ISO 8601 or 30m / 2h / 7d ago)")
    replay.add_argument("--until", help="last event time (ISO 8601 or 30m / 2h / 7d ago)")
    replay.add_argument("--system", help="only events about this system (e.g. soc-cycle)")
    replay.add_argument("--actor", help="only events by this actor")
    replay.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    replay.add_argument(
        "-o", "--output", type=Path, metavar="FILE", help="write to FILE (with a progress bar on stderr)"
    )

    factory_cmd = commands.add_parser("factory", help="the frontend factory's tree")
    factory_commands = factory_cmd.add_subparsers(dest="factory_command", required=True, metavar="COMMAND")
    init = factory_commands.add_parser(
        "init",
        help="install or upgrade the frontend kit (components, api client; for an empty root a Next.js app)",
        description="Copy the factory's component library into the frontend tree as files the factory "
        "owns, version-stamped. Files edited by hand are never overwritten. Safe to run again.",
    )
    init.add_argument("--root", type=Path, help="the frontend tree (default AOC_FRONTEND_ROOT)")
    init.add_argument("--json", action="store_true", help="print the install report as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "up":
            from services.launcher.supervisor import up

            return up(up_settings(args))
        if args.command == "status":
            return status(args.json)
        if args.command == "audit":
            return audit_replay(args)
        if args.command == "factory":
            return factory_init(args.root, args.json)
        if args.command == "mcp":
            from services.launcher.mcp_server import serve_stdio

            return serve_stdio()
        return control(
            args.command,
            args.system,
            args.reason,
            getattr(args, "wait", False),
            getattr(args, "timeout", 600.0),
        )
    except CliError as exc:
        print(f"aoc: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
