"""`aoc audit replay`: read AOC_EVENTS straight from the stream, one line per event.

The stream is the audit log, so replay talks to NATS, not to the gateway: it works
while the gateway is down and sees events older than the gateway's in-memory window.
It reads with an ordered push consumer and a callback (the fast path, NATS-NOTES.md),
filters client-side so every stream sequence passes by, and reports the sequences
that are missing (deleted, or expired by retention).

Events gone from the head of AOC_EVENTS went one of two ways, and replay tells which:

- **aged out by retention age** (``max_age``): expected, exit 0;
- **evicted by size before their retention** (AOC_EVENTS was full and dropped its oldest):
  proved by audit records that AOC_AUDIT still holds, copied from a sequence below
  AOC_EVENTS' first one, and younger than the retention age. Those records are
  replayed (so the admin's stop/start is still on record), and replay exits 4
  (EXIT_EVICTED): the stream is too small for its load.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import msgspec
import nats
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from contracts import subjects
from contracts.events import Envelope, envelope_decoder
from services.runtime.bus import NatsCredentials, inbox_prefix

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_GAPS = 3
EXIT_EVICTED = 4  # events were evicted by size before their retention age

CSV_COLUMNS = (
    "seq",
    "time",
    "system",
    "type",
    "actor",
    "action",
    "result",
    "detail",
    "correlation_id",
    "id",
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


class ReplayError(Exception):
    """A problem that ends the replay with a message for the operator (exit 1)."""


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """'2h', '7d', '30m' (that long ago) or ISO 8601; a time without zone is UTC."""
    now = now or datetime.now(UTC)
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = relative.groups()
        return now - timedelta(seconds=float(amount) * _UNIT_SECONDS[unit])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither ISO 8601 (2024-05-01T12:00:00Z) nor relative (30m, 2h, 7d)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# --- output -------------------------------------------------------------------------------


class JsonlWriter:
    """One JSON object per line: the envelope plus its stream sequence."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._encoder = msgspec.json.Encoder()

    def write(self, seq: int, event: Envelope) -> None:
        # The envelope's `data` is msgspec.Raw, so it is written as the JSON object it
        # already is; only "seq" is spliced in front of the envelope's own fields.
        body = self._encoder.encode(event)
        self._out.write(b'{"seq":%d,%s\n' % (seq, body[1:]))

    def close(self) -> None:
        self._out.flush()


class CsvWriter:
    """The flat columns a SIEM or a spreadsheet wants; rows are encoded in batches."""

    BATCH = 1000

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._text = io.StringIO()
        self._csv = csv.writer(self._text, lineterminator="\n")
        self._pending = 0
        self._csv.writerow(CSV_COLUMNS)

    def write(self, seq: int, event: Envelope) -> None:
        summary = event.summary
        self._csv.writerow(
            (
                seq,
                event.time.isoformat(),
                event.system,
                event.type,
                event.actor,
                summary.action,
                summary.result,
                summary.detail,
                event.correlation_id,
                event.id,
            )
        )
        self._pending += 1
        if self._pending >= self.BATCH:
            self._flush_rows()

    def _flush_rows(self) -> None:
        self._out.write(self._text.getvalue().encode())
        self._text.seek(0)
        self._text.truncate()
        self._pending = 0

    def close(self) -> None:
        self._flush_rows()
        self._out.flush()


WRITERS = {"jsonl": JsonlWriter, "csv": CsvWriter}


class Progress:
    """`\\r[#####     ] 45% 4500/10000` on stderr, redrawn at most ten times a second."""

    WIDTH = 30

    def __init__(self, err: IO[str], enabled: bool) -> None:
        self._err = err
        self._enabled = enabled
        self._last_draw = 0.0
        self._drawn = False

    def update(self, done: int, total: int, *, force: bool = False) -> None:
        if not self._enabled:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        total = max(total, done, 1)
        filled = self.WIDTH * done // total
        bar = "#" * filled + " " * (self.WIDTH - filled)
        self._err.write(f"\r[{bar}] {100 * done // total:3d}% {done}/{total}")
        self._err.flush()
        self._drawn = True

    def say(self, line: str) -> None:
        """A message line that does not get mixed into the bar."""
        if self._drawn:
            self._err.write("\r" + " " * (self.WIDTH + 40) + "\r")
        self._err.write(line + "\n")
        self._err.flush()

    def finish(self) -> None:
        if self._drawn:
            self._err.write("\n")
            self._err.flush()
            self._drawn = False


