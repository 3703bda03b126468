"""Indexes kept with a read model, so a filtered page costs what it returns, not the
size of the window (pure; no I/O).

Rows are numbered as they are appended (``row_no``: 0, 1, 2, ... for the life of the
view, trimmed rows included), so a row number never changes when the window drops its
oldest rows. ``Postings`` maps a key (a system, an actor, a word) to the ascending row
numbers that have it; a query walks the shortest matching list backwards from its
cursor and stops at ``limit``.

Text search matches at the start of a word (``q=dep`` finds "deploy", not
"redeploy"): every word of the needle but the last must be a whole word of the row,
the last one the start of a word. That is what a word index answers exactly; each
candidate is then checked against the text itself.

Lists that only grow (``add``) are trimmed by replacing them with their tail, so a
snapshot can hold on to ``(list, length)`` pairs while the view moves on; lists changed
in the middle (``insert``, ``remove``: tags, alert statuses) are copied by the snapshot.
"""

from __future__ import annotations

import heapq
import re
import string
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

WORD = re.compile(r"\w+")
_WORD_CHAR = re.compile(r"\w")
_ASCII_WORD_CHARS = (string.ascii_letters + string.digits + "_").encode()
# every ASCII byte that is not a word character becomes a space (bytes.translate is ~10x
# faster than the regex, which only reads text that is not ASCII)
_ASCII_WORDS = bytes(c if c in _ASCII_WORD_CHARS or c >= 128 else 32 for c in range(256))


def word_set(lowered: str) -> set[bytes]:
    """The words of a lower-cased text (\\w+ runs), as UTF-8 bytes."""
    if lowered.isascii():
        return set(lowered.encode().translate(_ASCII_WORDS).split())
    return {word.encode() for word in WORD.findall(lowered)}


def word_list(lowered: str) -> list[bytes]:
    """The words of a lower-cased text in order (for a needle)."""
    if lowered.isascii():
        return lowered.encode().translate(_ASCII_WORDS).split()
    return [word.encode() for word in WORD.findall(lowered)]


def matches_at_word_start(text: str, needle: str) -> bool:
    """``needle`` (lower case) occurs in ``text`` (lower case) where a word begins (or
    the needle itself begins with a non-word character)."""
    if not needle:
        return True
    anywhere = _WORD_CHAR.match(needle[0]) is None
    start = 0
    while True:
        at = text.find(needle, start)
        if at < 0:
            return False
        if anywhere or at == 0 or _WORD_CHAR.match(text[at - 1]) is None:
            return True
        start = at + 1


def new_list() -> array:
    """Row numbers as 8-byte machine integers: no int object per entry (a restored
    snapshot would otherwise hold one for each), and nothing for the GC to traverse."""
    return array("q")


class Postings:
    """key -> ascending row numbers."""

    def __init__(self) -> None:
        self.lists: dict[Any, array] = {}

    def add(self, key: Any, row_no: int) -> None:
        found = self.lists.get(key)
        if found is None:
            found = self.lists[key] = new_list()
            self._new_key(key)
        found.append(row_no)

    def insert(self, key: Any, row_no: int) -> None:
        """Add out of order (an annotation on an older row)."""
        found = self.lists.get(key)
        if found is None:
            found = self.lists[key] = new_list()
            self._new_key(key)
        at = bisect_left(found, row_no)
        if at == len(found) or found[at] != row_no:
            found.insert(at, row_no)

    def remove(self, key: Any, row_no: int) -> None:
        found = self.lists.get(key)
        if found is None:
            return
        at = bisect_left(found, row_no)
        if at < len(found) and found[at] == row_no:
            del found[at]  # in place: a snapshot copies the lists that change this way
            if not found:
                del self.lists[key]
                self._gone_key(key)

    def get(self, key: Any) -> array | None:
        return self.lists.get(key)

    def trim(self, first_row_no: int) -> None:
        """Forget row numbers below ``first_row_no`` (the window dropped them)."""
        for key in list(self.lists):
            found = self.lists[key]
            if found[0] >= first_row_no:
                continue
            cut = bisect_left(found, first_row_no)
            if cut == len(found):
                del self.lists[key]
                self._gone_key(key)
            else:
                self.lists[key] = found[cut:]

    def _new_key(self, key: Any) -> None:
        pass

    def _gone_key(self, key: Any) -> None:
        pass

    # --- snapshots ----------------------------------------------------------------------

    def cut(self) -> list[tuple[Any, array, int]]:
        """A consistent cut, cheap to take: the lists are only appended to or replaced."""
        return [(key, found, len(found)) for key, found in self.lists.items()]

    @staticmethod
    def encode_cut(cut: list[tuple[Any, array, int]]) -> list[tuple[Any, bytes]]:
        return [(key, found[:length].tobytes()) for key, found, length in cut]

    def restore(self, encoded: Iterable[tuple[Any, bytes]]) -> None:
        self.lists = {}
        for key, data in encoded:
            if data:
                found = new_list()
                found.frombytes(data)
                self.lists[key] = found
                self._new_key(key)


