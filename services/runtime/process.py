"""psutil process metrics for heartbeats and the gateway's metrics view."""

from __future__ import annotations

import time

import psutil

from contracts.events import ProcessMetrics

_process = psutil.Process()
_process.cpu_percent(None)  # prime: the first call always returns 0.0
_boot = time.time()


def process_metrics() -> ProcessMetrics:
    with _process.oneshot():
        rss = _process.memory_info().rss
        return ProcessMetrics(
            pid=_process.pid,
            rss_mb=round(rss / 1024**2, 1),
            memory_percent=round(_process.memory_percent(), 2),
            cpu_percent=round(_process.cpu_percent(None), 1),
            threads=_process.num_threads(),
            uptime_seconds=round(time.time() - _boot, 1),
        )