# --- the replay ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayOptions:
    since: datetime | None = None
    until: datetime | None = None
    system: str | None = None
    actor: str | None = None
    format: str = "jsonl"


@dataclass
class ReplayStats:
    replayed: int = 0  # events read from the stream inside --since/--until
    matched: int = 0  # of those, the ones that passed --system/--actor
    gaps: list[tuple[int, int]] = field(default_factory=list)  # missing sequence ranges
    aged_out: int = 0  # events 1..aged_out are gone from the stream's head
    undecodable: int = 0  # messages on aoc.evt.* that are not envelopes (counted in replayed)
    evicted_by_size: bool = False  # the head went because the stream was full, not by age
    recovered: int = 0  # audit records of the gone head replayed from AOC_AUDIT

    @property
    def exit_code(self) -> int:
        if self.evicted_by_size:
            return EXIT_EVICTED
        return EXIT_GAPS if self.gaps else EXIT_OK


def delivery_position(reply: str) -> tuple[int, int, int]:
    """(stream sequence, pending, stored-at ns) from a JetStream delivery's ack subject.

    The same fields as ``msg.metadata``, without building its dataclass and datetime,
    which is about half the per-event cost of a replay.
    """
    tokens = reply.split(".")
    if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>
        return int(tokens[5]), int(tokens[8]), int(tokens[7])
    # $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending>[.<token>]
    return int(tokens[7]), int(tokens[10]), int(tokens[9])


class _Replay:
    """The state of one pass over the stream; ``on_msg`` is the consumer callback."""

    def __init__(
        self,
        options: ReplayOptions,
        write: Callable[[int, Envelope], None],
        progress: Progress,
        *,
        first_seq: int | None,
        end_seq: int,
    ) -> None:
        self.options = options
        self.write = write
        self.progress = progress
        # None: the server picks the start (--since); the first event delivered sets it
        self.last_seq = None if first_seq is None else first_seq - 1
        self.end_seq = end_seq  # the stream's last sequence when replay began: a fixed snapshot
        self.stats = ReplayStats()
        until = options.until
        self.until_ns = (until - EPOCH) // timedelta(microseconds=1) * 1000 if until else sys.maxsize
        self.stopped_by_until = False
        self.failure: BaseException | None = None
        self.done = asyncio.Event()

    async def on_msg(self, msg: Any) -> None:
        if self.done.is_set():
            return
        try:
            self._handle(msg)
        except BaseException as exc:  # e.g. BrokenPipeError from `| head`: end the replay
            self.failure = exc
            self.done.set()

    def _handle(self, msg: Any) -> None:
        seq, pending, stored_ns = delivery_position(msg.reply)
        if seq > self.end_seq:  # published after replay began: not part of this snapshot
            self.done.set()
            return
        if stored_ns > self.until_ns:
            self.stopped_by_until = True
            self.done.set()
            return
        if self.last_seq is None:
            self.last_seq = seq - 1
        if seq > self.last_seq + 1:
            self._gap(self.last_seq + 1, seq - 1)
        self.last_seq = seq
        self.stats.replayed += 1
        try:
            event = envelope_decoder.decode(msg.data)
        except msgspec.DecodeError as exc:  # anyone may publish to aoc.evt.*: say so, keep going
            self.stats.undecodable += 1
            self.progress.say(f"event {seq}: not an AOC event envelope, skipped ({exc})")
            event = None
        if event is not None and self._wanted(event):
            self.write(seq, event)
            self.stats.matched += 1
        self.progress.update(self.stats.replayed, self.stats.replayed + pending)
        if pending == 0 or seq == self.end_seq:
            self.done.set()

    def _wanted(self, event: Envelope) -> bool:
        options = self.options
        if options.system and event.system != options.system:
            return False
        return not (options.actor and event.actor != options.actor)

    def _gap(self, first: int, last: int) -> None:
        self.stats.gaps.append((first, last))
        self.progress.say(f"gap: events {first}..{last} missing (deleted or expired)")

    def check_tail(self) -> None:
        """Events deleted at the very end leave no later event to reveal the jump."""
        if self.stopped_by_until or self.stats.replayed == 0:
            return
        if self.last_seq < self.end_seq:
            self._gap(self.last_seq + 1, self.end_seq)


