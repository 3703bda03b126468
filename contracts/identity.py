"""Who is who, across HTTP and NATS: the roles and the rules for the names identities
carry into the audit log. Shared by the gateway (authentication), the token registry
(services/shared/tokens.py) and `aoc up`; pure, no I/O.

Roles are ordered: each one may do everything the one below it may.
  viewer   — reads;
  operator — trigger, start, restart, factory submit/generate;
  admin    — emergency stop, kill switch, restart-all, deploy, token management.
"""

from __future__ import annotations

import re
import unicodedata
from enum import IntEnum

from contracts.systems import SYSTEMS


class Role(IntEnum):
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: object) -> Role | None:
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        return None

    @classmethod
    def highest(cls, values: object) -> Role | None:
        """The highest known role in a claim that is one name or a list of names."""
        names = values if isinstance(values, list) else [values]
        roles = [role for role in map(cls.parse, names) if role is not None]
        return max(roles, default=None)


# Actors that mean something else in the audit log: the engines record themselves by
# slug, the gateway as "gateway", raw NATS senders as "nats:<user>".
RESERVED_NAMES = frozenset({*SYSTEMS, "gateway", "system", "anonymous", "cli", "all"})
# the canonical form: ASCII only, so no look-alike (a Cyrillic "a" in "admin") passes
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.@+|-]{0,127}$")
# reserved for the bootstrap admin token (`aoc up`, AOC_ADMIN_TOKEN): no JWT may carry it
BOOTSTRAP_ADMIN = "admin"


def canonical_name(name: str) -> str:
    """Names are case-insensitive: "Admin", "ADMIN" and "admin" are one identity in the
    audit log, the rate limiter and the token registry (NFKC, then case-folded), so
    nobody can pass for someone by changing the case of a letter (docs/decisions.md)."""
    return unicodedata.normalize("NFKC", name).casefold()


def valid_actor_name(name: str) -> bool:
    """Names an identity may carry into the audit log (no ':' — that marks 'nats:<user>'),
    judged on their canonical form."""
    canonical = canonical_name(name)
    return bool(_NAME.fullmatch(canonical)) and canonical not in RESERVED_NAMES
