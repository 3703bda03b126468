"""Running the release's processes: the operator's deploy command (``AOC_DEPLOY_COMMAND``)
and the steps of the built-in build (``npm ci``, ``next build``).

The deploy command is the operator's, from configuration, never from a request: it runs
in a shell so it may be a pipeline (``docker build ... && kubectl rollout restart ...``).
Every process gets its own process group, so a timeout kills all of it; its exit code
decides success, and the tail of its output is kept for the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from contracts.factory import CommandRun

OUTPUT_TAIL = 4000  # characters of stdout+stderr kept in the history
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


async def run_process(
    command: str | Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    label: str | None = None,
) -> CommandRun:
    """Run a shell command (a string) or a program (a list) to its end or its timeout."""
    started = time.perf_counter()
    spawn = dict(
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,  # its own process group: a timeout kills the whole pipeline
    )
    if isinstance(command, str):
        process = await asyncio.create_subprocess_shell(command, **spawn)
    else:
        process = await asyncio.create_subprocess_exec(*command, **spawn)
    timed_out = False
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    except TimeoutError:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        output, _ = await process.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        raise
    text = _ANSI.sub("", output.decode("utf-8", errors="replace"))
    if timed_out:
        text += f"\n[killed after {timeout:g} s]"
    return CommandRun(
        command=label or (command if isinstance(command, str) else " ".join(command)),
        exit_code=None if timed_out else process.returncode,
        timed_out=timed_out,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        output=text[-OUTPUT_TAIL:],
    )


async def run_deploy_command(
    command: str,
    *,
    timeout: float,
    release_id: str,
    release_dir: Path,
    action: str,
    frontend_root: Path,
    app_dir: Path | None = None,
) -> CommandRun:
    env = {
        **os.environ,
        "AOC_RELEASE_ID": release_id,
        "AOC_RELEASE_DIR": str(release_dir),
        "AOC_DEPLOY_ACTION": action,
        "AOC_FRONTEND_ROOT": str(frontend_root),
    }
    if app_dir is not None:
        env["AOC_RELEASE_APP_DIR"] = str(app_dir)  # the built app (next start serves it)
    return await run_process(command, timeout=timeout, env=env)


def failed(run: CommandRun | None) -> bool:
    return run is not None and (run.timed_out or run.exit_code != 0)
