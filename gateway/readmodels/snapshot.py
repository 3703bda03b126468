"""Snapshots of the gateway's read models: a restart loads the newest one and replays
only the tail of the stream.

**A consistent cut.** Every view changes only inside a source's callback, and the event
loop runs one callback at a time, so between two callbacks every view is at the same
stream sequence. ``cut()`` of each view runs there, synchronously and cheaply (it copies
references: rows are never changed in place, index lists only grow or are replaced);
the encoding then runs in a worker thread, in frames of a few milliseconds each, so the
loop waits at most one frame for the GIL. What the views had applied is recorded with
it: the AOC_EVENTS sequence (one for all views: they share one feed) and the AOC_FEEDBACK
sequence (the analysts' verdicts): the gateway's only durable positions.

**Format** (object ``gateway-readmodels`` in the object store ``aoc_snapshots``)::

    MAGIC  u32 header length  header (JSON)  body
    body = for each view: u32 frame count, then each frame as u32 length + bytes

The header carries the schema version, both sequences, the identity of both streams
(their creation time: a stream deleted and made again restarts its sequences), the
settings that shape the views (window sizes) and the SHA-256 of the body.

**Falling back.** A snapshot that is missing, of another schema version, corrupt
(digest), from another stream, ahead of the stream, made with other settings, or that a
view cannot read, is not used: the views start empty and replay everything. The log
says why (``snapshot.not_used``) and so does ``/health/details`` (``snapshot``).

Views without a snapshot of their own (the factory's, whose types belong to the factory
contract) are rebuilt from their own subject up to the snapshot's sequence, a replay the
server filters, before the feed goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import struct
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE, OBJ_STREAM_TEMPLATE, ObjectStore

from contracts import soc, subjects
from contracts.settings import Settings
from contracts.snapshots import GATEWAY_SNAPSHOT, SNAPSHOTS_BUCKET, ensure_snapshots_store
from gateway.isotime import iso
from services.runtime import heap
from services.runtime.loops import stop_task
from services.runtime.stream import replay

log = structlog.get_logger()

SCHEMA_VERSION = 2  # 2: the SOC's counters per instance. Bump when any snapshotted view's state changes shape
MAGIC = b"AOC-GATEWAY-READMODELS\n"
CHECK_EVERY_S = 1.0
MIN_GAP_S = 5.0  # never two snapshots closer than this ...
DUTY = 0.1  # ... nor closer than 10x the last one's cost: at most ~10% of the time
ORPHAN_AGE_S = 600.0
_U32 = struct.Struct(">I")


class Snapshotted(Protocol):
    name: str

    def cut(self) -> Any: ...  # on the loop, cheap

    @staticmethod
    def encode(cut: Any) -> Iterator[bytes]: ...  # in a thread

    def restore(self, frames: Iterator[bytes]) -> None: ...


class Header(msgspec.Struct, kw_only=True):
    schema_version: int
    created: str
    events_seq: int
    feedback_seq: int
    events_stream_created: str | None
    feedback_stream_created: str | None
    config: dict[str, int]
    views: list[str]
    digest: str  # sha256:<hex> of the body
    body_bytes: int
    cut_ms: float = 0.0
    encode_ms: float = 0.0


class NotUsed(Exception):
    """Why a snapshot cannot be used (then: a full replay)."""


class Loaded(msgspec.Struct, kw_only=True):
    events_seq: int
    feedback_seq: int
    header: Header


def encode_body(views: list[tuple[str, Any, Callable[[Any], Iterator[bytes]]]]) -> tuple[list[bytes], str]:
    """The frames of every view, as parts of the body (never joined into one buffer: one
    big copy would hold the GIL), and the body's digest. Runs in a worker thread."""
    parts: list[bytes] = []
    digest = hashlib.sha256()
    for _, cut, encode in views:
        frames = list(encode(cut))
        parts.append(_U32.pack(len(frames)))
        for frame in frames:
            parts.append(_U32.pack(len(frame)))
            parts.append(frame)
    for part in parts:
        digest.update(part)  # releases the GIL for parts over 2 KB
    return parts, "sha256:" + digest.hexdigest()


