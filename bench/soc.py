"""SOC throughput: alerts/s end to end through NATS with scoring, against a raw
publish/consume baseline measured in the same run.

Starts the real processes (nats-server, ml-retrain, soc-cycle, the gateway), waits for
the bootstrapped model, then measures with the same pre-generated alerts:

  raw       the baseline: the same queue messages published to a scratch work-queue
            stream and pulled + acked by one consumer; no decoding, no scoring.
  nats      alerts published to aoc.q.soc.alerts (packed like the gateway packs them),
            timed until the last decision event is stored.
  intake    the same through `nats req aoc.in.soc.alerts` (the SOC's FastStream intake
            subscriber validates, queues, replies), batches of --batch, --concurrency in
            flight, timed until the last reply with triage stopped (then it must decide all).
            Measured after the other paths once the SOC is quiet. A full GC pass of
            soc-cycle (0.2-2 s on this machine once it holds 20,000 decisions) can land in
            its window of a few seconds: run it twice before believing a drop.
  eve       Suricata EVE records (made from generated alerts) through
            aoc.in.soc.alerts.suricata-eve: the format mapping on top of the intake.
  api       the same through POST /api/v1/soc/alerts (batches of --batch, --concurrency in
            flight), timed until the last decision; checks N alerts -> N distinct decisions.
  scoring   for reference: feature extraction + the three models in this process only.

Then 100 analyst verdicts through POST /api/v1/soc/feedback, timed until ml-retrain has
retrained and the SOC scores with the new version.

    .venv/bin/python bench/soc.py                      # always, then 1s
    .venv/bin/python bench/soc.py --sync always --alerts 20000
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx
import msgspec
import nats
import psutil
from _common import (
    AUTH,
    Children,
    ForeignCpu,
    add_stack_options,
    child_env,
    load_average,
    machine_facts,
    nats_server,
    parse_stack_args,
    print_table,
    run_stack_benchmark,
    verdict,
)
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy, RetentionPolicy, StreamConfig

from contracts import ml, soc, subjects
from services.launcher.natsserver import free_port
from services.ml.generator import LabelledAlert, generate
from services.ml.models import ModelSizes, train
from services.ml.pipeline import Dataset
from services.shared.triage.bundle import score
from services.shared.triage.features import extract_batch
from services.soc.config import SocConfig

TARGET = 5000.0  # alerts/s end to end (issue #4)
BATCH_TARGET = 25_000.0  # alerts/s through NATS with triage in batches (issue 17)
RAW_STREAM, RAW_SUBJECT = "BENCH_RAW_QUEUE", "bench.raw.alerts"


class _AlertId(msgspec.Struct):
    id: str


class _Decided(msgspec.Struct):
    alert: _AlertId
    decision: str
    model_version: str


class _Decisions(msgspec.Struct):
    decisions: list[_Decided]


class _TriagedEvent(msgspec.Struct):
    data: _Decisions


# what the counter reads of a decision event and nothing more: the instrument shares the
# two cores with what it measures (a decode into dicts cost it ~4 µs per decision)
_decode_triaged = msgspec.json.Decoder(_TriagedEvent).decode


class DecisionCounter:
    """Follows the SOC's decision events (from now on) and counts decided alerts, and its
    playbook runs (SOAR: one per containment that a playbook matches)."""

    def __init__(self, nc: Client) -> None:
        self.js = nc.jetstream()
        self.ids: set[str] = set()
        self.decisions = 0
        self.contained = 0
        self.versions: dict[str, int] = {}
        self.playbook_times: list[float] = []
        self._changed = asyncio.Event()

    async def start(self) -> DecisionCounter:
        async def on_event(msg) -> None:
            for decision in _decode_triaged(msg.data).data.decisions:
                self.decisions += 1
                self.ids.add(decision.alert.id)
                version = decision.model_version
                self.versions[version] = self.versions.get(version, 0) + 1
                self.contained += decision.decision == "contain"
            self._changed.set()

        async def on_playbook(_msg) -> None:
            self.playbook_times.append(time.perf_counter())

        self.sub = await self.js.subscribe(
            subjects.evt("soc-cycle", soc.AlertsTriaged.TYPE),
            ordered_consumer=True,
            cb=on_event,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        )
        self.playbook_sub = await self.js.subscribe(
            subjects.evt("soc-cycle", soc.PlaybookExecuted.TYPE),
            ordered_consumer=True,
            cb=on_playbook,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        )
        return self

    async def soar(self, still: float = 2.0, timeout: float = 120.0) -> str:
        """Once the playbook runs have stopped coming (SOAR runs every 5 s): how many, and
        how fast they were stored, first to last."""
        deadline = time.monotonic() + timeout
        seen, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            if len(self.playbook_times) != seen:
                seen, since = len(self.playbook_times), time.monotonic()
            elif seen and time.monotonic() - since >= still:
                break
            await asyncio.sleep(0.1)
        # one SOAR cycle stores its runs in one burst; the largest burst gives the rate
        bursts: list[list[float]] = []
        for at in self.playbook_times:
            if bursts and at - bursts[-1][-1] < 0.5:
                bursts[-1].append(at)
            else:
                bursts.append([at])
        largest = max(bursts, key=len, default=[])
        span = largest[-1] - largest[0] if len(largest) > 1 else 0.0
        rate = f"{len(largest) / span:,.0f} runs/s" if span > 0 else "not timed"
        return (
            f"SOAR: {len(self.playbook_times)} playbook runs for {self.contained} containments; "
            f"the largest cycle stored {len(largest)} at {rate}"
        )

    async def until(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.decisions < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.decisions}/{count} decisions after {timeout:g}s")
            self._changed.clear()
            try:
                async with asyncio.timeout(min(remaining, 1.0)):
                    await self._changed.wait()
            except TimeoutError:
                continue


async def publish_all(nc: Client, subject: str, messages: list[tuple[str, bytes]], window: int = 64) -> None:
    js = nc.jetstream()
    for start in range(0, len(messages), window):
        chunk = messages[start : start + window]
        await asyncio.gather(
            *(
                js.publish(subject, body, headers={"Nats-Msg-Id": msg_id}, timeout=30)
                for msg_id, body in chunk
            )
        )


async def measure_raw(nc: Client, messages: list[tuple[str, bytes]], total: int) -> float:
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(name=RAW_STREAM, subjects=[RAW_SUBJECT], retention=RetentionPolicy.WORK_QUEUE)
    )
    sub = await js.pull_subscribe(RAW_SUBJECT, durable="bench-raw", stream=RAW_STREAM)
    bodies = {msg_id: body for msg_id, body in messages}
    sizes = {msg_id: body.count(b'"source"') for msg_id, body in messages}  # alerts per message
    consumed = 0

    async def consume() -> None:
        nonlocal consumed
        while consumed < total:
            try:
                batch = await sub.fetch(256, timeout=1)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            for msg in batch:
                consumed += sizes[msg.headers["Nats-Msg-Id"]]
                await msg.ack()

    started = time.perf_counter()
    consumer = asyncio.create_task(consume())
    await publish_all(nc, RAW_SUBJECT, list(bodies.items()))
    await asyncio.wait_for(consumer, 120)
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    await js.delete_stream(RAW_STREAM)
    return total / elapsed


async def measure_nats(
    nc: Client, counter: DecisionCounter, messages: list[tuple[str, bytes]], total: int
) -> float:
    base = counter.decisions
    started = time.perf_counter()
    await publish_all(nc, soc.ALERT_QUEUE, messages)
    await counter.until(base + total, timeout=300)
    return total / (time.perf_counter() - started)


async def measure_intake(
    nc: Client, counter: DecisionCounter, subject: str, bodies: list[bytes], total: int, concurrency: int
) -> float:
    """Alerts/s through the intake alone: soc-cycle's triage is stopped meanwhile (the
    intake still answers: that is its contract), so the figure is the FastStream
    subscriber's validate + map + queue + reply, not triage's CPU next to it. Then triage
    is started again and must decide every one of them."""
    gate = asyncio.Semaphore(concurrency)

    async def ask(body: bytes) -> None:
        async with gate:
            reply = msgspec.json.decode((await nc.request(subject, body, timeout=30)).data)
            assert reply["ok"] and not reply.get("rejected"), reply

    await control(nc, "stop")
    base = counter.decisions
    started = time.perf_counter()
    await asyncio.gather(*(ask(body) for body in bodies))
    rate = total / (time.perf_counter() - started)
    await control(nc, "start")
    await counter.until(base + total, timeout=300)
    return rate


async def quiet(nc: Client, still: float = 1.0, timeout: float = 120.0) -> None:
    """Until no event has been stored for ``still`` seconds."""
    js = nc.jetstream()
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        seq = (await js.stream_info(subjects.EVENTS_STREAM)).state.last_seq
        if seq != last:
            last, since = seq, time.monotonic()
        elif time.monotonic() - since >= still:
            return
        await asyncio.sleep(0.1)


async def control(nc: Client, verb: str) -> None:
    reply = msgspec.json.decode((await nc.request(f"aoc.ctl.soc-cycle.{verb}", b"", timeout=10)).data)
    assert reply["ok"], reply


EVE_SEVERITY = {"critical": 1, "high": 1, "medium": 2, "low": 3, "informational": 4}


def as_eve(alert: soc.Alert, index: int) -> dict:
    """A Suricata EVE alert event carrying what the generated alert says."""
    return {
        "timestamp": alert.time.isoformat(),
        "flow_id": 1_000_000_000 + index,
        "in_iface": "eth0",
        "event_type": "alert",
        "src_ip": alert.src_ip or "10.20.0.7",
        "src_port": 40000 + index % 20000,
        "dest_ip": alert.dst_ip or "10.20.0.8",
        "dest_port": 443,
        "proto": "TCP",
        "alert": {
            "action": "allowed",
            "gid": 1,
            "signature_id": 2_000_000 + len(alert.title),
            "rev": 1,
            "signature": alert.title,
            "category": alert.description or "A Network Trojan was detected",
            "severity": EVE_SEVERITY[alert.severity],
            "metadata": {"mitre_technique_id": alert.techniques},
        },
        "app_proto": "tls",
        "tls": {"sni": alert.domain} if alert.domain else {},
    }


def eve_bodies(alerts: list[soc.Alert], batch: int) -> tuple[list[bytes], set[str]]:
    """NDJSON bodies of EVE records, and the alert ids the intake will give them."""
    records = [msgspec.json.encode(as_eve(alert, i)) for i, alert in enumerate(alerts)]
    bodies = [b"\n".join(records[i : i + batch]) for i in range(0, len(records), batch)]
    ids = {alert.id for body in bodies for alert in soc.parse_alerts(body, "suricata-eve").alerts}
    return bodies, ids


async def measure_api(
    http: httpx.AsyncClient, counter: DecisionCounter, alerts: list[soc.Alert], batch: int, concurrency: int
) -> float:
    bodies = [soc.encode_alerts(alerts[i : i + batch]) for i in range(0, len(alerts), batch)]
    gate = asyncio.Semaphore(concurrency)

    async def post(body: bytes) -> None:
        async with gate:
            response = await http.post(
                "/api/v1/soc/alerts", content=body, headers={**AUTH, "Content-Type": "application/json"}
            )
            assert response.status_code == 202, response.text

    base = counter.decisions
    started = time.perf_counter()
    await asyncio.gather(*(post(body) for body in bodies))
    await counter.until(base + len(alerts), timeout=300)
    return len(alerts) / (time.perf_counter() - started)


def measure_scoring(total: int) -> float:
    """Features + the three models, in rounds of the engine's own size (AOC_SOC_ROUND_ALERTS):
    the models' per-call cost is a large share, so the round size moves this figure."""
    data = Dataset.generated(4000, 1337)
    bundle = train("bench", data.features, data.is_threat, data.threat, sizes=ModelSizes())
    alerts = [item.alert for item in generate(total, 99)]
    size = SocConfig().round_alerts
    started = time.perf_counter()
    for start in range(0, total, size):
        score(bundle, extract_batch(alerts[start : start + size]))
    return total / (time.perf_counter() - started)


