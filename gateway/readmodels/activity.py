"""The activity log: one row per event, newest ``window`` rows in memory, with the
operators' annotations and the indexes that answer filtered pages (pure).

Every event on AOC_EVENTS makes a row (its ``summary`` says what to show, whatever its
type). Rows are in stream order; the cursor ``before`` is a stream sequence. Filters by
system, actor, result, tag and text (``q``, at word starts) walk the shortest index
list (gateway/readmodels/index.py); a page stops as soon as it has ``limit`` rows.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

import msgspec

from contracts.events import EntryAnnotated
from gateway.readmodels.base import FeedEvent, View
from gateway.readmodels.index import (
    Postings,
    WordPostings,
    field_candidates,
    listed_under,
    matches_at_word_start,
    newest_first,
    shortest,
    text_candidates,
    word_set,
)

# each frame is one encoding call that holds the GIL (~1 ms here): the loop never waits long
ROWS_PER_FRAME = 2_000
ENTRIES_PER_FRAME = 50_000  # row numbers in the index lists of one frame


class ActivityRow(msgspec.Struct, array_like=True, gc=False):
    """One line of the activity log; compact (no GC header, tuple-like layout)."""

    seq: int
    time: str
    system: str
    type: str
    action: str
    detail: str
    result: str
    actor: str
    correlation_id: str
    id: str
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "timestamp": self.time,
            "system": self.system,
            "action": self.action,
            "detail": self.detail,
            "result": self.result,
            "actor": self.actor,
            "type": self.type,
            "correlation_id": self.correlation_id,
            "id": self.id,
            "source": self.source,
        }


def activity_row(seq: int, event: FeedEvent) -> ActivityRow:
    """The log's row for an event (the in-memory window's and the stream scan's alike)."""
    summary = event.summary
    return ActivityRow(
        seq,
        event.time,
        event.system,
        event.type,
        summary.action,
        summary.detail,
        summary.result,
        event.actor,
        event.correlation_id,
        event.id,
        event.source,
    )


class Annotation(msgspec.Struct, array_like=True):
    """One operator's tags and comment on an entry, from an entry_annotated event."""

    id: str  # the entry_annotated event's id
    seq: int
    time: str
    actor: str
    tags: list[str]
    comment: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "tags": self.tags,
            "comment": self.comment,
        }


_decode_annotation = msgspec.json.Decoder(EntryAnnotated).decode
_ANNOTATED = EntryAnnotated.TYPE


class _Meta(msgspec.Struct, array_like=True):
    base: int
    applied_seq: int
    window: int
    frames: int  # row frames that follow


_encode = msgspec.msgpack.Encoder().encode
_meta = msgspec.msgpack.Decoder(_Meta).decode
_rows = msgspec.msgpack.Decoder(list[ActivityRow]).decode
_annotations = msgspec.msgpack.Decoder(dict[str, list[Annotation]]).decode
_field_postings = msgspec.msgpack.Decoder(list[tuple[tuple[str, str], bytes]]).decode
_tag_postings = msgspec.msgpack.Decoder(list[tuple[str, bytes]]).decode
_word_postings = msgspec.msgpack.Decoder(list[tuple[bytes, bytes]]).decode