class PartsReader(io.RawIOBase):
    """The snapshot's parts as a file the object store reads chunk by chunk (in its
    executor), so the parts are never copied into one buffer."""

    def __init__(self, parts: list[bytes]) -> None:
        self._parts = [memoryview(part) for part in parts if part]
        self._index = 0
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        target = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(target) and self._index < len(self._parts):
            part = self._parts[self._index]
            take = min(len(part) - self._offset, len(target) - filled)
            target[filled : filled + take] = part[self._offset : self._offset + take]
            filled += take
            self._offset += take
            if self._offset == len(part):
                self._index, self._offset = self._index + 1, 0
        return filled


def split_body(body: bytes | memoryview, names: list[str]) -> Iterator[tuple[str, list[memoryview]]]:
    """Each view's frames, as slices of the body (no copies: a snapshot can be large)."""
    view = memoryview(body)
    at = 0
    for name in names:
        (count,) = _U32.unpack_from(view, at)
        at += 4
        frames = []
        for _ in range(count):
            (length,) = _U32.unpack_from(view, at)
            at += 4
            frames.append(view[at : at + length])
            at += length
        yield name, frames
    if at != len(body):
        raise NotUsed(f"{len(body) - at} bytes after the last view")


def pack(header: Header, body: bytes) -> bytes:
    return b"".join(packed(header, [body]))


def packed(header: Header, parts: list[bytes]) -> list[bytes]:
    head = msgspec.json.encode(header)
    return [MAGIC, _U32.pack(len(head)), head, *parts]


