"""Platform Integrity Monitor — `integrity-scan`.

The story: every 30 minutes (or on trigger) the scan asks the gateway which API routes
it serves (``aoc.gateway.routes``) and reads the pages in the frontend tree. It reports
API list resources that no page shows and pages wired to endpoints the gateway does not
serve. For a missing list page whose record fields are known, it files a data-table
requirement with the factory (once per route: the factory's ledger says whether that
route was ever asked for). It flags the deploy engine (``deploy_flagged``) when the tree
differs from the current release, or generated pages wait to be deployed.

The findings are the output of the scan's ``cycle_completed`` event, which is also where
``total_scans`` and ``pages_generated`` resume from after a restart.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import msgspec
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from contracts import subjects
from contracts.events import CycleCompleted, Summary, envelope_decoder
from contracts.factory import (
    ACTOR_HEADER,
    CORRELATION_HEADER,
    DEPLOY,
    FACTORY,
    GATEWAY_ROUTES,
    ORIGIN_HEADER,
    REQUIREMENT_ID_HEADER,
    SUBMIT_SUBJECT,
    DeployFlagged,
    FactorySettings,
    ReleaseDeployed,
    ReleaseRolledBack,
    encode,
    ensure_factory_streams,
    routes_decoder,
    tree_digest,
    validate_submission,
)
from contracts.factory.ledger import Ledger
from services.integrity.inventory import compare, scan_pages, submission_for
from services.runtime import CycleOutcome, Engine, Loop
from services.runtime.loops import stop_task
from services.shared.frontend_kit.files import scan_tree

# requirement ids the scan files are derived from the route: filing twice is harmless
FILING_NAMESPACE = uuid.UUID("3f6c2a4e-1b7d-4c1a-9e8f-1a2b3c4d5e6f")
ROUTES_TIMEOUT = 2.0  # a gateway that is there answers at once
GATEWAY_POLL = 2.0  # after a scan found no gateway: how often to look for one


class IntegrityEngine(Engine):
    slug = "integrity-scan"

    def __init__(self, settings) -> None:
        super().__init__(settings)
        self.frontend = FactorySettings().frontend(settings)
        self.ledger = Ledger()  # the factory's requirements, caught up before each scan
        self.total_scans = 0
        self.pages_generated = 0  # requirements this scan filed, over its whole life
        self.pending_deploy = False
        self.last_findings: dict[str, Any] = {}
        self._filed: set[str] = set()  # routes filed by this process (maybe not taken in yet)
        self._awaiting_gateway: asyncio.Task[None] | None = None
        self._running = False

    def loops(self) -> list[Loop]:
        return [Loop("scan", self.interval("scan", 1800), self.scan, primary=True)]

    async def setup(self) -> None:
        await self.ctx.declare(ensure_factory_streams)
        raw = await self.ctx.last(subjects.evt(self.slug, CycleCompleted.TYPE))
        if raw is None:
            return
        output = envelope_decoder.decode(raw.data).payload().output
        self.total_scans = int(output.get("total_scans", 0))
        self.pages_generated = int(output.get("pages_generated", 0))
        self.pending_deploy = bool(output.get("pending_deploy", False))

    # --- one scan ----------------------------------------------------------------------------

    async def on_start(self) -> None:
        self._running = True

    async def on_stop(self) -> None:
        self._running = False
        await stop_task(self._awaiting_gateway)
        self._awaiting_gateway = None

    async def _gateway_routes(self) -> list[Any] | None:
        """The gateway's routes; None when no gateway is up."""
        try:
            reply = await self.ctx.request(GATEWAY_ROUTES, b"", timeout=ROUTES_TIMEOUT)
        except NoRespondersError:
            return None
        return routes_decoder.decode(reply.data).routes

    def _scan_once_the_gateway_answers(self) -> None:
        # engines and the gateway start together, and the first scan may beat it: rather
        # than wait 30 minutes for the next one, scan as soon as a gateway answers
        watcher = self._awaiting_gateway
        if watcher is not None and not watcher.done() and watcher is not asyncio.current_task():
            return

        async def watch() -> None:
            # polling, not an event: the gateway is another process, its arrival is not signalled
            for _attempt in itertools.count():
                if not self._running:
                    return
                if not await self._gateway_absent():
                    break
                await asyncio.sleep(GATEWAY_POLL)
            if self._running:
                await self.ctx.run_cycle(self.primary_loop())

        self._awaiting_gateway = asyncio.create_task(watch(), name="integrity-awaiting-gateway")

    async def _gateway_absent(self) -> bool:
        try:
            await self.ctx.request(GATEWAY_ROUTES, b"", timeout=ROUTES_TIMEOUT)
        except NoRespondersError:
            return True
        except (NatsTimeoutError, TimeoutError):
            return False  # there, if slow: the scan will say so
        return False

    async def scan(self) -> CycleOutcome:
        try:
            routes = await self._gateway_routes()
        except (NatsTimeoutError, TimeoutError, msgspec.DecodeError) as exc:
            # a gateway that is there but does not answer properly: the scan failed
            return CycleOutcome(
                ok=False,
                result="failed",
                action="integrity_scan",
                detail=f"the gateway did not answer {GATEWAY_ROUTES} properly: {type(exc).__name__}",
            )
        if routes is None:
            # no gateway at all is heal-check's finding, not a fault of this engine
            self._scan_once_the_gateway_answers()
            return CycleOutcome(
                result="skipped",
                action="integrity_scan",
                detail="no gateway answers; nothing to compare the frontend with",
                quiet=True,
            )
        await self.ctx.replay(
            subjects.evt(FACTORY, ">"),
            lambda seq, data, _at: self.ledger.apply_raw(seq, data),
            start_seq=self.ledger.applied_seq + 1,
        )
        pages = await asyncio.to_thread(scan_pages, self.frontend)
        findings = compare(routes, pages)

        filed = []
        for resource in findings.missing_pages:
            submission = submission_for(resource)
            if (
                submission is None
                or resource.page_route in self._filed
                or self._asked_for(resource.page_route)
            ):
                continue
            if await self._file(submission):
                self._filed.add(resource.page_route)
                filed.append(resource.page_route)

        waiting = [r.id for r in self.ledger.in_status("generated")]
        tree = await asyncio.to_thread(scan_tree, self.frontend)
        digest = tree_digest(tree)
        released, release_id = await self._released_tree()
        tree_changed = bool(tree) and digest != released
        self.pending_deploy = bool(waiting) or tree_changed
        if self.pending_deploy:
            await self.ctx.publish(
                DeployFlagged(
                    tree_changed=tree_changed,
                    tree_sha256=digest,
                    waiting_requirements=waiting,
                    current_release=release_id,
                ),
                Summary(
                    action="deploy_flagged",
                    detail=(
                        ("the frontend tree differs from the current release" if tree_changed else "")
                        + ("; " if tree_changed and waiting else "")
                        + (f"{len(waiting)} generated page(s) wait to be deployed" if waiting else "")
                    ),
                    result="flagged",
                ),
            )

        self.total_scans += 1
        self.pages_generated += len(filed)
        self.last_findings = {
            **findings.as_dict(),
            "routes": len(routes),
            "filed": filed,
            "waiting_requirements": waiting,
            "tree_changed": tree_changed,
        }
        detail = f"Scanned {len(routes)} routes, {len(pages)} pages, generated {len(filed)} pages"
        if findings.missing_pages:
            detail += f"; {len(findings.missing_pages)} API resource(s) without a page"
        if findings.broken_pages:
            detail += f"; {len(findings.broken_pages)} page(s) wired to missing endpoints"
        if self.pending_deploy:
            detail += "; deploy flagged"
        return CycleOutcome(
            action="integrity_scan",
            detail=detail,
            output={
                **self.last_findings,
                "total_scans": self.total_scans,
                "pages_generated": self.pages_generated,
                "pending_deploy": self.pending_deploy,
            },
        )

    def _asked_for(self, route: str) -> bool:
        """Any requirement for this route, in any status: a cancelled one was an operator's no."""
        return any(r.submission.route == route for r in self.ledger.requirements.values())

    async def _file(self, submission: dict[str, Any]) -> bool:
        validation = validate_submission(submission)
        if validation.submission is None:
            self.ctx.log.warning(
                "integrity.unfileable", route=submission["route"], errors=len(validation.errors)
            )
            return False
        requirement_id = uuid.uuid5(FILING_NAMESPACE, submission["route"]).hex
        headers = {
            REQUIREMENT_ID_HEADER: requirement_id,
            ACTOR_HEADER: self.slug,
            ORIGIN_HEADER: self.slug,
            CORRELATION_HEADER: requirement_id,
        }
        await self.ctx.enqueue(
            SUBMIT_SUBJECT, encode(validation.submission), msg_id=requirement_id, headers=headers
        )
        return True

    async def _released_tree(self) -> tuple[str | None, str | None]:
        """(tree digest, release id) of the deploy engine's latest release or rollback."""
        latest: tuple[int, Any] | None = None
        for kind in (ReleaseDeployed, ReleaseRolledBack):
            raw = await self.ctx.last(subjects.evt(DEPLOY, kind.TYPE))
            if raw is None:
                continue
            if latest is None or raw.seq > latest[0]:
                event = envelope_decoder.decode(raw.data)
                latest = (raw.seq, msgspec.json.decode(event.data, type=kind).record)
        if latest is None:
            return None, None
        return latest[1].tree_sha256, latest[1].release_id

    def status_extras(self) -> dict[str, Any]:
        return {
            "total_scans": self.total_scans,
            "pages_generated": self.pages_generated,
            "pending_deploy": self.pending_deploy,
        }

    def detail_extras(self) -> dict[str, Any]:
        return {"last_findings": self.last_findings, "frontend_root": str(self.frontend)}