async def replay(
    url: str,
    options: ReplayOptions,
    out: IO[bytes],
    *,
    err: IO[str] | None = None,
    show_progress: bool = False,
    credentials: NatsCredentials | None = None,
) -> ReplayStats:
    """Write the matching events to ``out`` and return what happened; gaps, notes and
    the summary line go to ``err``."""
    err = err or sys.stderr
    progress = Progress(err, show_progress)
    writer = WRITERS[options.format](out)
    nc = await _connect(url, credentials)
    try:
        stats = await _replay_stream(nc, options, writer, progress)
    finally:
        progress.finish()
        with contextlib.suppress(Exception):
            await nc.close()
    gaps = len(stats.gaps)
    line = f"replayed {stats.replayed} events ({stats.matched} matched), {gaps} gap{'s' * (gaps != 1)}"
    if stats.aged_out:
        how = "EVICTED BY SIZE before retention" if stats.evicted_by_size else "aged out by retention age"
        line += f"; events 1..{stats.aged_out} {how}"
        if stats.recovered:
            line += f" ({stats.recovered} audit records recovered from {subjects.AUDIT_STREAM})"
    err.write(line + "\n")
    err.flush()
    return stats


async def _connect(url: str, credentials: NatsCredentials | None) -> Any:
    """Connect once, failing fast with the real reason (nats-py would retry and print tracebacks)."""
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:
        errors.append(exc)

    auth: dict[str, Any] = {}
    if credentials is not None:  # the secure embedded server: read as a human NATS user
        auth = {"user": credentials.user, "password": credentials.password}
        auth["inbox_prefix"] = inbox_prefix(credentials.user)
    try:
        return await nats.connect(
            servers=[server.strip() for server in url.split(",")],  # a cluster: every member
            **auth,
            name="aoc-audit-replay",
            connect_timeout=3,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # 0 would mean "forever"
            reconnect_time_wait=0.2,
            error_cb=remember,
        )
    except Exception as exc:
        reason = errors[-1] if errors else exc
        raise ReplayError(f"cannot connect to NATS at {url}: {reason or type(reason).__name__}") from None


async def _replay_stream(nc: Any, options: ReplayOptions, writer: Any, progress: Progress) -> ReplayStats:
    js = nc.jetstream()
    try:
        info = await js.stream_info(subjects.EVENTS_STREAM)
    except NotFoundError:
        raise ReplayError(f"stream {subjects.EVENTS_STREAM} does not exist: no events recorded yet") from None
    state = info.state
    head_gone = state.first_seq - 1 if state.messages else state.last_seq
    recovered: list[tuple[int, Envelope]] = []
    evicted = False
    if head_gone > 0:
        recovered, evicted = await _audit_copies_below(js, head_gone + 1, info.config.max_age or 0.0, options)
    if options.since is None:
        run = _Replay(options, writer.write, progress, first_seq=state.first_seq, end_seq=state.last_seq)
        if head_gone > 0:
            run.stats.aged_out = head_gone
            if evicted:
                progress.say(
                    f"EVICTED: events 1..{head_gone} were evicted by size before their retention age "
                    f"(AOC_EVENTS is full: raise AOC_STREAM_MAX_BYTES); {len(recovered)} audit records of "
                    f"them are kept in {subjects.AUDIT_STREAM} and replayed first"
                )
            else:
                progress.say(f"note: events 1..{head_gone} aged out by retention age")
        config = ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    else:
        run = _Replay(options, writer.write, progress, first_seq=None, end_seq=state.last_seq)
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=options.since)

    run.stats.evicted_by_size = evicted
    for seq, event in recovered:  # in source order, before everything still in AOC_EVENTS
        if run._wanted(event) and _within(event, options):
            writer.write(seq, event)
            run.stats.recovered += 1
            run.stats.matched += 1
    if state.messages:  # a consumer on an empty stream would never call back
        sub = await js.subscribe(
            subjects.EVENTS_SUBJECTS,
            stream=subjects.EVENTS_STREAM,
            ordered_consumer=True,
            cb=run.on_msg,
            config=config,
        )
        try:
            await _wait_until_done(run, sub)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
    if run.failure is not None:
        raise run.failure
    writer.close()
    run.check_tail()
    progress.update(run.stats.replayed, run.stats.replayed, force=True)
    return run.stats


