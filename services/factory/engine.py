"""Frontend Factory Engine — `frontend-factory`.

The story: page requirements arrive on the work queue ``AOC_FACTORY_INPUT`` (from the
gateway's POST or straight from NATS). While running, the factory takes them in:
validates each again, refuses a route that is already taken, and records
``requirement_submitted``. Every 10 s (or on trigger) it works through the pending
queue, most urgent first: ``requirement_generating``, render the TSX,
``requirement_generated`` (or ``requirement_failed``). On request it deploys a
generated page into the frontend tree (``requirement_deployed``, which the deploy
engine turns into a release) or cancels a requirement.

The factory is the single writer of requirement events and rebuilds its ledger from
them at start. Every state change happens under one lock: check the ledger, publish
the event, apply it — so two requests can never both move the same requirement.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, Unpack

import msgspec
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import AckPolicy, ConsumerConfig

from contracts import subjects
from contracts.events import Summary, new_id
from contracts.factory import (
    ACTOR_HEADER,
    CORRELATION_HEADER,
    INPUT_STREAM,
    INPUT_SUBJECTS,
    INTAKE_CONSUMER,
    ORIGIN_HEADER,
    REQUEST_VERBS,
    REQUIREMENT_ID,
    REQUIREMENT_ID_HEADER,
    FactoryReply,
    FactorySettings,
    FieldError,
    FrontendKitInstalled,
    RequirementCancelled,
    RequirementDeployed,
    RequirementFailed,
    RequirementGenerated,
    RequirementGenerating,
    RequirementRejected,
    RequirementSubmitted,
    encode,
    ensure_factory_streams,
    request_decoder,
    request_subject,
    validate_submission,
)
from contracts.factory.ledger import CANCEL_FROM, DEPLOY_FROM, GENERATE_FROM, Ledger, Requirement
from services.factory.frontend import FrontendTree, RefusedWrite
from services.factory.render import Renderer, complexity
from services.runtime import CycleOutcome, Engine, Loop
from services.runtime.context import EventMeta
from services.runtime.loops import stop_task
from services.shared.frontend_kit.install import install, installed_version, kit_version

NEXT_STEP = {
    "generating": "it is being generated right now",
    "generated": "it is generated already: preview and deploy it, or cancel it",
    "deployed": "it is deployed already",
    "cancelled": "it was cancelled; submit it again",
    "pending": "it has not been generated yet",
    "failed": "its last attempt failed: generate it again",
}


class Refused(Exception):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error


class FactoryEngine(Engine):
    slug = "frontend-factory"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.factory_settings = FactorySettings()
        self.tree = FrontendTree(self.factory_settings.frontend(settings))
        self.renderer = Renderer()
        self.ledger = Ledger()
        self._lock = asyncio.Lock()
        self._intake_task: asyncio.Task[None] | None = None
        self._taking_in = False
        self._subs: list[Any] = []

    def loops(self) -> list[Loop]:
        return [Loop("queue", self.interval("queue", 10), self.process_queue, primary=True)]

    # --- process lifetime -------------------------------------------------------------------

    async def setup(self) -> None:
        await self.ctx.declare(ensure_factory_streams)
        replayed = await self.ctx.replay(
            subjects.evt(self.slug, ">"), lambda seq, data, _at: self.ledger.apply_raw(seq, data)
        )
        self.ctx.log.info("factory.rebuilt", events=replayed, requirements=len(self.ledger.requirements))
        self._intake = await self.ctx.pull(
            INPUT_SUBJECTS,
            durable=INTAKE_CONSUMER,
            stream=INPUT_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_deliver=5, ack_wait=30),
        )
        for verb in REQUEST_VERBS:
            # one queue group: scaled-out factories share a request, like control commands
            self._subs.append(
                await self.ctx.serve(request_subject(verb), self._on_request, queue=f"aoc-{self.slug}")
            )

    async def teardown(self) -> None:
        # unsubscribe, not drain: a fetch cancelled by a stop leaves an item in the pull
        # subscription's queue that a drain would wait its whole timeout (30 s) for
        for sub in [*self._subs, self._intake]:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def on_start(self) -> None:
        await self._recover_interrupted()
        if await asyncio.to_thread(installed_version, self.tree.root) not in (None, kit_version()):
            # a newer AOC brought a newer kit: upgrade the tree now, not at the next deploy
            async with self._lock:
                with contextlib.suppress(RefusedWrite, OSError):  # the next deploy says why
                    await self._ensure_kit(actor=self.slug, correlation_id=new_id())
        self._taking_in = True
        self._intake_task = asyncio.create_task(self._take_in(), name="factory-intake")

    async def on_stop(self) -> None:
        # a stopped factory leaves submissions waiting in the work queue, durably
        self._taking_in = False
        await stop_task(self._intake_task)
        self._intake_task = None

    async def _recover_interrupted(self) -> None:
        """A requirement left 'generating' by a stop or crash fails, so it can be retried."""
        for requirement in self.ledger.in_status("generating"):
            async with self._lock:
                await self._record(
                    RequirementFailed(
                        requirement_id=requirement.id,
                        stage="generate",
                        error="interrupted: the factory stopped while generating; generate it again",
                    ),
                    Summary(
                        action="requirement_failed",
                        detail=f"{_name(requirement)}: interrupted",
                        result="failed",
                    ),
                )

    # --- intake: the work queue -------------------------------------------------------------

    async def _take_in(self) -> None:
        while self._taking_in:
            try:
                messages = await self._intake.fetch(batch=20, timeout=1.0)
            except (NatsTimeoutError, TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                self.ctx.log.exception("factory.intake_failed")
                await asyncio.sleep(1.0)
                continue
            for message in messages:
                try:
                    await self.take(message)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.ctx.log.exception("factory.submission_not_recorded")
                    await message.nak(delay=2.0)  # publishing failed: try again later

    async def take(self, message: Msg) -> None:
        """One submission from the queue: record it as submitted, or as rejected."""
        headers = message.headers or {}
        requirement_id = headers.get(REQUIREMENT_ID_HEADER) or new_id()
        actor = headers.get(ACTOR_HEADER) or "nats:anonymous"
        origin = headers.get(ORIGIN_HEADER) or "nats"
        correlation_id = headers.get(CORRELATION_HEADER) or requirement_id
        errors: list[FieldError] = []
        try:
            raw = json.loads(message.data)
        except ValueError as exc:
            raw, errors = None, [FieldError((), f"malformed JSON: {exc}", "json_invalid")]
        validation = validate_submission(raw) if not errors else None
        errors = errors or (validation.errors if validation else [])
        if not REQUIREMENT_ID.match(requirement_id):
            errors.append(FieldError(("headers", REQUIREMENT_ID_HEADER), "must be 1-64 of A-Z a-z 0-9 _ -"))
            requirement_id = new_id()

        async with self._lock:
            existing = self.ledger.get(requirement_id)
            if existing is not None and validation and existing.submission == validation.submission:
                await message.ack()  # a redelivery of what we already took in
                return
            reason = "invalid" if errors else None
            if existing is not None and not errors:
                reason, errors = "duplicate", [FieldError((), f"requirement id {requirement_id} is taken")]
            if not errors and validation and validation.submission:
                holder = self.ledger.holding_route(validation.submission.route)
                if holder is not None:
                    reason = "conflict"
                    taken = f"{holder.submission.route} already belongs to requirement {holder.id}"
                    errors = [FieldError(("route",), f"{taken} ({holder.status})")]
            if errors:
                detail = f"submission {requirement_id} refused ({reason}): {errors[0].msg}"
                await self._record(
                    RequirementRejected(
                        requirement_id=requirement_id,
                        reason=reason or "invalid",
                        errors=errors,
                        origin=origin,
                    ),
                    Summary(action="requirement_rejected", detail=detail[:500], result="rejected"),
                    actor=actor,
                    correlation_id=correlation_id,
                )
            else:
                submission = validation.submission  # type: ignore[union-attr]
                await self._record(
                    RequirementSubmitted(requirement_id=requirement_id, submission=submission, origin=origin),
                    Summary(
                        action="requirement_submitted",
                        detail=f"{submission.title!r} ({submission.page_type}) for {submission.route}"[:500],
                    ),
                    actor=actor,
                    correlation_id=correlation_id,
                    event_id=f"{requirement_id}-submitted",  # a retried publish is stored once
                )
            await message.ack()

    # --- the queue cycle -------------------------------------------------------------------

    async def process_queue(self) -> CycleOutcome:
        queue = self.ledger.pending()
        if not queue:
            return CycleOutcome(detail="queue empty", quiet=True, output=self.stats())
        generated: list[str] = []
        failed: list[str] = []
        for requirement in queue:
            async with self._lock:
                if requirement.status != "pending":
                    continue  # cancelled or generated by a request meanwhile
                await self._generate(requirement, actor=self.slug, correlation_id=requirement.id)
            (generated if requirement.status == "generated" else failed).append(requirement.id)
        detail = f"generated {len(generated)} of {len(queue)} queued requirements"
        if failed:
            detail += f"; {len(failed)} failed"
        return CycleOutcome(
            ok=not failed,
            result="failed" if failed else "success",
            action="factory_queue",
            detail=detail,
            output={"generated": generated, "failed": failed, **self.stats()},
        )

    async def trigger(self, args: dict[str, Any]) -> CycleOutcome:
        requirement_id = args.get("requirement_id")
        if not requirement_id:
            return await self.process_queue()
        try:
            reply = await self.generate(
                str(requirement_id), actor=self.slug, correlation_id=str(requirement_id)
            )
        except Refused as exc:
            # the operator asked for something the requirement's state does not allow: a
            # refusal, not a fault of the engine (a failed render is recorded as failed)
            ok = exc.error != "internal"
            return CycleOutcome(
                ok=ok, result="rejected" if ok else "failed", detail=str(exc), output={"error": exc.error}
            )
        return CycleOutcome(detail=f"generated {requirement_id}", output=reply)

    # --- the operations -------------------------------------------------------------------

    def _get(self, requirement_id: str, allowed: tuple[str, ...], verb: str) -> Requirement:
        requirement = self.ledger.get(requirement_id)
        if requirement is None:
            raise Refused("not_found", f"no requirement {requirement_id!r}")
        if requirement.status not in allowed:
            raise Refused(
                "conflict",
                f"cannot {verb} requirement {requirement_id}: it is {requirement.status} "
                f"({NEXT_STEP[requirement.status]}); {verb} works from {' or '.join(allowed)}",
            )
        return requirement

    async def generate(self, requirement_id: str, *, actor: str, correlation_id: str) -> dict[str, Any]:
        async with self._lock:
            requirement = self._get(requirement_id, GENERATE_FROM, "generate")
            seq = await self._generate(requirement, actor=actor, correlation_id=correlation_id)
        if requirement.status == "failed":
            raise Refused("internal", f"generation failed: {requirement.error}")
        return {"seq": seq}

    async def _generate(self, requirement: Requirement, *, actor: str, correlation_id: str) -> int:
        """Generating -> generated | failed, under the caller's lock. Returns the last seq."""
        submission = requirement.submission
        await self._record(
            RequirementGenerating(
                requirement_id=requirement.id, attempt=requirement.attempts + 1, template=submission.page_type
            ),
            Summary(action="requirement_generating", detail=_name(requirement)),
            actor=actor,
            correlation_id=correlation_id,
        )
        try:
            page = self.renderer.render(requirement.id, submission)
        except Exception as exc:  # a template bug must not wedge the queue
            self.ctx.log.exception("factory.render_failed", requirement=requirement.id)
            return await self._record(
                RequirementFailed(
                    requirement_id=requirement.id, stage="generate", error=f"{type(exc).__name__}: {exc}"
                ),
                Summary(
                    action="requirement_failed", detail=f"{_name(requirement)}: {exc}"[:500], result="failed"
                ),
                actor=actor,
                correlation_id=correlation_id,
            )
        return await self._record(
            RequirementGenerated(
                requirement_id=requirement.id,
                template=page.template,
                template_version=page.template_version,
                tsx_code=page.tsx_code,
                code_sha256=page.code_sha256,
                code_lines=page.code_lines,
                generation_time_ms=page.generation_time_ms,
                file_path=page.file_path,
                api_wiring=page.api_wiring,
                sidebar_entry=page.sidebar_entry,
            ),
            Summary(
                action="requirement_generated",
                detail=f"{_name(requirement)}: {page.code_lines} lines in {page.generation_time_ms:.2f} ms",
            ),
            actor=actor,
            correlation_id=correlation_id,
        )

    async def deploy(self, requirement_id: str, *, actor: str, correlation_id: str) -> dict[str, Any]:
        async with self._lock:
            requirement = self._get(requirement_id, DEPLOY_FROM, "deploy")
            generated = requirement.generated
            assert generated is not None
            try:
                # the first deploy into a tree installs the kit the page imports (and, for
                # an empty root, the Next.js app around it)
                await self._ensure_kit(actor=actor, correlation_id=correlation_id)
                written = await asyncio.to_thread(
                    self.tree.write_page, requirement.submission.route, generated.tsx_code, requirement.id
                )
                registry = await asyncio.to_thread(self.tree.register_sidebar, generated.sidebar_entry)
            except (RefusedWrite, OSError) as exc:
                refused = isinstance(exc, RefusedWrite)
                await self._record(
                    RequirementFailed(requirement_id=requirement.id, stage="deploy", error=str(exc)),
                    Summary(
                        action="requirement_failed",
                        detail=f"{_name(requirement)}: {exc}"[:500],
                        result="failed",
                    ),
                    actor=actor,
                    correlation_id=correlation_id,
                )
                raise Refused("conflict" if refused else "internal", f"deploy refused: {exc}") from None
            seq = await self._record(
                RequirementDeployed(
                    requirement_id=requirement.id,
                    route=requirement.submission.route,
                    file_path=written.file_path,
                    code_sha256=written.sha256,
                    bytes=written.bytes,
                    sidebar_registry=registry,
                    replaced=written.replaced,
                ),
                Summary(action="requirement_deployed", detail=f"{_name(requirement)} -> {written.file_path}"),
                actor=actor,
                correlation_id=correlation_id,
            )
        return {"seq": seq, "file_path": written.file_path, "sha256": written.sha256, "bytes": written.bytes}

    async def _ensure_kit(self, *, actor: str, correlation_id: str) -> None:
        """Install or upgrade the frontend kit when the tree's stamp is not this kit's;
        under the caller's lock. Records what changed as ``frontend_kit_installed``."""
        if await asyncio.to_thread(installed_version, self.tree.root) == kit_version():
            return
        report = await asyncio.to_thread(install, self.tree.root)
        self.ctx.log.info("factory.kit_installed", **report.as_dict())
        if report.changed:
            await self._record(
                FrontendKitInstalled(
                    version=report.version,
                    previous_version=report.previous_version,
                    bootstrapped=report.bootstrapped,
                    written=report.written[:200],
                    removed=report.removed[:200],
                    kept=dict(list(report.kept.items())[:200]),
                ),
                Summary(
                    action="frontend_kit_installed",
                    detail=f"kit {report.version} in {self.tree.root}: {len(report.written)} written, "
                    f"{len(report.kept)} kept, {len(report.removed)} removed"[:500],
                ),
                actor=actor,
                correlation_id=correlation_id,
            )

    async def cancel(
        self, requirement_id: str, *, actor: str, correlation_id: str, reason: str
    ) -> dict[str, Any]:
        async with self._lock:
            requirement = self._get(requirement_id, CANCEL_FROM, "cancel")
            previous = requirement.status
            seq = await self._record(
                RequirementCancelled(requirement_id=requirement.id, previous_status=previous, reason=reason),
                Summary(
                    action="requirement_cancelled", detail=f"{_name(requirement)} ({previous}) {reason}"[:500]
                ),
                actor=actor,
                correlation_id=correlation_id,
            )
        return {"seq": seq}

    def preview(self, raw: Any) -> dict[str, Any]:
        """One-shot: validate and render without recording anything."""
        validation = validate_submission(raw)
        result: dict[str, Any] = {"valid": validation.ok, "validation": validation.as_dict()}
        if validation.submission is None:
            return {**result, "tsx_code": None, "complexity": None}
        page = self.renderer.render("preview", validation.submission)
        return {
            **result,
            "tsx_code": page.tsx_code,
            "code_lines": page.code_lines,
            "generation_time_ms": page.generation_time_ms,
            "template_version": page.template_version,
            "file_path": page.file_path,
            "api_wiring": page.api_wiring,
            "sidebar_entry": page.sidebar_entry,
            "complexity": complexity(validation.submission, page.tsx_code),
        }

    # --- request/reply on aoc.factory.<verb> ---------------------------------------------------

    async def _on_request(self, msg: Msg) -> None:
        reply = await self.answer(msg.subject.rsplit(".", 1)[-1], msg.data)
        if msg.reply:
            await msg.respond(encode(reply))

    async def answer(self, verb: str, body: bytes) -> FactoryReply:
        if verb == "preview":
            try:
                raw = json.loads(body)
            except ValueError as exc:
                return FactoryReply(ok=False, error="invalid", message=f"malformed JSON: {exc}")
            return FactoryReply(ok=True, message="preview rendered", result=self.preview(raw))
        try:
            request = request_decoder.decode(body)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            return FactoryReply(ok=False, error="invalid", message=f"invalid request: {exc}")
        if not self.ctx.running:
            return FactoryReply(
                ok=False,
                error="not_running",
                message=f"{self.info.label} is {self.ctx.state}; start it before you {verb}",
            )
        kwargs = {"actor": request.actor, "correlation_id": request.correlation_id or new_id()}
        try:
            if verb == "generate":
                result = await self.generate(request.requirement_id, **kwargs)
            elif verb == "deploy":
                result = await self.deploy(request.requirement_id, **kwargs)
            else:
                result = await self.cancel(request.requirement_id, reason=request.reason, **kwargs)
            ok, error, message = True, None, ""
        except Refused as exc:
            result, ok, error, message = {}, False, exc.error, str(exc)
        except Exception as exc:
            self.ctx.log.exception("factory.request_failed", verb=verb)
            return FactoryReply(
                ok=False, error="internal", message=f"{verb} failed: {type(exc).__name__}: {exc}"
            )
        requirement = self.ledger.get(request.requirement_id)
        return FactoryReply(
            ok=ok,
            error=error,
            message=message
            or f"requirement {request.requirement_id} {requirement.status if requirement else verb}",
            requirement=requirement.detail() if requirement else None,
            seq=result.pop("seq", requirement.seq if requirement else 0),
            result=result or None,
        )

    # --- events -------------------------------------------------------------------------------

    async def _record(self, payload: msgspec.Struct, summary: Summary, **meta: Unpack[EventMeta]) -> int:
        """Publish an event (acked by the stream) and apply it; returns its stream sequence."""
        event = self.ctx.new_event(payload, summary, **meta)
        ack = await self.ctx.publish_event(event)
        self.ledger.apply(ack.seq, event)
        return ack.seq

    # --- status ---------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return self.ledger.stats()

    def status_extras(self) -> dict[str, Any]:
        stats = self.ledger.stats()
        return {
            "total_requirements": stats["total_requirements"],
            "total_generated": stats["total_generated"],
            "total_deployed": stats["total_deployed"],
            "success_rate_pct": stats["success_rate"],
            "total_failed": stats["total_failed"],
            "queue_depth": stats["queue_depth"],
            "avg_generation_time_ms": stats["avg_generation_time_ms"],
        }

    def detail_extras(self) -> dict[str, Any]:
        recent = list(self.ledger.requirements.values())[-10:]
        return {
            "stats": self.ledger.stats(),
            "frontend_root": str(self.tree.root),
            "template_versions": self.renderer.versions,
            "recent_requirements": [r.summary() for r in reversed(recent)],
        }


def _name(requirement: Requirement) -> str:
    return f"{requirement.submission.title!r} ({requirement.id[:12]})"
