"""The bus contract: the only coupling between AOC's services.

Subjects, stream / KV definitions, event and command types. Every service imports
this package; nothing here does I/O except the idempotent ``ensure_*`` helpers.
"""

from contracts.commands import MUTATING_VERBS, VERBS, Command, CommandReply, decode_command
from contracts.events import (
    SCHEMA_VERSION,
    CommandHandled,
    CycleCompleted,
    Envelope,
    Heartbeat,
    LifecycleChanged,
    ProcessMetrics,
    StatusSnapshot,
    Summary,
    new_event,
)
from contracts.systems import SYSTEMS, SystemInfo, is_known_system

__all__ = [
    "MUTATING_VERBS",
    "SCHEMA_VERSION",
    "SYSTEMS",
    "VERBS",
    "Command",
    "CommandHandled",
    "CommandReply",
    "CycleCompleted",
    "Envelope",
    "Heartbeat",
    "LifecycleChanged",
    "ProcessMetrics",
    "StatusSnapshot",
    "Summary",
    "SystemInfo",
    "decode_command",
    "is_known_system",
    "new_event",
]
