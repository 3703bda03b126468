"""Auto-Deploy Pipeline — `deploy`.

The story: the deploy engine follows a durable JetStream consumer on the factory's
``requirement_deployed`` and the integrity scan's ``deploy_flagged`` events. When they
arrive (several at once become one deploy) it snapshots the frontend tree as an
immutable release, runs the operator's deploy command if one is configured (its exit
code decides), and switches ``current`` to the new release atomically. A tree that has
not changed since the current release is not released again. Every five minutes it
also compares the tree with the current release, so changes made while the engine
was down are released too.

``trigger`` deploys now (``{"force": true}`` even when nothing changed) or rolls back:
``{"action": "rollback"}`` to the release before the current one, or
``{"action": "rollback", "release_id": "..."}``. A rollback pins that release: the
tree still holds the newer pages, and releasing them again on the next drift check
would undo the operator's rollback behind their back. While pinned, the schedule and
integrity flags release nothing; an explicit deploy (a factory ``requirement_deployed``
or a manual trigger) releases the tree again and unpins. Each deploy, rollback or
failure is an event; the history (and the pin) are rebuilt from them at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections import deque
from pathlib import Path
from typing import Any

import msgspec
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts import subjects
from contracts.events import Summary, envelope_decoder, utcnow
from contracts.factory import (
    DEPLOY_CONSUMER,
    DEPLOY_EVENTS,
    FACTORY,
    INTEGRITY,
    CommandRun,
    DeployFailed,
    DeployFlagged,
    DeployRecord,
    FactorySettings,
    ReleaseDeployed,
    ReleaseRolledBack,
    RequirementDeployed,
    tree_digest,
)
from services.deploy.build import ReleaseBuilder, wants_build
from services.deploy.command import failed, run_deploy_command
from services.deploy.releases import (
    Release,
    ReleaseError,
    ReleaseStore,
    changed_files,
    new_release_id,
)
from services.runtime import CycleOutcome, Engine, Loop
from services.runtime.loops import stop_task
from services.shared.frontend_kit.files import scan_tree

HISTORY = 50  # deploy records kept in memory (and shown in detail)
IN_STATUS = 10  # of which the status (heartbeats, dashboard) carries the latest


class DeployEngine(Engine):
    slug = "deploy"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        config = FactorySettings()
        self.frontend = config.frontend(settings)
        self.store = ReleaseStore(config.releases(settings))
        self.command = config.deploy_command
        self.command_timeout = config.deploy_timeout
        self.keep = config.releases_keep
        self.build_mode = config.deploy_build
        self._warned_no_node = False
        self.builder = ReleaseBuilder(
            self.store.root, node_modules=config.frontend_node_modules, timeout=config.deploy_timeout
        )
        self.history: deque[DeployRecord] = deque(maxlen=HISTORY)
        self.total_deploys = 0
        self.failed_deploys = 0
        self.pinned: str | None = None  # the release a rollback chose, until an explicit deploy
        self._deploying = asyncio.Lock()
        self._watch_task: asyncio.Task[None] | None = None
        self._watching = False

    def loops(self) -> list[Loop]:
        return [Loop("watch", self.interval("watch", 300), self.reconcile, primary=True)]

    # --- process lifetime -------------------------------------------------------------------

    async def setup(self) -> None:
        await self.ctx.replay(
            subjects.evt(self.slug, ">"), lambda seq, data, _at: self._apply_own_event(seq, data)
        )
        await asyncio.to_thread(self.store.clean_staging)
        self._consumer = await self.ctx.pull(
            subjects.evt(FACTORY, RequirementDeployed.TYPE),
            durable=DEPLOY_CONSUMER,
            stream=subjects.EVENTS_STREAM,
            config=ConsumerConfig(
                filter_subjects=[
                    subjects.evt(FACTORY, RequirementDeployed.TYPE),
                    subjects.evt(INTEGRITY, DeployFlagged.TYPE),
                ],
                # from the start: a first deploy engine releases what was deployed before
                # it existed; after that the durable consumer remembers where it was
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=max(self.command_timeout + 60, 120),
                max_deliver=5,
            ),
        )

    def _apply_own_event(self, _seq: int, data: bytes) -> None:
        with contextlib.suppress(msgspec.DecodeError):
            event = envelope_decoder.decode(data)
            kind = DEPLOY_EVENTS.get(event.type)
            if kind is not None:
                self._remember(msgspec.json.decode(event.data, type=kind).record)

    async def teardown(self) -> None:
        # unsubscribe, not drain: a fetch cancelled by a stop leaves an item in the pull
        # subscription's queue that a drain would wait its whole timeout (30 s) for
        with contextlib.suppress(Exception):
            await self._consumer.unsubscribe()

    async def on_start(self) -> None:
        self._watching = True
        self._watch_task = asyncio.create_task(self._watch(), name="deploy-watch")

    async def on_stop(self) -> None:
        # unacked events stay with the durable consumer and come back on start
        self._watching = False
        await stop_task(self._watch_task)
        self._watch_task = None

    # --- reacting to events ---------------------------------------------------------------

    async def _watch(self) -> None:
        loop = self.primary_loop()
        while self._watching:
            try:
                messages = await self._consumer.fetch(batch=100, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                self.ctx.log.exception("deploy.watch_failed")
                await asyncio.sleep(1.0)
                continue
            if not messages:
                continue  # nats-py can end a pull with no message and no timeout error
            reasons = [_reason(message.subject, message.data) for message in messages]
            # a page the factory deployed is an explicit request; a flag only reports drift
            explicit = any(reason.startswith(RequirementDeployed.TYPE) for reason in reasons)
            try:
                await self.ctx.run_cycle(
                    loop, run=lambda r=reasons, e=explicit: self.deploy(triggered_by=r, explicit=e)
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # the deploy ran, its event did not land: let the batch come back
                self.ctx.log.exception("deploy.not_recorded")
                continue
            # acked even when the deploy failed: the failure is in the history, and the
            # next event, reconcile or trigger retries with the tree as it is then
            for message in messages:
                await message.ack()

    async def reconcile(self) -> CycleOutcome:
        """The scheduled check: release the tree if it differs from the current release."""
        return await self.deploy(triggered_by=["schedule"], explicit=False, skip_failed_tree=True)

    async def trigger(self, args: dict[str, Any]) -> CycleOutcome:
        action = args.get("action", "deploy")
        if action == "deploy":
            return await self.deploy(triggered_by=["manual"], explicit=True, force=bool(args.get("force")))
        if action == "rollback":
            return await self.rollback(args.get("release_id"))
        return CycleOutcome(
            result="rejected",
            detail=f"unknown action {action!r}; use deploy or rollback",
            output={"done": False},
        )

    # --- deploy ------------------------------------------------------------------------------

    async def deploy(
        self, *, triggered_by: list[str], explicit: bool, force: bool = False, skip_failed_tree: bool = False
    ) -> CycleOutcome:
        async with self._deploying:
            if self.pinned is not None and not explicit:
                return CycleOutcome(
                    detail=f"pinned to {self.pinned} by a rollback; tree changes wait for an explicit deploy",
                    quiet=True,
                    output={"pinned": self.pinned},
                )
            started, clock = utcnow(), time.perf_counter()
            files = await asyncio.to_thread(scan_tree, self.frontend)
            digest = tree_digest(files)
            current = await asyncio.to_thread(self._current)
            if current is not None and current.manifest.get("tree_sha256") == digest and not force:
                self.pinned = None  # the explicit deploy asked for what is current: nothing pins it
                return CycleOutcome(
                    detail=f"tree unchanged since release {current.id}",
                    quiet=True,
                    output={"release_id": current.id, "changed": False},
                )
            if skip_failed_tree and self._last_failed_tree() == digest:
                # the schedule does not retry a failing deploy forever; an event or trigger does
                return CycleOutcome(detail="tree unchanged since the last failed deploy", quiet=True)
            if not files:
                return CycleOutcome(detail=f"nothing to release: {self.frontend} is empty", quiet=True)

            release_id = new_release_id(digest)
            release = await asyncio.to_thread(
                self.store.build,
                self.frontend,
                release_id,
                previous=current,
                info={"triggered_by": triggered_by},
            )
            changed = changed_files(current.files if current else {}, release.files)
            build = await self.builder.build(release) if self._builds(release) else None
            command = None
            if build is None or build.ok:
                command = await self._run_command(release, "deploy", app_dir=build.app_dir if build else None)
            record = DeployRecord(
                release_id=release_id,
                action="deploy",
                status="success",
                started=started.isoformat(),
                duration_ms=0.0,
                files=len(release.files),
                tree_sha256=release.manifest["tree_sha256"],
                changed_files=changed[:100],
                previous_release=current.id if current else None,
                triggered_by=triggered_by[:20],
                command=command,
                build=build.run if build else None,
            )
            if build is not None and not build.ok:
                await asyncio.to_thread(self.store.remove, release_id)  # only good releases stay
                record.status, record.error = "failed", build.error
            elif failed(command):
                await asyncio.to_thread(self.store.remove, release_id)
                record.status, record.error = "failed", _command_failure(command)
            else:
                await asyncio.to_thread(self.store.switch, release_id)
                await asyncio.to_thread(self._prune)
            record.duration_ms = round((time.perf_counter() - clock) * 1000, 1)
            return await self._finish(record)

    async def rollback(self, release_id: str | None) -> CycleOutcome:
        async with self._deploying:
            started, clock = utcnow(), time.perf_counter()
            current_id = self.store.current_id()
            target = release_id or self._release_before(current_id)
            if target is None:
                return CycleOutcome(
                    result="rejected", detail="no earlier release to roll back to", output={"done": False}
                )
            try:
                problems = await asyncio.to_thread(self.store.verify, target)
            except ReleaseError as exc:
                known = ", ".join(self.store.ids()[-5:]) or "none"
                return CycleOutcome(
                    result="rejected", detail=f"{exc}; recent: {known}", output={"done": False}
                )
            if target == current_id:
                return CycleOutcome(
                    result="noop", detail=f"{target} is already current", output={"done": False}
                )
            record = DeployRecord(
                release_id=target,
                action="rollback",
                status="success",
                started=started.isoformat(),
                duration_ms=0.0,
                files=len(self.store.get(target).files),
                tree_sha256=self.store.get(target).manifest.get("tree_sha256"),
                previous_release=current_id,
                triggered_by=["manual"],
            )
            if problems:
                record.status = "failed"
                record.error = f"release {target} no longer matches its manifest: {'; '.join(problems[:5])}"
            else:
                record.command = await self._run_command(self.store.get(target), "rollback")
                if failed(record.command):
                    record.status, record.error = "failed", _command_failure(record.command)
                else:
                    await asyncio.to_thread(self.store.switch, target)
            record.duration_ms = round((time.perf_counter() - clock) * 1000, 1)
            return await self._finish(record)

    def _builds(self, release: Release) -> bool:
        """The built-in next build runs for a release with a package.json: always, or
        (auto) when no deploy command is configured to build it instead and this host
        can build at all (the AOC image has no node; its pipeline builds elsewhere)."""
        if self.build_mode == "never" or not wants_build(release):
            return False
        if self.build_mode == "always":
            return True
        if self.command:
            return False
        if shutil.which("node") is None:
            if not self._warned_no_node:
                self._warned_no_node = True
                self.ctx.log.warning("deploy.build_skipped", reason="node is not installed (build: auto)")
            return False
        return True

    def _prune(self) -> None:
        self.store.prune(self.keep)
        self.builder.prune_dependencies([self.store.get(r) for r in self.store.ids()])

    async def _run_command(
        self, release: Release, action: str, app_dir: Path | None = None
    ) -> CommandRun | None:
        if not self.command:
            return None
        built = release.path / "app"
        return await run_deploy_command(
            self.command,
            timeout=self.command_timeout,
            release_id=release.id,
            release_dir=release.path,
            action=action,
            frontend_root=self.frontend,
            app_dir=app_dir or (built if (built / ".next").is_dir() else None),
        )

    async def _finish(self, record: DeployRecord) -> CycleOutcome:
        ok = record.status == "success"
        payload = (
            DeployFailed(record=record)
            if not ok
            else ReleaseRolledBack(record=record)
            if record.action == "rollback"
            else ReleaseDeployed(record=record)
        )
        if record.action == "rollback":
            detail = f"rolled back to {record.release_id} (from {record.previous_release})"
        else:
            detail = f"release {record.release_id}: {record.files} files, {len(record.changed_files)} changed"
        if not ok:
            detail = f"{record.action} of {record.release_id} failed: {record.error}"
        await self.ctx.publish(
            payload,
            Summary(
                action=f"{record.action}_{'completed' if ok else 'failed'}",
                detail=detail[:500],
                result=record.status,
            ),
        )
        self._remember(record)
        return CycleOutcome(
            ok=ok,
            result="success" if ok else "failed",
            action=record.action,
            detail=detail[:500],
            output={"done": ok, **_compact(record), "current_release": self.store.current_id()},
        )

    # --- state ---------------------------------------------------------------------------------

    def _remember(self, record: DeployRecord) -> None:
        self.history.appendleft(record)
        self.total_deploys += 1
        self.failed_deploys += record.status != "success"
        if record.status == "success":
            self.pinned = record.release_id if record.action == "rollback" else None

    def _last_failed_tree(self) -> str | None:
        latest = self.history[0] if self.history else None
        if latest is not None and latest.action == "deploy" and latest.status == "failed":
            return latest.tree_sha256
        return None

    def _current(self) -> Release | None:
        try:
            return self.store.current()
        except ReleaseError:
            return None  # a dangling current link: the next release replaces it

    def _release_before(self, current_id: str | None) -> str | None:
        ids = self.store.ids()
        if current_id not in ids:
            return ids[-1] if ids else None
        position = ids.index(current_id)
        return ids[position - 1] if position > 0 else None

    def status_extras(self) -> dict[str, Any]:
        return {
            "deploy_history": [_compact(record) for record in list(self.history)[:IN_STATUS]],
            "is_deploying": self._deploying.locked(),
            "total_deploys": self.total_deploys,
            "failed_deploys": self.failed_deploys,
            "current_release": self.store.current_id(),
            "pinned_release": self.pinned,
        }

    def detail_extras(self) -> dict[str, Any]:
        return {
            "deploy_history": [msgspec.to_builtins(record) for record in self.history],
            "releases": self.store.ids(),
            "frontend_root": str(self.frontend),
            "releases_dir": str(self.store.root),
            "deploy_command": self.command,
            "deploy_build": self.build_mode,
        }


def _compact(record: DeployRecord) -> dict[str, Any]:
    """A history entry small enough for every heartbeat."""
    return {
        "release_id": record.release_id,
        "action": record.action,
        "status": record.status,
        "duration_ms": record.duration_ms,
        "started": record.started,
        "files": record.files,
        "changed": len(record.changed_files),
        "previous_release": record.previous_release,
        "exit_code": record.command.exit_code if record.command else None,
        "build": _compact_run(record.build),
        "error": record.error,
    }


def _command_failure(command: CommandRun | None) -> str:
    assert command is not None
    if command.timed_out:
        return f"deploy command timed out after {command.duration_ms / 1000:.1f} s"
    return f"deploy command exited with {command.exit_code}"


def _compact_run(run: CommandRun | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {"exit_code": run.exit_code, "timed_out": run.timed_out, "duration_ms": run.duration_ms}


def _reason(subject: str, data: bytes) -> str:
    """'requirement_deployed:<id>' or 'deploy_flagged' for the history."""
    kind = subject.rsplit(".", 1)[-1]
    with contextlib.suppress(Exception):
        payload = msgspec.json.decode(data).get("data", {})
        if payload.get("requirement_id"):
            return f"{kind}:{payload['requirement_id']}"
    return kind
