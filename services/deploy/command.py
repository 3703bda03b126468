"""Running the operator's deploy command (``AOC_DEPLOY_COMMAND``) for one release.

The command is the operator's, from configuration, never from a request: it runs in a
shell so it may be a pipeline (``docker build ... && kubectl rollout restart ...``). It
gets the release in its environment, its exit code decides success, a timeout kills
its whole process group, and the tail of its output is kept for the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

from contracts.factory import CommandRun

OUTPUT_TAIL = 4000  # characters of stdout+stderr kept in the history


async def run_deploy_command(
    command: str, *, timeout: float, release_id: str, release_dir: Path, action: str, frontend_root: Path
) -> CommandRun:
    env = {
        **os.environ,
        "AOC_RELEASE_ID": release_id,
        "AOC_RELEASE_DIR": str(release_dir),
        "AOC_DEPLOY_ACTION": action,
        "AOC_FRONTEND_ROOT": str(frontend_root),
    }
    started = time.perf_counter()
    process = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        start_new_session=True,  # its own process group: a timeout kills the whole pipeline
    )
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
    text = output.decode("utf-8", errors="replace")
    if timed_out:
        text += f"\n[killed after {timeout:g} s]"
    return CommandRun(
        command=command,
        exit_code=None if timed_out else process.returncode,
        timed_out=timed_out,
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        output=text[-OUTPUT_TAIL:],
    )
