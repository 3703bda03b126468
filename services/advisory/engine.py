"""Threat Advisory Engine — `advisory-refresh`.

Every refresh:
1. reads the feeds file and the asset inventory (edits apply at the next refresh);
2. fetches each due feed — a file, or HTTP through the allowlist + SSRF guard, with
   retries, ETag / Last-Modified and the content hash — and parses it in its real format;
3. keeps only items at or past the feed's watermark;
4. folds them into the advisories they name (dedupe by CVE), re-derives priority and the
   recommended action against the inventory, and writes only advisories whose content
   changed to KV ``aoc_advisories`` (what the SOC's threat hunting reads), announcing
   each with an ``advisory_published`` event;
5. then, and only then, stores each feed's new state (health, validators, watermark), so
   a crash mid-refresh refetches rather than loses items.

A failing feed (unreachable, refused, malformed) is marked failing with the reason and
keeps its last good state; the other feeds refresh as usual.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from typing import Any

import msgspec
import structlog

from contracts.advisory import (
    PRIORITIES,
    Advisory,
    AdvisoryPublished,
    FeedHealthChanged,
    FeedItem,
    FeedState,
)
from contracts.events import Summary, utcnow
from contracts.settings import Settings
from services.advisory import feedstate
from services.advisory.config import (
    AdvisorySettings,
    ConfigError,
    FeedConfig,
    FeedsFile,
    load_feeds,
    load_inventory,
)
from services.advisory.fetch import FeedFetcher, FetchFailed, pinned_client
from services.advisory.parsers import FeedParseError, parse_feed
from services.advisory.store import AdvisoryStore
from services.advisory.synthesis import Change, Inventory, synthesize
from services.runtime import CycleOutcome, Engine, Loop
from services.shared.egress import AddressPolicy, FetchRefused, Resolver, UrlGuard, system_resolver

log = structlog.get_logger()

DEFAULT_REFRESH_S = 1800.0


class FeedRun(msgspec.Struct, kw_only=True):
    """What refreshing one feed produced (nothing is stored yet)."""

    feed: str
    state: FeedState
    items: list[FeedItem] = []
    error: str | None = None


class AdvisoryEngine(Engine):
    slug = "advisory-refresh"

    def __init__(
        self,
        settings: Settings,
        config: AdvisorySettings | None = None,
        *,
        resolver: Resolver = system_resolver,
    ) -> None:
        super().__init__(settings)
        self.config = config or AdvisorySettings()
        self.resolver = resolver
        self.advisories: dict[str, Advisory] = {}
        self.feed_states: dict[str, FeedState] = {}
        self.feeds: FeedsFile | None = None
        self.config_error: str | None = None
        self.last_refresh: dict[str, Any] = {}
        self._inventory_sha: str | None = None  # the inventory the stored priorities were derived with
        self._load_feeds()

    # --- configuration ------------------------------------------------------------------

    def _load_feeds(self) -> FeedsFile | None:
        try:
            self.feeds = load_feeds(self.config.feeds_file)
            self.config_error = None
        except ConfigError as exc:
            self.config_error = str(exc)
            log.error("advisory.config_invalid", error=self.config_error)
        return self.feeds

    def _guard(self, feeds: FeedsFile) -> UrlGuard:
        return UrlGuard(
            allowed_hosts=frozenset([*feeds.allowed_hosts, *self.config.extra_allowed_hosts]),
            policy=AddressPolicy.from_strings(self.config.ssrf_allow_networks),
            allow_plain_http=self.config.allow_plain_http,
            resolver=self.resolver,
        )

    def loops(self) -> list[Loop]:
        schedules = [
            feed.schedule_seconds for feed in (self.feeds.feeds if self.feeds else []) if feed.enabled
        ]
        tick = min([DEFAULT_REFRESH_S, *schedules])  # often enough for the most frequent feed
        return [Loop("refresh", self.interval("refresh", tick), self.scheduled_refresh, primary=True)]

    # --- lifetime -------------------------------------------------------------------------

    async def setup(self) -> None:
        self.store = AdvisoryStore(self.ctx)
        await self.store.open()
        self.advisories = await self.store.load_advisories()
        self.feed_states = await self.store.load_feed_states()
        self.http = pinned_client(self.config)

    async def teardown(self) -> None:
        await self.http.aclose()

    # --- the work ---------------------------------------------------------------------------

    async def scheduled_refresh(self) -> CycleOutcome:
        return await self.refresh(force=False)

    async def trigger(self, args: dict[str, Any]) -> CycleOutcome:
        """A refresh of every feed now; args: ``feeds`` (names) to limit it, ``full`` to
        ignore validators and watermarks (re-read everything)."""
        names = args.get("feeds")
        return await self.refresh(force=True, only=set(names) if names else None, full=bool(args.get("full")))

    async def refresh(self, *, force: bool, only: set[str] | None = None, full: bool = False) -> CycleOutcome:
        feeds = self._load_feeds()
        if feeds is None:
            return CycleOutcome(ok=False, result="failed", detail=self.config_error or "no feeds config")
        try:
            assets = load_inventory(self.config.inventory_file)
        except ConfigError as exc:
            return CycleOutcome(ok=False, result="failed", detail=str(exc))
        inventory_sha = hashlib.sha256(msgspec.json.encode(assets)).hexdigest()

        now = utcnow()
        states = {
            feed.name: feedstate.configured(self.feed_states.get(feed.name) or feedstate.initial(feed), feed)
            for feed in feeds.feeds
        }
        due = [
            feed
            for feed in feeds.feeds
            if feed.enabled
            and (only is None or feed.name in only)
            and (force or feedstate.is_due(states[feed.name], now))
        ]
        if not due and inventory_sha == self._inventory_sha:
            return CycleOutcome(detail="no feed due", quiet=True, output={"feeds": {}})

        fetcher = FeedFetcher(self.config, self._guard(feeds), client=self.http)
        limit = asyncio.Semaphore(self.config.refresh_concurrency)

        async def run(feed: FeedConfig) -> FeedRun:
            async with limit:
                return await self._refresh_feed(fetcher, feed, states[feed.name], full=full)

        runs = await asyncio.gather(*(run(feed) for feed in due))

        rederive = list(self.advisories) if inventory_sha != self._inventory_sha else []
        batch = [(r.feed, item) for r in runs for item in r.items]
        changes = synthesize(batch, self.advisories, Inventory(assets), utcnow(), rederive=rederive)
        await self.store.put_advisories([change.advisory for change in changes])
        for change in changes:
            self.advisories[change.advisory.id] = change.advisory
        self._inventory_sha = inventory_sha
        await self._announce(changes)

        previous = dict(self.feed_states)
        new_states = [r.state for r in runs]
        await self.store.put_feed_states(new_states)
        removed = [name for name in self.feed_states if name not in states]  # dropped from the config
        await self.store.delete_feed_states(removed)
        for name in removed:
            del self.feed_states[name]
        self.feed_states.update({state.name: state for state in new_states})
        await self._announce_feed_health(previous, new_states)
        return self._outcome(runs, changes, manual=force)

    async def _refresh_feed(
        self, fetcher: FeedFetcher, feed: FeedConfig, state: FeedState, *, full: bool
    ) -> FeedRun:
        started = utcnow()
        try:
            fetched = await fetcher.fetch(feed, state, conditional=not full)
            if fetched.not_modified:
                new_state = feedstate.succeeded(
                    state,
                    started,
                    items=None,
                    fresh=0,
                    etag=fetched.etag,
                    last_modified=fetched.last_modified,
                    content_sha256=fetched.content_sha256,
                )
                return FeedRun(feed=feed.name, state=new_state)
            assert fetched.body is not None
            # parsing a large feed is CPU work: off the loop, so heartbeats and control go on
            items = await asyncio.to_thread(parse_feed, feed.format, fetched.body)
            fresh = feedstate.unseen(items, None if full else state.watermark)
            new_state = feedstate.succeeded(
                state,
                started,
                items=items,
                fresh=len(fresh),
                etag=fetched.etag,
                last_modified=fetched.last_modified,
                content_sha256=fetched.content_sha256,
            )
            return FeedRun(feed=feed.name, state=new_state, items=fresh)
        except (FetchRefused, FetchFailed, FeedParseError) as exc:
            error = str(exc)
        except Exception as exc:  # a parser or library surprise must not end the other feeds' refresh
            log.exception("advisory.feed_failed", feed=feed.name)
            error = f"{type(exc).__name__}: {exc}"
        return FeedRun(feed=feed.name, state=feedstate.failed(state, started, error), error=error)

    # --- what it says -----------------------------------------------------------------------

    async def _announce(self, changes: list[Change]) -> None:
        publishes = []
        for change in changes:
            advisory = change.advisory
            verb = "new" if change.change == "new" else f"updated (was {change.previous_priority})"
            detail = f"{advisory.priority} {verb}: {advisory.id} — {advisory.title}"
            if advisory.affected_assets:
                detail += f"; affects {', '.join(advisory.affected_assets)}"
            payload = AdvisoryPublished(
                advisory_id=advisory.id,
                change=change.change,
                priority=advisory.priority,
                previous_priority=change.previous_priority,
                known_exploited=advisory.known_exploited,
                cvss=advisory.cvss,
                affected_assets=advisory.affected_assets,
                sources=advisory.sources,
            )
            summary = Summary(action="advisory_published", detail=detail[:4000], result="success")
            publishes.append(self.ctx.publish(payload, summary))
        await asyncio.gather(*publishes)

    async def _announce_feed_health(self, previous: dict[str, FeedState], states: list[FeedState]) -> None:
        for state in states:
            before = previous.get(state.name)
            was_failing = before is not None and before.status == feedstate.FAILING
            now_failing = state.status == feedstate.FAILING
            if was_failing == now_failing and before is not None:
                continue
            if before is None and not now_failing:
                continue  # a first good fetch is not news; the cycle event says it
            payload = FeedHealthChanged(
                feed=state.name,
                status=state.status,
                previous=before.status if before else "pending",
                error=state.last_error,
            )
            if now_failing:
                summary = Summary(
                    action="feed_failing", detail=f"{state.name}: {state.last_error}", result="failed"
                )
            else:
                summary = Summary(action="feed_recovered", detail=f"{state.name} is fetched again")
            await self.ctx.publish(payload, summary)

    def _outcome(self, runs: list[FeedRun], changes: list[Change], *, manual: bool) -> CycleOutcome:
        failing = [run for run in runs if run.error]
        new = sum(change.change == "new" for change in changes)
        updated = len(changes) - new
        urgent = [c.advisory.id for c in changes if c.advisory.priority == "critical"]
        feeds = {run.feed: {"status": run.state.status, "new_items": run.state.new_items} for run in runs}
        for run in failing:
            feeds[run.feed]["error"] = run.error
        statuses = Counter(run.state.status for run in runs)
        by_status = ", ".join(f"{count} {status}" for status, count in sorted(statuses.items())) or "none due"
        detail = f"{len(runs)} feeds ({by_status}); {new} new, {updated} updated advisories"
        if urgent:
            detail += f" ({len(urgent)} critical: {', '.join(urgent[:5])})"
        if failing:
            detail += "; failing: " + "; ".join(f"{run.feed}: {run.error}" for run in failing)
        result = "success" if not failing else ("failed" if len(failing) == len(runs) else "partial")
        self.last_refresh = {
            "time": utcnow().isoformat(),
            "result": result,
            "new": new,
            "updated": updated,
            "feeds": feeds,
        }
        return CycleOutcome(
            ok=not failing,
            result=result,
            detail=detail,
            action="advisory_refresh",
            quiet=not manual and not changes and not failing,
            output={
                "feeds": feeds,
                "new": new,
                "updated": updated,
                "changed": [change.advisory.id for change in changes][:100],
                "critical": urgent[:100],
                "total_advisories": len(self.advisories),
                "by_priority": self._by_priority(),
            },
        )

    def _by_priority(self) -> dict[str, int]:
        counts = Counter(advisory.priority for advisory in self.advisories.values())
        return {priority: counts.get(priority, 0) for priority in PRIORITIES}

    def status_extras(self) -> dict[str, Any]:
        configured = self.feeds.feeds if self.feeds else []
        return {
            "total_advisories": len(self.advisories),
            "feed_count": len(configured),
            "feeds_failing": sum(
                self.feed_states.get(feed.name, feedstate.initial(feed)).status == feedstate.FAILING
                for feed in configured
            ),
            "advisories_by_priority": self._by_priority(),
            "feeds": {
                feed.name: feedstate.health(self.feed_states.get(feed.name) or feedstate.initial(feed))
                for feed in configured
            },
        }

    def detail_extras(self) -> dict[str, Any]:
        configured = self.feeds.feeds if self.feeds else []
        return {
            "config_error": self.config_error,
            "feeds_file": str(self.config.feeds_file),
            "inventory_file": str(self.config.inventory_file),
            "feed_states": [
                msgspec.to_builtins(self.feed_states.get(feed.name) or feedstate.initial(feed))
                for feed in configured
            ],
            "last_refresh": self.last_refresh,
            "top_advisories": [
                {"id": a.id, "priority": a.priority, "title": a.title, "affected_assets": a.affected_assets}
                for a in sorted(self.advisories.values(), key=_urgency)[:10]
            ],
        }


def _urgency(advisory: Advisory) -> tuple:
    return (
        PRIORITIES.index(advisory.priority),
        not advisory.known_exploited,
        -(advisory.cvss or 0),
        advisory.id,
    )