class WordPostings(Postings):
    """Postings keyed by word, with the words grouped by their first one and two letters,
    so the rows of every word that starts with a prefix are found without a scan."""

    def __init__(self) -> None:
        super().__init__()
        self.by_prefix: dict[bytes, set[bytes]] = {}

    def _new_key(self, key: Any) -> None:
        by_prefix = self.by_prefix
        for prefix in (key[:1], key[:2]):
            group = by_prefix.get(prefix)
            if group is None:
                by_prefix[prefix] = {key}
            else:
                group.add(key)

    def _gone_key(self, key: Any) -> None:
        for prefix in {key[:1], key[:2]}:
            group = self.by_prefix.get(prefix)
            if group is not None:
                group.discard(key)
                if not group:
                    del self.by_prefix[prefix]

    def restore(self, encoded: Iterable[tuple[Any, bytes]]) -> None:
        self.by_prefix = {}
        super().restore(encoded)

    def starting_with(self, prefix: bytes) -> list[array]:
        group = self.by_prefix.get(prefix[:2])
        if not group:
            return []
        lists = self.lists
        return [lists[word] for word in group if word.startswith(prefix)]


# --- candidates --------------------------------------------------------------------------


class Candidates:
    """Row numbers, newest first, that may match one filter; ``size`` estimates how many."""

    __slots__ = ("lists", "size")

    def __init__(self, lists: Sequence[array]) -> None:
        self.lists = lists
        self.size = sum(len(found) for found in lists)

    def below(self, end: int) -> Iterator[int]:
        """Row numbers < ``end``, newest first, each once."""
        if len(self.lists) == 1:
            found = self.lists[0]
            for index in range(bisect_left(found, end) - 1, -1, -1):
                yield found[index]
            return
        streams = [_backwards(found, bisect_left(found, end)) for found in self.lists]
        last = -1
        for row_no in heapq.merge(*streams, reverse=True):
            if row_no != last:
                last = row_no
                yield row_no


def listed_under(postings: Postings, key: Any) -> Candidates:
    """The rows listed under one key (none when nothing is)."""
    found = postings.get(key)
    return Candidates([] if found is None else [found])


def field_candidates(fields: Postings, name: str, value: str | None) -> Candidates | None:
    """The rows whose field ``name`` is ``value``, listed under ``(name, value)``; None
    when the page does not filter by that field."""
    return None if value is None else listed_under(fields, (name, value))


def newest_first(driver: Candidates | None, base: int, end: int) -> Iterator[int] | range:
    """The row numbers below ``end`` a page looks at: the most selective filter's, or every
    row down to ``base`` when no filter has an index."""
    return range(end - 1, base - 1, -1) if driver is None else driver.below(end)


def _backwards(found: array, end: int) -> Iterator[int]:
    for index in range(end - 1, -1, -1):
        yield found[index]


def text_candidates(index: WordPostings, needle: str) -> Candidates | None:
    """The rows that can contain ``needle`` (lower case) at a word start, from the word
    index: None when the needle has no word in it (then only a scan can tell)."""
    found = word_list(needle)
    if not found:
        return None
    whole = found if _WORD_CHAR.match(needle[-1]) is None else found[:-1]
    best: Candidates | None = None
    for word in whole:
        listed = index.get(word)
        if listed is None:
            return Candidates([])
        if best is None or len(listed) < best.size:
            best = Candidates([listed])
    if len(whole) < len(found):
        prefixed = Candidates(index.starting_with(found[-1]))
        if best is None or prefixed.size < best.size:
            best = prefixed
    return best


def shortest(options: Iterable[Candidates | None]) -> Candidates | None:
    """The most selective filter (None: no usable filter, walk every row)."""
    best: Candidates | None = None
    for option in options:
        if option is not None and (best is None or option.size < best.size):
            best = option
    return best
