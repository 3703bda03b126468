"""Replies to control commands, their audit records and the lifecycle event of a change,
built in one place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from contracts.commands import CommandReply
from contracts.events import CommandAudit, CommandHandled, LifecycleChanged, Summary
from services.runtime import refusals
from services.runtime.control import ControlRequest


class Replies:
    """Builds an engine's replies; each carries the engine's state as it is now."""

    def __init__(self, slug: str, state: Callable[[], tuple[str, str]]) -> None:
        self.slug = slug
        self._state = state  # () -> (lifecycle state, desired state)

    def make(
        self,
        verb: str,
        message: str,
        *,
        command_id: str = "",
        ok: bool = True,
        error: str | None = None,
        status: str | None = None,
        changed: bool = False,
        duplicate: bool = False,
        run_id: str | None = None,
        result: dict[str, Any] | None = None,
    ) -> CommandReply:
        state, desired = self._state()
        return CommandReply(
            ok=ok,
            system=self.slug,
            verb=verb,
            message=message,
            command_id=command_id,
            state=state,
            desired=desired,
            changed=changed,
            duplicate=duplicate,
            status=status or ("done" if ok else "rejected"),
            run_id=run_id,
            result=result,
            error=error,
        )

    def refused(self, request: ControlRequest, error: str, message: str) -> CommandReply:
        return self.make(request.verb, message, command_id=request.command_id, ok=False, error=error)


def outcome_of(reply: CommandReply) -> str:
    """The audit outcome of a handled command."""
    return "accepted" if reply.ok and reply.changed else ("noop" if reply.ok else "failed")


def command_summary(request: ControlRequest, outcome: str, message: str) -> Summary:
    """The activity-log line of a command: who asked what, with which result and why.
    Every field a sender controls is bounded (issue 11: the audit trail cannot be flushed)."""
    detail = f"{request.verb} from {request.origin}: {refusals.bound(message, 1000)}"
    if request.command.reason:
        detail += f" (reason: {refusals.bound(request.command.reason, 1000)})"
    return Summary(action=f"command_{request.verb}"[:64], detail=detail, result=outcome)


def command_record(
    request: ControlRequest,
    target: str,
    outcome: str,
    message: str,
    *,
    run_id: str | None = None,
    repeats: int = 0,
) -> tuple[CommandHandled, Summary]:
    """The audit record of a command that changed no state: who, what, target, reason,
    result; ``repeats``: how many more folded refusals of the same sender it stands for."""
    payload = CommandHandled(
        command_id=request.command_id,
        verb=request.verb,
        target=target,
        origin=request.origin,
        outcome=outcome,
        message=refusals.bound(message, 1000),
        reason=refusals.bound(request.command.reason, 1000),
        subject=refusals.bound(request.subject, refusals.SUBJECT_LIMIT),
        run_id=run_id,
        repeats=repeats,
        body_sha256=request.body_digest,
    )
    return payload, command_summary(request, outcome, message)


def command_audit(request: ControlRequest, message: str) -> CommandAudit:
    """The audit of a command carried by the lifecycle event it caused."""
    return CommandAudit(
        verb=request.verb,
        origin=request.origin,
        outcome="accepted",
        message=refusals.bound(message, 1000),
        subject=refusals.bound(request.subject, refusals.SUBJECT_LIMIT),
    )


def lifecycle_record(
    label: str,
    state: str,
    previous: str,
    desired: str,
    reason: str,
    request: ControlRequest | None,
    message: str | None,
) -> tuple[LifecycleChanged, Summary]:
    """The lifecycle event of a change; with ``message``, also the audit of the command
    that made it (a restart's first half carries only the command id)."""
    audit = None
    if request is not None and message is not None:
        summary = command_summary(request, "accepted", message)
        audit = command_audit(request, message)
    else:
        detail = f"{label} {state}"
        if reason:
            detail += f" — {reason}"
        summary = Summary(action=f"engine_{state}", detail=detail, result="success")
    command_id = request.command_id if request else None
    payload = LifecycleChanged(
        state=state,
        previous=previous,
        desired=desired,
        reason=reason,
        command_id=command_id,
        command=audit,
    )
    return payload, summary
