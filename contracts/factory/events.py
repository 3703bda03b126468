"""The events of the factory line. Only the factory writes ``requirement_*`` (it is the
single writer of requirement state); the integrity scan writes ``deploy_flagged``; the
deploy engine writes ``release_*`` and ``deploy_failed``."""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from contracts.factory.requirement import RequirementSubmission
from contracts.factory.validation import FieldError


class RequirementSubmitted(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "requirement_submitted"
    requirement_id: str
    submission: RequirementSubmission
    origin: str = "nats"  # http | nats | integrity-scan


class RequirementRejected(msgspec.Struct, kw_only=True):
    """A submission the factory refused at intake (invalid, or a route already taken)."""

    TYPE: ClassVar[str] = "requirement_rejected"
    requirement_id: str
    reason: str  # invalid | conflict | duplicate
    errors: list[FieldError] = []
    origin: str = "nats"


class RequirementGenerating(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "requirement_generating"
    requirement_id: str
    attempt: int
    template: str


class RequirementGenerated(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "requirement_generated"
    requirement_id: str
    template: str
    template_version: str  # sha256 prefix of the template sources
    tsx_code: str
    code_sha256: str
    code_lines: int
    generation_time_ms: float
    file_path: str  # relative to the frontend root
    api_wiring: dict[str, Any]
    sidebar_entry: dict[str, Any]


class RequirementFailed(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "requirement_failed"
    requirement_id: str
    stage: str  # generate | deploy
    error: str


class RequirementDeployed(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "requirement_deployed"
    requirement_id: str
    route: str
    file_path: str  # relative to the frontend root
    code_sha256: str
    bytes: int
    sidebar_registry: str  # relative to the frontend root
    replaced: bool  # an earlier factory-written version was overwritten


class RequirementCancelled(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "requirement_cancelled"
    requirement_id: str
    previous_status: str
    reason: str = ""


REQUIREMENT_EVENTS: dict[str, type[msgspec.Struct]] = {
    cls.TYPE: cls
    for cls in (
        RequirementSubmitted,
        RequirementRejected,
        RequirementGenerating,
        RequirementGenerated,
        RequirementFailed,
        RequirementDeployed,
        RequirementCancelled,
    )
}


class DeployFlagged(msgspec.Struct, kw_only=True):
    """The integrity scan asks for a release: the tree differs from the current release,
    and/or generated pages wait to be deployed (for an operator's decision)."""

    TYPE: ClassVar[str] = "deploy_flagged"
    tree_changed: bool  # the tree is not what the current release holds
    tree_sha256: str
    waiting_requirements: list[str] = []  # generated, not yet deployed into the tree
    current_release: str | None = None


class CommandRun(msgspec.Struct, kw_only=True):
    command: str
    exit_code: int | None
    timed_out: bool = False
    duration_ms: float = 0.0
    output: str = ""  # stdout+stderr, the tail


class FrontendKitInstalled(msgspec.Struct, kw_only=True):
    """The factory installed or upgraded the frontend kit (components, api client, and for
    an empty root the Next.js app around them) in the frontend tree."""

    TYPE: ClassVar[str] = "frontend_kit_installed"
    version: str
    previous_version: str | None = None
    bootstrapped: bool = False  # an empty root became a Next.js app
    written: list[str] = []  # files created or upgraded
    removed: list[str] = []  # files a newer kit no longer ships (unedited ones only)
    kept: dict[str, str] = {}  # path -> why it was left alone (edited by hand, not ours)


class DeployRecord(msgspec.Struct, kw_only=True):
    """One entry of the deploy history."""

    release_id: str | None
    action: str  # deploy | rollback
    status: str  # success | failed
    started: str
    duration_ms: float
    files: int = 0
    tree_sha256: str | None = None  # what was (or would have been) released
    changed_files: list[str] = []
    previous_release: str | None = None
    triggered_by: list[str] = []  # event types (and requirement ids) or "manual"
    command: CommandRun | None = None
    build: CommandRun | None = None  # the built-in ``next build`` of the release, when it ran
    error: str | None = None


class ReleaseDeployed(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "release_deployed"
    record: DeployRecord


class ReleaseRolledBack(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "release_rolled_back"
    record: DeployRecord


class DeployFailed(msgspec.Struct, kw_only=True):
    TYPE: ClassVar[str] = "deploy_failed"
    record: DeployRecord


DEPLOY_EVENTS: dict[str, type[msgspec.Struct]] = {
    cls.TYPE: cls for cls in (ReleaseDeployed, ReleaseRolledBack, DeployFailed)
}
