"""What a refused command may leave behind: bounded, and folded when it comes in bursts.

A refused command is the sender's text. Copied whole into an audit event and a log
line, one 450 KB field name became ~1 MB of stream and log per engine, times seven for
``aoc.ctl.all.*``: an operator could flush the audit trail out of the stream, and a
600 KB name made the audit itself fail (``MaxPayloadError``: no audit, no log line).
So:

- ``bound`` cuts any text taken from a sender to a few hundred characters and says how
  much was cut, with the SHA-256 of the whole, so the original can still be matched;
- ``RefusalFolder`` lets the first ``burst`` refusals of a sender in a ``window`` be
  audited one by one and folds the rest into one record per window whose
  ``repeats`` says how many more it stands for ("412 more refused commands from
  nats:operator in 10 s"). Counting rules (alerts) count ``1 + repeats`` per record;
- ``argument_error`` tells a trigger that failed on its arguments (a ``TypeError`` from
  ``{"feeds": 5}``) from a cycle that failed: the first is the caller's mistake and gets
  an error reply, never ``ok: true``.

Everything here is pure (the clock is passed in), so it is tested without a bus.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

TEXT_LIMIT = 300  # characters of sender-controlled text kept in a message
SUBJECT_LIMIT = 200
FOLD_WINDOW_S = 10.0
FOLD_BURST = 10  # refusals of one sender audited one by one in a window, before folding

# exceptions a trigger raises when the caller's arguments have the wrong shape
ARGUMENT_ERRORS = frozenset({"TypeError", "ValueError", "KeyError", "AttributeError", "IndexError"})


def digest(data: bytes | str) -> str:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def bound(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` when it is short, else its head, how much was cut and the digest of the
    whole. Lone surrogates are escaped so the result always encodes."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(safe) <= limit:
        return safe
    return f"{safe[:limit]}... [+{len(safe) - limit} chars, sha256:{digest(text)[:16]}]"


def header_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """Text for a NATS header value (the micro error description): printable ASCII, one
    line, bounded — a header that cannot be encoded would lose the whole reply."""
    printable = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return printable if len(printable) <= limit else printable[: limit - 3] + "..."


def body_note(body: bytes) -> str:
    """One line about a refused body: its size and digest (never its content)."""
    return f"{len(body)} bytes, sha256:{digest(body)[:16]}"


@dataclass
class Burst:
    """What a folded record stands for: the last refusal of a window, plus ``repeats``."""

    sender: str
    repeats: int
    window_s: float
    last: object  # whatever the caller needs to audit the last folded refusal

    def detail(self) -> str:
        return f"{self.repeats} more refused commands from {self.sender} in {self.window_s:g} s"


@dataclass
class _Window:
    opened: float
    admitted: int = 0
    folded: int = 0
    last: object = None


@dataclass
class RefusalFolder:
    window_s: float = FOLD_WINDOW_S
    burst: int = FOLD_BURST
    max_senders: int = 10_000  # a sender flood cannot grow this without bound
    _windows: dict[str, _Window] = field(default_factory=dict)

    def admit(self, sender: str, now: float, refusal: object = None) -> bool:
        """True: audit this refusal in full now. False: it is folded into the window's
        record (``due`` hands that out when the window ends)."""
        window = self._windows.get(sender)
        if window is None or now - window.opened >= self.window_s:
            if window is not None and window.folded:
                # a window that ended without ``due`` being asked keeps its record pending
                return self._fold(window, refusal)
            if len(self._windows) >= self.max_senders:
                self._windows.pop(next(iter(self._windows)))
            window = self._windows[sender] = _Window(opened=now)
        if window.admitted < self.burst:
            window.admitted += 1
            return True
        return self._fold(window, refusal)

    @staticmethod
    def _fold(window: _Window, refusal: object) -> bool:
        window.folded += 1
        window.last = refusal
        return False

    def next_due(self) -> float | None:
        """When the earliest window with folded refusals ends (None: nothing pending)."""
        ends = [w.opened + self.window_s for w in self._windows.values() if w.folded]
        return min(ends, default=None)

    def due(self, now: float, *, everything: bool = False) -> list[Burst]:
        """The folded records of every window that has ended (all of them at shutdown)."""
        bursts: list[Burst] = []
        for sender, window in list(self._windows.items()):
            if not (everything or now - window.opened >= self.window_s):
                continue
            if window.folded:
                # the record audits the last folded refusal itself and stands for the others
                bursts.append(Burst(sender, window.folded - 1, self.window_s, window.last))
            del self._windows[sender]
        return bursts


async def flush_when_due(folder: RefusalFolder, flush: Callable[[], Awaitable[None]]) -> None:
    """Run ``flush`` as each folded burst's window closes, until no window is open (the
    engines' command path and the gateway's own refusals share it)."""
    while (due := folder.next_due()) is not None:
        await asyncio.sleep(max(due - time.monotonic(), 0.0) + 0.01)
        await flush()


def argument_error(error_type: str | None, args: dict[str, object]) -> bool:
    """A triggered cycle that raised one of ARGUMENT_ERRORS while the caller gave
    arguments failed on those arguments: the caller's mistake, not the engine's."""
    return bool(args) and error_type in ARGUMENT_ERRORS