def _within(event: Envelope, options: ReplayOptions) -> bool:
    return (options.since is None or event.time >= options.since) and (
        options.until is None or event.time <= options.until
    )


def source_seq(headers: dict[str, str] | None) -> int | None:
    """The AOC_EVENTS sequence of a copy in AOC_AUDIT ('Nats-Stream-Source: AOC_EVENTS 12 ...')."""
    value = (headers or {}).get("Nats-Stream-Source", "")
    parts = value.split(" ")
    if len(parts) >= 2 and parts[0] == subjects.EVENTS_STREAM and parts[1].isdigit():
        return int(parts[1])
    return None


async def _audit_copies_below(
    js: Any, first_seq: int, max_age: float, options: ReplayOptions
) -> tuple[list[tuple[int, Envelope]], bool]:
    """The AOC_AUDIT copies of events below ``first_seq`` (gone from AOC_EVENTS), and
    whether any is younger than the retention age: then the head was evicted by size."""
    try:
        info = await js.stream_info(subjects.AUDIT_STREAM)
    except NotFoundError:
        return [], False
    if not info.state.messages:
        return [], False
    copies: list[tuple[int, Envelope]] = []
    young = False
    now = datetime.now(UTC)
    done = asyncio.Event()

    async def on_copy(msg: Any) -> None:
        nonlocal young
        seq = source_seq(msg.headers)
        meta = msg.metadata
        if seq is not None and seq < first_seq:
            with contextlib.suppress(msgspec.DecodeError):
                event = envelope_decoder.decode(msg.data)
                copies.append((seq, event))
                # the event's own time, with a margin: its copy was stored a moment after it,
                # so a copy outliving its original by that moment is still ageing out
                age = (now - event.time).total_seconds()
                young = young or max_age <= 0 or age < max_age * 0.99 - 1.0
        if (seq is not None and seq >= first_seq) or meta.num_pending == 0:
            done.set()

    sub = await js.subscribe(
        subjects.EVENTS_SUBJECTS,
        stream=subjects.AUDIT_STREAM,
        ordered_consumer=True,
        cb=on_copy,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    try:
        async with asyncio.timeout(60):
            await done.wait()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    return copies, young and bool(copies)


async def _wait_until_done(run: _Replay, sub: Any) -> None:
    """Wait for the callback to see the last event. When nothing at all matches the
    start policy (a --since after the newest event), no callback ever comes, so ask
    the consumer whether it has anything to deliver."""
    while True:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.25):
                await run.done.wait()
                return
        if run.stats.replayed or run.stopped_by_until:
            continue
        consumer = await sub.consumer_info()
        if consumer.num_pending == 0 and consumer.delivered.consumer_seq == 0:
            return


# --- the command --------------------------------------------------------------------------


def run_replay_command(
    url: str,
    options: ReplayOptions,
    output: Path | None,
    credentials: NatsCredentials | None = None,
) -> int:
    """Entry point for `aoc audit replay`; returns the exit code."""
    try:
        if output is None:
            return _replay_to(url, options, sys.stdout.buffer, False, credentials)
        with open(output, "wb", buffering=1 << 20) as out:
            return _replay_to(url, options, out, True, credentials)
    except ReplayError as exc:
        print(f"aoc audit replay: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # `aoc audit replay | head`: the reader has what it wanted. Point stdout at
        # /dev/null so the interpreter's final flush does not complain about the pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _replay_to(
    url: str, options: ReplayOptions, out: IO[bytes], show_progress: bool, credentials: NatsCredentials | None
) -> int:
    stats = asyncio.run(replay(url, options, out, show_progress=show_progress, credentials=credentials))
    return stats.exit_code