class ActivityView(View):
    name = "activity"

    def __init__(self, window: int = 100_000) -> None:
        super().__init__()
        self.window = window
        self.rows: list[ActivityRow] = []
        self.base = 0  # the row number of rows[0]
        self.applied_seq = 0
        self._trim_at = window + max(window // 10, 1)
        # entry id -> its annotations, in stream order (kept for the rows in memory)
        self.annotations: dict[str, list[Annotation]] = {}
        self.fields = Postings()  # ("system" | "actor" | "result", value) -> row numbers
        self.words = WordPostings()  # word of action or detail -> row numbers
        self.tags = Postings()  # tag -> row numbers of the entries tagged so

    # --- applying -------------------------------------------------------------------

    def apply(self, seq: int, event: FeedEvent, raw: bytes) -> None:
        if seq <= self.applied_seq:
            return  # replayed twice: already in the view
        summary = event.summary
        row_no = self.base + len(self.rows)
        self.rows.append(activity_row(seq, event))
        # the index lists, inline: this is the replay's hot path (20-odd words an event)
        fields = self.fields
        for key in (("system", event.system), ("actor", event.actor), ("result", summary.result)):
            listed = fields.lists.get(key)
            if listed is None:
                fields.add(key, row_no)
            else:
                listed.append(row_no)
        index = self.words
        lists = index.lists
        for word in word_set(f"{summary.action} {summary.detail}".lower()):
            listed = lists.get(word)
            if listed is None:
                index.add(word, row_no)
            else:
                listed.append(row_no)
        if len(self.rows) > self._trim_at:
            self._trim()
        if event.type == _ANNOTATED:
            self._annotate(seq, event)
        self.applied_seq = seq

    def skip(self, seq: int) -> None:
        """An event that does not decode: no row, but the view has seen it."""
        self.applied_seq = max(self.applied_seq, seq)

    def _trim(self) -> None:
        dropped = len(self.rows) - self.window
        if self.annotations:
            for old in self.rows[:dropped]:
                self.annotations.pop(old.id, None)
        del self.rows[:dropped]
        self.base += dropped
        for postings in (self.fields, self.words, self.tags):
            postings.trim(self.base)

    def _annotate(self, seq: int, event: FeedEvent) -> None:
        try:
            note = _decode_annotation(event.data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return
        entry = Annotation(event.id, seq, event.time, event.actor, list(note.tags), note.comment)
        self.annotations.setdefault(note.entry_id, []).append(entry)
        if note.tags:
            row_no = self._row_no(note.entry_seq, note.entry_id)
            if row_no is not None:
                for tag in note.tags:
                    self.tags.insert(tag, row_no)

    def _row_no(self, seq: int, entry_id: str) -> int | None:
        index = bisect.bisect_left(self.rows, seq, key=_seq)
        if index < len(self.rows) and self.rows[index].seq == seq and self.rows[index].id == entry_id:
            return self.base + index
        for index in range(len(self.rows) - 1, -1, -1):  # an annotation naming a wrong seq
            if self.rows[index].id == entry_id:
                return self.base + index
        return None

    # --- reading ----------------------------------------------------------------------

    def activity(
        self,
        *,
        limit: int,
        before: int | None = None,
        system: str | None = None,
        result: str | None = None,
        actor: str | None = None,
        text: str | None = None,
        since: str | None = None,
        until: str | None = None,
        tag: str | None = None,
    ) -> list[ActivityRow]:
        """Newest first; ``before`` is a stream-sequence cursor (exclusive)."""
        rows, base = self.rows, self.base
        end = base + (len(rows) if before is None else bisect.bisect_left(rows, before, key=_seq))
        needle = text.lower() if text else None
        driver = shortest(
            (
                field_candidates(self.fields, "system", system),
                field_candidates(self.fields, "actor", actor),
                field_candidates(self.fields, "result", result),
                None if tag is None else listed_under(self.tags, tag),
                None if needle is None else text_candidates(self.words, needle),
            )
        )
        found: list[ActivityRow] = []
        for row_no in newest_first(driver, base, end):
            row = rows[row_no - base]
            if since is not None and row.time < since:
                break  # rows are in stream order, so everything older is out too
            if (
                (system is None or row.system == system)
                and (result is None or row.result == result)
                and (actor is None or row.actor == actor)
                and (until is None or row.time <= until)
                and (
                    needle is None
                    or matches_at_word_start(row.detail.lower(), needle)
                    or matches_at_word_start(row.action.lower(), needle)
                )
                and (tag is None or tag in self.tags_of(row.id))
            ):
                found.append(row)
                if len(found) >= limit:
                    break
        return found

    def tags_of(self, entry_id: str) -> list[str]:
        """Every tag given to an entry, first use first, once each."""
        notes = self.annotations.get(entry_id)
        if not notes:
            return []
        return list(dict.fromkeys(tag for note in notes for tag in note.tags))

    def entry(self, row: ActivityRow) -> dict[str, Any]:
        """A row as the API shows it: with its tags and annotations."""
        notes = self.annotations.get(row.id, ())
        return {**row.as_dict(), "tags": self.tags_of(row.id), "annotations": [n.as_dict() for n in notes]}

    def find(self, entry_id: str) -> ActivityRow | None:
        """The row with this event id (newest first; a POST path, never the hot one)."""
        for index in range(len(self.rows) - 1, -1, -1):
            if self.rows[index].id == entry_id:
                return self.rows[index]
        return None

    @property
    def first_seq(self) -> int:
        return self.rows[0].seq if self.rows else 0

    # --- snapshots ----------------------------------------------------------------------

    def cut(self) -> Any:
        """Everything the view holds, taken at once (cheap: rows are never changed, index
        lists only grow or are replaced); ``encode`` turns it into bytes off the loop."""
        return (
            _Meta(self.base, self.applied_seq, self.window, -(-len(self.rows) // ROWS_PER_FRAME)),
            list(self.rows),
            {entry: list(notes) for entry, notes in self.annotations.items()},
            self.fields.cut(),
            self.words.cut(),
            [(key, found[:], len(found)) for key, found in self.tags.lists.items()],  # tags insert in place
        )

    @staticmethod
    def encode(cut: Any) -> Iterator[bytes]:
        meta, rows, annotations, fields, word_lists, tags = cut
        yield _encode(meta)
        for start in range(0, len(rows), ROWS_PER_FRAME):
            yield _encode(rows[start : start + ROWS_PER_FRAME])
        yield _encode(annotations)
        yield _encode(Postings.encode_cut(fields))
        yield _encode(Postings.encode_cut(tags))
        chunks = list(_chunks(word_lists))
        yield _encode(len(chunks))
        for chunk in chunks:
            yield _encode(Postings.encode_cut(chunk))

    def restore(self, frames: Iterator[bytes]) -> None:
        meta = _meta(next(frames))
        if meta.window != self.window:
            raise ValueError(f"activity window was {meta.window}, is {self.window}")
        rows: list[ActivityRow] = []
        for _ in range(meta.frames):
            rows.extend(_rows(next(frames)))
        self.rows, self.base, self.applied_seq = rows, meta.base, meta.applied_seq
        self.annotations = _annotations(next(frames))
        self.fields.restore(_field_postings(next(frames)))
        self.tags.restore(_tag_postings(next(frames)))
        chunks = msgspec.msgpack.decode(next(frames), type=int)
        self.words.restore(pair for _ in range(chunks) for pair in _word_postings(next(frames)))


def _chunks(cut: list[tuple[Any, Any, int]]) -> Iterator[list[tuple[Any, Any, int]]]:
    chunk: list[tuple[Any, Any, int]] = []
    entries = 0
    for item in cut:
        chunk.append(item)
        entries += item[2]
        if entries >= ENTRIES_PER_FRAME:
            yield chunk
            chunk, entries = [], 0
    if chunk:
        yield chunk


def _seq(row: ActivityRow) -> int:
    return row.seq
