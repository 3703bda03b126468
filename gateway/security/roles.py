"""The identity of a caller of the gateway (roles and names: contracts/identity.py)."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.identity import Role


@dataclass(frozen=True, slots=True)
class Identity:
    name: str  # recorded as the actor of every command this caller sends
    role: Role | None  # None: authenticated, but allowed nothing
    method: str  # token | jwt | ticket | disabled


BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="aoc"'}  # what a 401 asks for