def unpack(blob: bytes | bytearray) -> tuple[Header, memoryview]:
    if not blob.startswith(MAGIC):
        raise NotUsed("not a gateway snapshot (no magic)")
    at = len(MAGIC)
    try:
        (length,) = _U32.unpack_from(blob, at)
        header = msgspec.json.decode(blob[at + 4 : at + 4 + length], type=Header)
    except (struct.error, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise NotUsed(f"unreadable header: {exc}") from None
    return header, memoryview(blob)[at + 4 + length :]


class Snapshots:
    """Loads the newest snapshot at start and writes new ones while the gateway runs."""

    def __init__(
        self,
        js: JetStreamContext,
        settings: Settings,
        *,
        config: dict[str, int],
        positions: Callable[[], tuple[int, int]],
        ready: Callable[[], bool],
    ) -> None:
        self.js = js
        self.settings = settings
        self.config = config  # what shapes the views: a snapshot made with other values is not used
        self._positions = positions  # (events seq, feedback seq) the views have applied
        self._ready = ready
        self.enabled = settings.snapshots
        self.object_name = GATEWAY_SNAPSHOT
        self.store: ObjectStore | None = None
        self.status: dict[str, Any] = {"enabled": self.enabled, "loaded": False, "full_replay": True}
        self.written = 0
        self.failures = 0
        self.last_written_seq = 0
        self._last_at = time.monotonic()
        self._last_cost = 0.0
        self._task: asyncio.Task[None] | None = None
        self._writing = asyncio.Lock()
        self.orphan_age_s = ORPHAN_AGE_S

    async def open(self) -> None:
        if self.enabled:
            self.store = await ensure_snapshots_store(self.js, self.settings)

    # --- loading ----------------------------------------------------------------------

    async def load(self, views: list[Snapshotted]) -> Loaded | None:
        """Restore ``views`` from the newest snapshot; None (views untouched or to be
        discarded) when there is none or it cannot be used: then the caller replays all."""
        if not self.enabled or self.store is None:
            self.status.update(reason="snapshots are off (AOC_SNAPSHOTS=false)")
            return None
        started = time.perf_counter()
        try:
            blob = await self._fetch()
            if blob is None:
                raise NotUsed("no snapshot yet")
            loaded = await self._check_and_restore(blob, views)
        except NotUsed as exc:
            self._not_used(str(exc))
            return None
        except Exception as exc:  # a view that cannot read its frames, a store error
            self._not_used(f"could not be read: {type(exc).__name__}: {exc}"[:300])
            return None
        took = time.perf_counter() - started
        self.last_written_seq = loaded.events_seq
        self.status.update(
            loaded=True,
            full_replay=False,
            reason=None,
            events_seq=loaded.events_seq,
            feedback_seq=loaded.feedback_seq,
            created=loaded.header.created,
            bytes=loaded.header.body_bytes,
            load_ms=round(took * 1000, 1),
        )
        log.info(
            "snapshot.loaded",
            events_seq=loaded.events_seq,
            feedback_seq=loaded.feedback_seq,
            created=loaded.header.created,
            megabytes=round(loaded.header.body_bytes / 2**20, 1),
            load_ms=round(took * 1000, 1),
        )
        return loaded

    def _not_used(self, reason: str) -> None:
        self.status.update(loaded=False, full_replay=True, reason=reason)
        level = log.info if reason == "no snapshot yet" else log.warning
        level("snapshot.not_used", reason=reason, action="full replay of the streams")

    async def _fetch(self) -> bytearray | None:
        assert self.store is not None
        try:
            info = await self.store.get_info(self.object_name)
        except NotFoundError:
            return None
        if info.deleted or not info.nuid or not info.size:
            return None
        # the chunks, read with the runtime's stream reader straight into one buffer
        # (nats-py's get() concatenates bytes chunk by chunk: quadratic, and twice the memory)
        blob = bytearray(info.size)
        filled = 0

        def into(_seq: int, data: bytes, _at: object) -> None:
            nonlocal filled
            end = filled + len(data)
            if end <= len(blob):
                blob[filled:end] = data
            filled = end

        await replay(
            self.js,
            OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=SNAPSHOTS_BUCKET, obj=info.nuid),
            into,
            stream=OBJ_STREAM_TEMPLATE.format(bucket=SNAPSHOTS_BUCKET),
        )
        if filled != info.size:
            raise NotUsed(f"incomplete: {filled} of {info.size} bytes (replaced while reading?)")
        return blob  # sliced by memoryview from here on, never copied

    async def _check_and_restore(self, blob: bytes | bytearray, views: list[Snapshotted]) -> Loaded:
        header, body = unpack(blob)
        if header.schema_version != SCHEMA_VERSION:
            raise NotUsed(f"schema version {header.schema_version}; this gateway reads {SCHEMA_VERSION}")
        if len(body) != header.body_bytes:
            raise NotUsed(f"body is {len(body)} bytes, the header says {header.body_bytes}")
        digest = "sha256:" + (await asyncio.to_thread(hashlib.sha256, body)).hexdigest()
        if digest != header.digest:
            raise NotUsed("digest mismatch: the snapshot is corrupt")
        if header.config != self.config:
            raise NotUsed(f"made with other settings: {header.config}, now {self.config}")
        events, feedback = await self._stream_identity()
        if header.events_stream_created != events[0]:
            raise NotUsed(f"{subjects.EVENTS_STREAM} was created again since the snapshot")
        if header.events_seq > events[1]:
            raise NotUsed(f"ahead of {subjects.EVENTS_STREAM}: seq {header.events_seq} > {events[1]}")
        if header.feedback_stream_created != feedback[0] or header.feedback_seq > feedback[1]:
            raise NotUsed(f"{soc.FEEDBACK_STREAM} was created again since the snapshot")
        by_name = {view.name: view for view in views}
        if sorted(header.views) != sorted(by_name):
            raise NotUsed(f"has the views {header.views}, this gateway has {sorted(by_name)}")
        for name, frames in split_body(body, header.views):
            stream = iter(frames)
            by_name[name].restore(stream)
            if next(stream, None) is not None:
                raise NotUsed(f"view {name} left frames unread")
        return Loaded(events_seq=header.events_seq, feedback_seq=header.feedback_seq, header=header)

    async def _stream_identity(self) -> tuple[tuple[str | None, int], tuple[str | None, int]]:
        found = []
        for name in (subjects.EVENTS_STREAM, soc.FEEDBACK_STREAM):
            info = await self.js.stream_info(name)
            found.append((_created(info.created), info.state.last_seq))
        return found[0], found[1]

    # --- writing ----------------------------------------------------------------------

    def start(self, views: list[Snapshotted]) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._run(views), name="snapshots")

    async def stop(self) -> None:
        await stop_task(self._task)  # an object-store put can swallow a single cancel
        self._task = None

    def due(self) -> bool:
        seq, _ = self._positions()
        new = seq - self.last_written_seq
        if new <= 0 or not self._ready():
            return False
        since = time.monotonic() - self._last_at
        if since < max(MIN_GAP_S, self._last_cost / DUTY):
            return False
        return new >= self.settings.snapshot_every_events or since >= self.settings.snapshot_interval_s

    async def _run(self, views: list[Snapshotted]) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            if self.due():
                await self.write(views)
                # what the views gained since the last one is long-lived too: out of the
                # collector's full passes (services/runtime/heap.py)
                heap.keep_long_lived()

    async def write(self, views: list[Snapshotted]) -> dict[str, Any] | None:
        """Take a consistent cut of every view now and store it; returns what was written."""
        if self.store is None:
            return None
        async with self._writing:
            try:
                return await self._write(views)
            except Exception as exc:
                self.failures += 1
                self.status.update(last_error=f"{type(exc).__name__}: {exc}"[:300])
                log.warning("snapshot.write_failed", error=type(exc).__name__, detail=str(exc)[:300])
                return None
            finally:
                self._last_at = time.monotonic()

    async def _write(self, views: list[Snapshotted]) -> dict[str, Any]:
        assert self.store is not None
        events_created, feedback_created = await self._created_times()
        started = time.perf_counter()
        # --- the cut: synchronous, nothing else runs on the loop meanwhile ---
        events_seq, feedback_seq = self._positions()
        cuts = [(view.name, view.cut(), type(view).encode) for view in views]
        cut_s = time.perf_counter() - started
        # --- encoding, off the loop (how long the loop waited meanwhile is measured) ---
        encoded_at = time.perf_counter()
        async with LoopStall() as stall:
            parts, digest = await asyncio.to_thread(encode_body, cuts)
        size = sum(len(part) for part in parts)
        encode_s = time.perf_counter() - encoded_at
        header = Header(
            schema_version=SCHEMA_VERSION,
            created=iso(datetime.now(UTC)) or "",
            events_seq=events_seq,
            feedback_seq=feedback_seq,
            events_stream_created=events_created,
            feedback_stream_created=feedback_created,
            config=self.config,
            views=[name for name, _, _ in cuts],
            digest=digest,
            body_bytes=size,
            cut_ms=round(cut_s * 1000, 2),
            encode_ms=round(encode_s * 1000, 1),
        )
        put_at = time.perf_counter()
        info = await self.store.put(self.object_name, PartsReader(packed(header, parts)))
        put_s = time.perf_counter() - put_at
        await self._sweep(info.nuid)
        self._last_cost = time.perf_counter() - started
        self.written += 1
        self.last_written_seq = events_seq
        written = {
            "events_seq": events_seq,
            "feedback_seq": feedback_seq,
            "bytes": size,
            "cut_ms": header.cut_ms,  # the loop is held for this long (the consistent cut)
            "encode_ms": header.encode_ms,
            "loop_stall_ms": round(stall.longest * 1000, 1),  # the longest the loop waited meanwhile
            "put_ms": round(put_s * 1000, 1),
            "at": header.created,
        }
        self.status.update(last_written=written, written=self.written, failures=self.failures)
        log.info("snapshot.written", **written)
        return written

    async def _sweep(self, current: str | None) -> None:
        """Chunks of a write that never finished (its gateway was killed mid-put) belong to
        no object and would stay forever: remove those older than ``orphan_age_s`` (a younger
        one may be another gateway's write in progress)."""
        stream = OBJ_STREAM_TEMPLATE.format(bucket=SNAPSHOTS_BUCKET)
        prefix = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=SNAPSHOTS_BUCKET, obj="")
        try:
            info = await self.js.stream_info(stream, subjects_filter=f"{prefix}>")
            for subject in info.state.subjects or {}:
                if subject == f"{prefix}{current}":
                    continue
                last = await self.js.get_last_msg(stream, subject)
                age = (datetime.now(UTC) - last.time).total_seconds() if last.time is not None else 0.0
                if age >= self.orphan_age_s:
                    await self.js.purge_stream(stream, subject=subject)
                    log.info("snapshot.orphan_removed", subject=subject)
        except Exception as exc:  # housekeeping: never fails a snapshot
            log.warning("snapshot.sweep_failed", error=type(exc).__name__)

    async def _created_times(self) -> tuple[str | None, str | None]:
        events = await self.js.stream_info(subjects.EVENTS_STREAM)
        feedback = await self.js.stream_info(soc.FEEDBACK_STREAM)
        return _created(events.created), _created(feedback.created)


class LoopStall:
    """The longest the event loop went without running a 5 ms ticker (while the snapshot
    is encoded in a thread that competes for the GIL)."""

    TICK = 0.005

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopStall:
        self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(self.TICK)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last - self.TICK)
            last = now


def _created(moment: Any) -> str | None:
    if moment is None:
        return None
    return moment if isinstance(moment, str) else iso(moment)