def cpu_seconds(children: Children, workdir) -> dict[str, float]:
    """CPU seconds each of our processes has used so far: the children and our nats-server."""
    used = {}
    for name, proc in children.procs.items():
        times = psutil.Process(proc.pid).cpu_times()
        used[name] = times.user + times.system
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "nats-server" and str(workdir) in " ".join(proc.info["cmdline"] or []):
            times = proc.cpu_times()
            used["nats-server"] = times.user + times.system
    return used


async def wait_for_model(nc: Client, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            reply = msgspec.json.decode((await nc.request("aoc.ctl.soc-cycle.status", b"", timeout=2)).data)
            version = (reply.get("result") or {}).get("extras", {}).get("model_version")
            if version:
                return version
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("the SOC never loaded a model")


async def retrain_by_feedback(nc: Client, http: httpx.AsyncClient, labelled: list[LabelledAlert]) -> dict:
    """100 verdicts -> one retrain -> the SOC scores with the new version."""
    js = nc.jetstream()
    evaluated: list[dict] = []
    reloaded: list[str] = []

    async def on_evaluated(msg) -> None:
        evaluated.append(msgspec.json.decode(msg.data)["data"])

    async def on_reloaded(msg) -> None:
        data = msgspec.json.decode(msg.data)["data"]
        if data["ok"]:
            reloaded.append(data["version"])

    subs = [  # one ConsumerConfig each: nats-py fills in the one it is given
        await js.subscribe(
            subjects.evt(ml.ML_SYSTEM, ml.ModelEvaluated.TYPE),
            ordered_consumer=True,
            cb=on_evaluated,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        ),
        await js.subscribe(
            subjects.evt("soc-cycle", soc.ModelsReloaded.TYPE),
            ordered_consumer=True,
            cb=on_reloaded,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
        ),
    ]
    verdicts = [
        {"alert_id": item.alert.id, "verdict": "true_positive" if item.is_threat else "false_positive"}
        for item in labelled[:100]
    ]
    started = time.perf_counter()
    response = await http.post("/api/v1/soc/feedback", json=verdicts, headers=AUTH)
    assert response.status_code == 202, response.text
    deadline = time.monotonic() + 180
    while not evaluated or (evaluated[0]["promoted"] and evaluated[0]["version"] not in reloaded):
        assert time.monotonic() < deadline, "no retrain within 180 s"
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(1.0)  # would a second retrain follow? it must not
    for sub in subs:
        await sub.unsubscribe()
    result = evaluated[0]
    return {"elapsed": elapsed, "retrains": len(evaluated), "reloaded": reloaded, **result}


async def run_stack(sync_interval: str, args: argparse.Namespace) -> dict[str, float]:
    print(
        f"\n== nats-server sync_interval={sync_interval}: "
        "starting nats-server, ml-retrain, soc-cycle, gateway"
    )
    labelled = generate(args.alerts, seed=2026)
    alerts = [item.alert for item in labelled]
    nats_alerts = [item.alert for item in generate(args.alerts, seed=2027)]
    intake_alerts = [item.alert for item in generate(args.alerts, seed=2028)]
    intake_bodies = [
        soc.encode_alerts(intake_alerts[i : i + args.batch]) for i in range(0, len(intake_alerts), args.batch)
    ]
    eve, eve_ids = (
        eve_bodies([item.alert for item in generate(args.alerts, seed=2029)], args.batch)
        if "eve" in args.paths
        else ([], set())
    )
    with nats_server(sync_interval, keep=args.keep) as (server, workdir), Children(workdir) as children:
        port = free_port()
        env = child_env(
            server.url,
            workdir / "data",
            AOC_HTTP_PORT=str(port),
            AOC_MAX_BODY_BYTES=str(4 * 2**20),
        )
        env.update(args.env)
        children.spawn("ml-retrain", "services.ml", env)
        children.spawn("soc-cycle", "services.soc", env)
        children.spawn("gateway", "gateway", env)
        nc = await nats.connect(server.url)
        counter = None
        try:
            started = time.monotonic()
            version = await wait_for_model(nc)
            print(f"SOC scoring with {version} after {time.monotonic() - started:.1f} s (bootstrap included)")
            counter = await DecisionCounter(nc).start()
            figures: dict[str, float] = {}
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                while (await http.get("/health")).status_code != 200:
                    await asyncio.sleep(0.2)
                with ForeignCpu() as foreign:
                    figures["raw"] = await measure_raw(nc, soc.queue_messages(nats_alerts), len(nats_alerts))
                    before = cpu_seconds(children, workdir)
                    figures["nats"] = await measure_nats(
                        nc, counter, soc.queue_messages(nats_alerts), len(nats_alerts)
                    )
                    figures["api"] = await measure_api(http, counter, alerts, args.batch, args.concurrency)
                    after = cpu_seconds(children, workdir)
                    # after the paths docs/performance.md has figures for, in the same order;
                    # first let SOAR finish the playbooks of those containments (one event
                    # each), which would otherwise share the SOC's core with the intake
                    await quiet(nc)
                    print(await counter.soar())
                    # everything those alerts caused: SOAR's playbook runs (every 5 s, so a
                    # cycle lands inside the window above or not) and the views of them
                    with_soar = cpu_seconds(children, workdir)
                    if "intake" in args.paths:
                        figures["intake"] = await measure_intake(
                            nc, counter, soc.ALERT_INTAKE, intake_bodies, len(intake_alerts), args.concurrency
                        )
                    if "eve" in args.paths:
                        figures["eve"] = await measure_intake(
                            nc,
                            counter,
                            f"{soc.ALERT_INTAKE}.suricata-eve",
                            eve,
                            len(eve_ids),
                            args.concurrency,
                        )
                print(f"noise: {foreign}")
                per_alert = ", ".join(
                    f"{name} {1e6 * (after[name] - before.get(name, 0.0)) / (2 * args.alerts):.0f}"
                    for name in after
                )
                print(f"CPU per alert in microseconds, NATS and HTTP runs together: {per_alert}")
                per_alert = ", ".join(
                    f"{name} {1e6 * (with_soar[name] - before.get(name, 0.0)) / (2 * args.alerts):.0f}"
                    for name in with_soar
                )
                print(f"the same until their playbook runs are stored (idle seconds included): {per_alert}")
                expected = {a.id for a in alerts + nats_alerts}
                expected |= {a.id for a in intake_alerts} if "intake" in args.paths else set()
                expected |= eve_ids if "eve" in args.paths else set()
                missing = expected - counter.ids
                print(
                    f"decisions: {counter.decisions} for {len(expected)} alerts, "
                    f"{len(counter.ids)} distinct, {len(missing)} missing; by model {counter.versions}"
                )
                figures["exactly_once"] = float(counter.decisions == len(counter.ids) == len(expected))
                retrain = await retrain_by_feedback(nc, http, labelled)
                print(
                    f"100 verdicts -> {retrain['retrains']} retrain ({retrain['version']}, promoted "
                    f"{retrain['promoted']}, F1 {retrain['candidate']['f1']}, "
                    f"ROC AUC {retrain['candidate']['roc_auc']}) "
                    f"-> SOC reloaded {retrain['reloaded']} in {retrain['elapsed']:.1f} s"
                )
                figures["retrain_s"] = retrain["elapsed"]
        finally:
            if counter is not None:  # before the connection closes, or it tries to recreate it
                await counter.sub.unsubscribe()
                await counter.playbook_sub.unsubscribe()
            await nc.close()
    return figures


async def main(args: argparse.Namespace) -> None:
    print(f"AOC SOC benchmark: {args.alerts} alerts per path, API batches of {args.batch}")
    print(f"machine: {machine_facts()}; load average {load_average()}")
    if args.env:
        print(f"NOT the shipped defaults: {args.env}")
    scoring = measure_scoring(args.alerts)
    results = {sync: await run_stack(sync, args) for sync in args.sync.split(",")}
    print()
    rows = []
    for sync, figures in results.items():
        for name, label in (
            ("raw", "raw publish/consume (baseline)"),
            ("nats", "NATS -> triage -> decision"),
            ("api", "HTTP -> triage -> decision"),
            ("intake", "NATS request -> FastStream intake -> queued"),
            ("eve", "Suricata EVE -> intake mapping -> queued"),
        ):
            if name not in figures:
                continue
            ratio = figures[name] / figures["raw"]
            rows.append([sync, label, f"{figures[name]:,.0f}", f"{ratio:.2f}"])
    rows.append(["-", "scoring only, in process (reference)", f"{scoring:,.0f}", ""])
    print_table(["sync", "path", "alerts/s", "x raw"], rows)
    print()
    for sync, figures in results.items():
        judged = "judged" if sync == "always" else "informative"
        print(
            f"RESULT sync_interval={sync} ({judged}): end to end via NATS {figures['nats']:,.0f} alerts/s, "
            f"via HTTP {figures['api']:,.0f} alerts/s vs >= {TARGET:,.0f}: "
            f"{verdict(min(figures['nats'], figures['api']) >= TARGET)}; "
            f"exactly once: {verdict(bool(figures['exactly_once']))}; retrain after 100 verdicts "
            f"{figures['retrain_s']:.1f} s; issue 17: via NATS vs >= {BATCH_TARGET:,.0f}: "
            f"{verdict(figures['nats'] >= BATCH_TARGET)}"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sync", default="always,1s", help="nats-server fsync policies to run, in order")
    parser.add_argument("--alerts", type=int, default=10_000, help="alerts per path (default 10000)")
    parser.add_argument("--batch", type=int, default=500, help="alerts per POST (default 500)")
    parser.add_argument("--concurrency", type=int, default=4, help="POSTs / requests in flight (default 4)")
    parser.add_argument(
        "--paths",
        default="intake,eve",
        type=lambda text: set(text.split(",")),
        help="optional paths besides raw, nats and api (default intake,eve)",
    )
    add_stack_options(parser)
    return parse_stack_args(parser)


if __name__ == "__main__":
    run_stack_benchmark(main, parse_args())
