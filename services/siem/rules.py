"""The alert rules file: YAML, validated, every error reported with its line number.

    rules:
      - name: engine-crash-loop        # unique; the alert's "rule"
        kind: engine-crash-loop        # one of the built-ins (KINDS)
        severity: critical             # info | warning | high | critical
        count: 3
        window_s: 300

Each kind has its own parameters (the models below); unknown keys are errors, so a
typo cannot silently leave a default in force. ``enabled: false`` keeps a rule in the
file but evaluates nothing.
"""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_RULES_FILE = Path(__file__).with_name("rules.yaml")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class RulesError(ValueError):
    """The rules file is not valid; one line per problem, each with its line number."""


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    severity: Literal["info", "warning", "high", "critical"] = "warning"
    enabled: bool = True
    description: str = Field("", max_length=500)


class KillSwitchUsed(_Rule):
    """The kill switch was used: the gateway's emergency-stop-all (kill_switch_engaged) or
    a NATS broadcast stop (a command audit, command_of(), with origin "all"); once per engagement,
    resolved when every system is running again."""

    kind: Literal["kill-switch-used"]
    severity: Literal["info", "warning", "high", "critical"] = "critical"


class EngineUnreachable(_Rule):
    """An engine that sent heartbeats has sent none for ``for_s`` seconds."""

    kind: Literal["engine-unreachable"]
    for_s: float = Field(60.0, gt=0, le=86_400)
    severity: Literal["info", "warning", "high", "critical"] = "high"


class EngineCrashLoop(_Rule):
    """``count`` or more unclean exits (process_crashed, or engine_recovered where no
    launcher reported the crash) of one engine within ``window_s``; resolved after a
    quiet ``window_s``."""

    kind: Literal["engine-crash-loop"]
    count: int = Field(3, ge=1, le=1000)
    window_s: float = Field(300.0, gt=0, le=86_400)
    severity: Literal["info", "warning", "high", "critical"] = "critical"


class BusinessHours(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = ["mon", "tue", "wed", "thu", "fri"]
    start: time = time(8, 0)
    end: time = time(18, 0)

    @model_validator(mode="after")
    def _order(self) -> BusinessHours:
        if self.end <= self.start:
            raise ValueError("end must be after start (hours within one day)")
        return self

    def contains(self, weekday: int, at: time) -> bool:
        return DAYS[weekday] in self.days and self.start <= at < self.end


class AfterHoursStop(_Rule):
    """An engine was stopped outside business hours in ``timezone``; resolved when it
    runs again."""

    kind: Literal["after-hours-stop"]
    timezone: str = "UTC"
    business_hours: BusinessHours = BusinessHours()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (an IANA name like Europe/Berlin)") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class RejectedCommandBurst(_Rule):
    """``count`` or more refused commands from one actor within ``window_s`` (a folded
    record counts 1 + its ``repeats``); resolved after a quiet ``window_s``."""

    kind: Literal["rejected-command-burst"]
    count: int = Field(10, ge=1, le=1_000_000)
    window_s: float = Field(60.0, gt=0, le=86_400)


class SocEscalationRate(_Rule):
    """``count`` or more alerts escalated to a human within ``window_s``; resolved when
    the count in the window falls below ``resolve_below`` (default: half of count)."""

    kind: Literal["soc-escalation-rate"]
    count: int = Field(20, ge=1, le=1_000_000)
    window_s: float = Field(900.0, gt=0, le=86_400)
    resolve_below: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _hysteresis(self) -> SocEscalationRate:
        if self.resolve_below is not None and self.resolve_below > self.count:
            raise ValueError("resolve_below must not exceed count")
        return self

    @property
    def resolve_threshold(self) -> int:
        return self.resolve_below if self.resolve_below is not None else max(1, self.count // 2)


Rule = Annotated[
    KillSwitchUsed
    | EngineUnreachable
    | EngineCrashLoop
    | AfterHoursStop
    | RejectedCommandBurst
    | SocEscalationRate,
    Field(discriminator="kind"),
]
KINDS = (
    "kill-switch-used",
    "engine-unreachable",
    "engine-crash-loop",
    "after-hours-stop",
    "rejected-command-burst",
    "soc-escalation-rate",
)


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = []

    @model_validator(mode="after")
    def _unique(self) -> RulesFile:
        names = [rule.name for rule in self.rules]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"rule names must be unique: {', '.join(twice)}")
        return self


_adapter = TypeAdapter(RulesFile)


# --- YAML with line numbers -------------------------------------------------------------


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The line (1-based) of the YAML node at pydantic location ``loc``, as far down the
    path as the document goes (a missing key points at its mapping)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if node is None:
            break
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            child = next((value for key, value in node.value if getattr(key, "value", None) == part), None)
            if child is None:
                # tagged-union tags (the kind) are not keys: skip them
                if part in KINDS:
                    continue
                break
            node = child
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        elif isinstance(part, str) and part in KINDS:
            continue
        else:
            break
        line = node.start_mark.line + 1
    return line


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in KINDS:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_rules(text: str, source: str = "<rules>") -> RulesFile:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise RulesError(f"{where}: not valid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RulesError(f"{source}:1: the file must be a mapping with a 'rules' list")
    try:
        return _adapter.validate_python(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            loc = tuple(error["loc"])
            line = _line_of(node, loc)
            message = re.sub(r"^Value error, ", "", error["msg"])
            prefix = f"{source}:{line}" if line else source
            where = _where(loc)
            problems.append(f"{prefix}: {where}: {message}" if where else f"{prefix}: {message}")
        raise RulesError("\n".join(problems)) from None


def load_rules(path: Path | None) -> tuple[RulesFile, Path]:
    path = path or DEFAULT_RULES_FILE
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_rules(text, str(path)), path
