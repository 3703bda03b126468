"""API tokens: generated, shown once, stored only as a SHA-256 digest.

The registry is one JSON file (``AOC_API_TOKENS_FILE``, default
``<data dir>/secrets/api-tokens.json``, mode 0600): name, role, digest, who made it and
when. The gateway re-reads it when it changes, so a token made with the CLI below or
revoked over the API takes effect at once.

A plain SHA-256 is the right hash here: tokens are 256 random bits, so there is nothing
to guess; slow password hashes exist for low-entropy secrets people choose.

`aoc up` calls ``admin_token_notice``: on the first run it makes the ``admin`` token,
writes it to ``<data dir>/secrets/admin.token`` (0600) for the operator to pick up
(delete the file once you stored the token elsewhere; only its digest is needed), and
says how to use it. ``AOC_ADMIN_TOKEN`` overrides it.

    python -m services.shared.tokens list
    python -m services.shared.tokens create NAME viewer|operator|admin
    python -m services.shared.tokens revoke NAME
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sys
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from contracts.identity import Role, canonical_name, valid_actor_name
from contracts.settings import Settings
from services.shared.files import write_private

TOKEN_PREFIX = "aoc_"  # recognisable by secret scanners and in a leaked log line
ADMIN = "admin"
ADMIN_TOKEN_FILE = "admin.token"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenRecord:
    name: str
    role: str
    sha256: str
    created: str
    created_by: str

    def public(self) -> dict[str, str]:
        """Everything but the digest."""
        return {"name": self.name, "role": self.role, "created": self.created, "created_by": self.created_by}


class TokenError(ValueError):
    """A token operation that cannot be done; the message is safe to show."""


class TokenExists(TokenError):
    """The name is taken: revoke the old token first."""


class TokenStore:
    """The token registry file. Every lookup checks whether it changed on disk (one
    stat) and re-reads it if so: a revocation by another process counts at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._records: dict[str, TokenRecord] = {}  # name -> record
        self._by_digest: dict[str, TokenRecord] = {}
        self._stamp: tuple[int, int, int] | None = None

    # --- reading ------------------------------------------------------------------------

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        # a rewrite replaces the file (new inode), so this changes with every save
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _refresh(self) -> None:
        stamp = self._stat()
        if stamp == self._stamp:
            return
        records: dict[str, TokenRecord] = {}
        if stamp is not None:
            raw = json.loads(self.path.read_text() or "{}")
            for item in raw.get("tokens", []):
                record = TokenRecord(**item)
                records[canonical_name(record.name)] = record
        self._records = records
        self._by_digest = {record.sha256: record for record in records.values()}
        self._stamp = stamp

    def find(self, token: str) -> TokenRecord | None:
        with self._lock:
            self._refresh()
            # a dict lookup on the digest: timing reveals nothing about the token itself
            return self._by_digest.get(digest(token))

    def records(self) -> list[TokenRecord]:
        with self._lock:
            self._refresh()
            return sorted(self._records.values(), key=lambda record: record.name)

    # --- changing -----------------------------------------------------------------------

    def _save(self) -> None:
        body = {"version": 1, "tokens": [asdict(record) for record in self._records.values()]}
        write_private(self.path, json.dumps(body, indent=2) + "\n")
        self._by_digest = {record.sha256: record for record in self._records.values()}
        self._stamp = self._stat()

    def create(self, name: str, role: Role, created_by: str, *, bootstrap: bool = False) -> str:
        """A new token for ``name``; returns the token, which is never stored. The name
        ``admin`` is the bootstrap token's (``aoc up``): nobody else may take it."""
        if canonical_name(name) == ADMIN and not bootstrap:
            raise TokenError(f"{name!r} is the bootstrap admin token's name (names are case-insensitive)")
        if not valid_actor_name(name):
            raise TokenError(
                f"invalid token name {name!r}: 1-128 ASCII letters, digits and . _ @ + | -, "
                "not an engine slug or a reserved name"
            )
        name = canonical_name(name)  # "Admin" is "admin": one name, one identity
        token = new_token()
        with self._lock:
            self._refresh()
            if name in self._records:
                raise TokenExists(
                    f"a token named {name!r} exists (names are case-insensitive); revoke it first"
                )
            self._records[name] = TokenRecord(
                name=name,
                role=role.label,
                sha256=digest(token),
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                created_by=created_by,
            )
            self._save()
        return token

    def revoke(self, name: str) -> bool:
        with self._lock:
            self._refresh()
            if self._records.pop(canonical_name(name), None) is None:
                return False
            self._save()
            return True


# --- the admin token of `aoc up` ------------------------------------------------------------


def ensure_admin_token(registry: Path, token_file: Path) -> tuple[str | None, bool]:
    """(token, created). First run: make the admin token, keep its digest in the
    registry and the token itself in ``token_file`` (0600). Later runs: the token from
    that file, or None when the operator removed it (the digest still works)."""
    store = TokenStore(registry)
    if any(record.name == ADMIN for record in store.records()):
        try:
            return token_file.read_text().strip() or None, False
        except FileNotFoundError:
            return None, False
    token = store.create(ADMIN, Role.ADMIN, created_by="aoc up", bootstrap=True)
    write_private(token_file, token + "\n")
    return token, True


def admin_token_notice(settings: Settings, base_url: str) -> list[str]:
    """What `aoc up` prints about credentials (making the admin token on the first run)."""
    if not settings.auth_enabled:
        return ["WARNING: AOC_AUTH_ENABLED=false — the API is open to anyone who can reach it"]
    if settings.admin_token is not None or settings.admin_token_file is not None:
        return ["admin token: from AOC_ADMIN_TOKEN(_FILE); use it as AOC_TOKEN for the CLI"]
    token_file = (settings.secrets_dir / ADMIN_TOKEN_FILE).resolve()  # usable from any directory
    token, created = ensure_admin_token(settings.effective_api_tokens_file, token_file)
    if token is None:
        return [
            f"admin token: made on the first run; {token_file} was removed, so use the copy you kept "
            "(or: python -m services.shared.tokens revoke admin, then restart `aoc up`)"
        ]
    first = "generated a new admin token" if created else "admin token"
    return [
        f"{first}: {token_file} (readable by you only)",
        f"  CLI:       export AOC_TOKEN=$(cat {token_file})",
        f"  dashboard: open {base_url}/admin-ops and paste the token when asked",
        f'  curl:      curl -H "Authorization: Bearer $(cat {token_file})" {base_url}/api/v1/admin/dashboard',
    ]


def read_admin_token(settings: Settings) -> str | None:
    """The local admin token for the CLI when AOC_TOKEN is unset (same data dir as `aoc up`)."""
    try:
        return (settings.secrets_dir / ADMIN_TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


# --- python -m services.shared.tokens ------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.shared.tokens", description="AOC API tokens")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="names, roles and creation of every token (never the tokens)")
    create = commands.add_parser("create", help="make a token and print it once")
    create.add_argument("name")
    create.add_argument("role", choices=[role.label for role in Role])
    revoke = commands.add_parser("revoke", help="remove a token")
    revoke.add_argument("name")
    args = parser.parse_args(argv)

    store = TokenStore(Settings().effective_api_tokens_file)
    try:
        if args.command == "list":
            for record in store.records():
                print(f"{record.name}\t{record.role}\t{record.created}\t{record.created_by}")
        elif args.command == "create":
            print(store.create(args.name, Role.parse(args.role) or Role.VIEWER, created_by="cli"))
        elif not store.revoke(args.name):
            raise TokenError(f"no token named {args.name!r}")
    except TokenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
