"""Scenario 2a, event to alert: from an HTTP command's response to its alert at a webhook.

Separate processes, as deployed: an EmbeddedNats, `python -m dealflow serve` with NATS_URL
(its relay publishes to JetStream) and `python -m dealflow notifier` with a rules file that
sends ConcessionRecorded to one webhook recipient: a tiny asyncio receiver in this process,
whose clock also times the commands. Commands are offered open-loop at a fixed rate.

The headline is 180 commands/s (issue 15's target: p99 <= 25 ms). On SQLite, in the same
processes after the headline window, a ramp of shorter windows at rising offered rates finds the
highest rate at which p99 stays under 25 ms (it stops at the first rate over 25 ms or not kept
up); and the headline rate is measured again with the relay apart: `serve --no-relay` and a
`dealflow relay` process on the same store and NATS (on PostgreSQL too in a full run). CPU milliseconds per command of every
process are taken over each window and the alerts it caused.

Also: the relay lag (the event's timestamp -> JetStream's stored timestamp of its message),
the notifier leg (JetStream timestamp -> webhook arrival, wall clocks on one machine), and a
floor measured in the same run: raw JetStream publish -> a minimal pull consumer -> an
httpx POST to the same receiver, at the same rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .common import (
    auth_headers,
    Context,
    CpuMeter,
    child_env,
    collect_profile,
    deal_service,
    dealflow_command,
    embedded_nats,
    free_port,
    fresh_store,
    latency_summary,
    pg_schema,
    ratio,
    relay_process,
    reset_profile,
    run_async,
    serve_process,
    spawn,
    stop_many,
    tail,
)
from .profiling import by_library, summarise
from .webhook import Receiver
from .write_path import open_deals

SECRET = "bench-webhook-secret"
DEALS = 256  # quick: 32
CLIENT_POOL = 48  # connections the open-loop sender may use at once
RATE = 180.0  # commands/s: issue 15's target rate (quick: 50)
RAMP = (60.0, 120.0, 180.0, 240.0, 300.0)  # offered rates, in turn, until p99 passes the limit (quick: 30, 60)
P99_LIMIT_MS = 25.0


def write_rules(path: Path, webhook_url: str, event_type: str = "ConcessionRecorded") -> Path:
    path.write_text(
        f"""# The benchmark's rules: one webhook recipient for {event_type}.
[channels.bench_webhook]
type = "webhook"
url = "{webhook_url}"
secret_env = "DEALFLOW_WEBHOOK_SECRET"
timeout_seconds = 5

[recipients.ops]
channel = "bench_webhook"

[[rules]]
name = "bench"
events = ["{event_type}"]
notify = ["ops"]

[delivery]
attempts = 5
backoff_seconds = 0.05
max_backoff_seconds = 0.5
"""
    )
    return path


def notifier_env(nats_url: str, rules: Path, db: Path | None, database_url: str | None) -> dict[str, str]:
    env = {"NATS_URL": nats_url, "DEALFLOW_ALERT_RULES": str(rules), "DEALFLOW_WEBHOOK_SECRET": SECRET}
    if database_url:
        env["DEALFLOW_NOTIFIER_DATABASE_URL"] = database_url
    else:
        env["DEALFLOW_NOTIFIER_DB"] = str(db)
    return env


@contextlib.contextmanager
def notifier_processes(count: int, env: dict[str, str], workdir: Path, profile_to: Path | None = None) -> Iterator[list[Any]]:
    processes = []
    try:
        for n in range(count):
            args = dealflow_command(profile_to)
            processes.append(spawn([*args, "notifier"], child_env(env), workdir / f"notifier-{n}-{free_port()}.log"))
        yield processes
    finally:
        if profile_to is not None:
            for process in processes:
                collect_profile(profile_to, process)
        # The notifier takes ~30 s to exit on SIGTERM once idle (see RESULTS.md): do not wait for it.
        stop_many(processes, timeout=0.5)


@contextlib.contextmanager
def notifier_store(ctx: Context, kind: str) -> Iterator[tuple[Path | None, str | None]]:
    if kind == "sqlite":
        yield ctx.new_dir("notifier") / "notifier.sqlite3", None
        return
    with pg_schema("bench_notifier") as url:
        yield None, url


@dataclass
class Command:
    scheduled: float
    sent: float = 0.0
    done: float = 0.0
    status: int = 0
    event_id: str | None = None


async def offered_load(base: str, deal_ids: list[str], rate: float, duration: float, offset: int = 0) -> list[Command]:
    """Open loop: command i is sent at start + i/rate whatever happened to the earlier ones."""
    import httpx  # noqa: PLC0415

    pool: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
    clients = [httpx.AsyncClient(base_url=base, limits=httpx.Limits(max_connections=1), timeout=30, verify=False) for _ in range(CLIENT_POOL)]
    auth = auth_headers()
    for client in clients:
        pool.put_nowait(client)
    commands: list[Command] = []

    async def send(i: int, command: Command) -> None:
        client = await pool.get()
        deal = deal_ids[(offset + i) % len(deal_ids)]
        command.sent = time.perf_counter()
        try:
            response = await client.post(f"/deals/{deal}/concessions", json={"by": "client", "what": f"gift {i}"}, headers=auth)
            command.status = response.status_code
            if response.status_code == 201:
                # The ETag is the deal's version after the command: the event's id is <deal>:<version>.
                command.event_id = f"{deal}:{response.headers['ETag'].strip(chr(34))}"
        except httpx.HTTPError:
            command.status = -1
        finally:
            command.done = time.perf_counter()
            pool.put_nowait(client)

    try:
        start = time.perf_counter() + 0.02
        tasks = []
        for i in range(int(rate * duration)):
            command = Command(scheduled=start + i / rate)
            commands.append(command)
            delay = command.scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(i, command)))
        await asyncio.gather(*tasks)
    finally:
        for client in clients:
            await client.aclose()
    return commands


async def stream_timestamps(url: str, wanted: set[str]) -> dict[str, tuple[datetime, datetime]]:
    """For each wanted event id: (the event's own timestamp, JetStream's stored timestamp)."""
    import json  # noqa: PLC0415

    import nats  # noqa: PLC0415
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy  # noqa: PLC0415

    from dealflow.deal_lifecycle.adapters.bus import EVENTS_STREAM  # noqa: PLC0415

    nc = await nats.connect(url)
    js = nc.jetstream()
    found: dict[str, tuple[datetime, datetime]] = {}
    try:
        sub = await js.pull_subscribe(
            "deals.events.*.ConcessionRecorded",
            durable="bench-lag",
            stream=EVENTS_STREAM,
            config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
        )
        remaining = (await js.stream_info(EVENTS_STREAM)).state.messages
        while len(found) < len(wanted) and remaining > 0:
            try:
                # Never ask for more than is left: a pull waits for its whole batch until the timeout.
                messages = await sub.fetch(min(500, remaining), timeout=2)
            except TimeoutError:
                break
            for msg in messages:
                remaining = msg.metadata.num_pending
                event_id = (msg.headers or {}).get("ce-id")
                if event_id in wanted:
                    event = json.loads(msg.data)
                    found[event_id] = (datetime.fromisoformat(event["timestamp"]), msg.metadata.timestamp)
        await js.delete_consumer(EVENTS_STREAM, "bench-lag")
    finally:
        await nc.close()
    return found


async def wait_stream_count(url: str, count: int, timeout: float = 30) -> None:
    import nats  # noqa: PLC0415

    from dealflow.deal_lifecycle.adapters.bus import EVENTS_STREAM  # noqa: PLC0415

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if (await js.stream_info(EVENTS_STREAM)).state.messages >= count:
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"the relay did not publish {count} events within {timeout}s")
    finally:
        await nc.close()


def analyse(commands: list[Command], receiver: Receiver, stamps: dict[str, tuple[datetime, datetime]], rate: float, duration: float) -> dict[str, Any]:
    ok = [c for c in commands if c.event_id]
    by_event = {a.event_id: a for a in receiver.arrivals.values()}
    alert_latency = [by_event[c.event_id].perf - c.done for c in ok if c.event_id in by_event]
    from_send = [by_event[c.event_id].perf - c.sent for c in ok if c.event_id in by_event]
    relay_lag = [(js - ev).total_seconds() for ev, js in stamps.values()]
    notifier_leg = [by_event[e].wall - js.timestamp() for e, (_, js) in stamps.items() if e in by_event]
    span = max(c.done for c in commands) - min(c.sent for c in commands) if commands else 0
    lateness = [c.sent - c.scheduled for c in commands]
    achieved = len(ok) / span if span else 0
    late_p99 = latency_summary(lateness)["p99_ms"] or 0
    # A pipeline that keeps up has the same latency at the end of the run as at the start; a growing
    # queue (anywhere: service, relay, notifier) shows as alerts arriving later and later.
    ordered = [by_event[c.event_id].perf - c.done for c in sorted(ok, key=lambda c: c.sent) if c.event_id in by_event]
    fifth = max(1, len(ordered) // 5)
    first_fifth = latency_summary(ordered[:fifth])["p50_ms"] or 0
    last_fifth = latency_summary(ordered[-fifth:])["p50_ms"] or 0
    growing = last_fifth > 2 * first_fifth + 20
    failures = []
    if achieved < 0.95 * rate:
        failures.append(f"only {achieved:.0f} of {rate:g} commands/s accepted")
    if late_p99 >= 100:
        failures.append(f"the sender ran {late_p99:.0f} ms late at p99 (all connections busy waiting for responses)")
    if growing:
        failures.append(f"alert latency grew over the run (median {first_fifth:.0f} ms in the first fifth, {last_fifth:.0f} ms in the last)")
    if len(alert_latency) < len(ok):
        failures.append(f"{len(ok) - len(alert_latency)} alerts missing")
    return {
        "offered_per_s": rate,
        "duration_s": duration,
        "commands": len(commands),
        "accepted": len(ok),
        "failed": len(commands) - len(ok),
        "achieved_per_s": round(achieved, 1),
        "sender_lateness": latency_summary(lateness),
        "alert_p50_first_fifth_ms": first_fifth,
        "alert_p50_last_fifth_ms": last_fifth,
        "machine_kept_up": not failures,
        "not_kept_up_because": failures,
        "alerts_received": len(alert_latency),
        "alerts_missing": len(ok) - len(alert_latency),
        "duplicate_alerts": receiver.duplicates,
        "response_to_alert": latency_summary(alert_latency),
        "send_to_alert": latency_summary(from_send),
        "http_response": latency_summary([c.done - c.sent for c in ok]),
        "relay_lag_event_to_jetstream": latency_summary(relay_lag),
        "notifier_leg_jetstream_to_webhook": latency_summary(notifier_leg),
    }


def within_limit(result: dict[str, Any]) -> bool:
    """Kept up, and command to alert p99 under the limit."""
    p99 = result["response_to_alert"]["p99_ms"]
    return bool(result["machine_kept_up"]) and p99 is not None and p99 < P99_LIMIT_MS


def measure_store(
    ctx: Context,
    kind: str,
    rate: float,
    duration: float,
    warmup: int,
    *,
    profile: bool = False,
    relay_apart: bool = False,
    ramp: tuple[float, ...] = (),
    ramp_duration: float = 0.0,
) -> dict[str, Any]:
    """One pipeline (nats-server, serve, notifier; a relay process too if `relay_apart`): the headline
    window at `rate`, then, in the same processes, a window at each `ramp` rate until one is over the limit."""
    port = free_port()
    with fresh_store(ctx, kind, "e2a") as store, notifier_store(ctx, kind) as (db, notifier_url):
        service = deal_service(store)
        deals = ctx.size(32, DEALS)
        deal_ids = [str(d) for d in open_deals(service, deals)]
        service.close()
        server = embedded_nats(ctx, f"nats-e2a-{kind}")
        server.start()
        rules = write_rules(ctx.new_dir("rules") / "alert-rules.toml", f"http://127.0.0.1:{port}/alerts")
        serve_prof = ctx.workdir / f"e2a-serve-{kind}.prof" if profile else None
        notifier_prof = ctx.workdir / f"e2a-notifier-{kind}.prof" if profile else None
        serve_options = ["--no-relay"] if relay_apart else []
        try:
            with contextlib.ExitStack() as stack:
                base, serve = stack.enter_context(serve_process(store, ctx.workdir, nats_url=server.url, profile_to=serve_prof, options=serve_options))
                (notifier,) = stack.enter_context(
                    notifier_processes(1, notifier_env(server.url, rules, db, notifier_url), ctx.workdir, profile_to=notifier_prof)
                )
                pids = {"serve": serve.pid, "notifier": notifier.pid, "nats_server": server.process.pid}
                if relay_apart:
                    pids["relay"] = stack.enter_context(relay_process(store, ctx.workdir, server.url)).pid

                async def window(receiver: Receiver, rate: float, duration: float, offset: int) -> dict[str, Any]:
                    """Commands offered at `rate` for `duration`, and their alerts: latency, and CPU per command."""
                    receiver.reset()
                    with CpuMeter(pids) as cost:  # the commands and the work they cause, until their alerts arrived
                        with CpuMeter(pids) as cpu:
                            commands = await offered_load(base, deal_ids, rate, duration, offset=offset)
                        wanted = {c.event_id for c in commands if c.event_id}
                        await receiver.wait_for(len(wanted), timeout=30)
                    stamps = await stream_timestamps(server.url, wanted)
                    result = analyse(commands, receiver, stamps, rate, duration)
                    result["cpu_percent"] = cpu.percent
                    result["cpu_ms_per_command"] = cost.ms_per(result["accepted"])
                    return result

                async def main() -> dict[str, Any]:
                    receiver = await Receiver().start_on(port)
                    try:
                        await wait_stream_count(server.url, deals)
                        warm = await offered_load(base, deal_ids, min(rate, 100), warmup / min(rate, 100), offset=7)
                        warm_ids = {c.event_id for c in warm if c.event_id}
                        if not await receiver.wait_for(len(warm_ids), timeout=60):
                            raise RuntimeError(f"warm-up alerts did not arrive: {len(receiver.arrivals)}/{len(warm_ids)}\n{tail(notifier.bench_log)}")
                        if profile:
                            assert serve_prof is not None and notifier_prof is not None
                            reset_profile(serve_prof)  # leave start-up and warm-up out of the profiles
                            reset_profile(notifier_prof)
                        await asyncio.sleep(ctx.size(0.1, 0.5))
                        result = await window(receiver, rate, duration, 0)
                        if ramp:
                            result["ramp"] = []
                            for n, offered in enumerate(ramp, start=1):
                                await asyncio.sleep(ctx.size(0.1, 0.5))
                                step = await window(receiver, offered, ramp_duration, n)
                                result["ramp"].append(step)
                                if not within_limit(step):
                                    break
                            kept = [step["offered_per_s"] for step in result["ramp"] if within_limit(step)]
                            result["highest_rate_within_limit"] = max(kept) if kept else None
                        return result
                    finally:
                        await receiver.close()

                result = run_async(main())
        finally:
            server.stop()
    result["relay"] = "apart (serve --no-relay, dealflow relay)" if relay_apart else "in serve"
    if profile:
        assert serve_prof is not None and notifier_prof is not None
        result["profile"] = {
            "serve": {**summarise(serve_prof, top=12), "by_library": by_library(serve_prof)},
            "notifier": {**summarise(notifier_prof, top=12), "by_library": by_library(notifier_prof)},
        }
    return result


async def raw_floor(url: str, rate: float, duration: float) -> dict[str, Any]:
    """Raw JetStream publish -> a minimal pull consumer (fetch, POST, ack) -> the receiver."""
    import json  # noqa: PLC0415

    import httpx  # noqa: PLC0415
    import nats  # noqa: PLC0415
    from nats.js.api import AckPolicy, ConsumerConfig  # noqa: PLC0415

    from .relay import _reset_stream  # noqa: PLC0415

    receiver = await Receiver().start_on(0)
    nc = await nats.connect(url)
    js = nc.jetstream()
    await _reset_stream(js, "BENCH_FLOOR", ["bench.floor.>"])
    sub = await js.pull_subscribe("bench.floor.>", durable="floor", stream="BENCH_FLOOR", config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT))
    stop_consumer = asyncio.Event()
    client = httpx.AsyncClient(timeout=5, verify=False)

    async def consume() -> None:
        while not stop_consumer.is_set():
            try:
                messages = await sub.fetch(10, timeout=0.5)
            except TimeoutError:
                continue
            for msg in messages:
                await client.post(receiver.url, content=msg.data, headers={"Content-Type": "application/json"})
                await msg.ack()

    consumer = asyncio.create_task(consume())
    acked: dict[str, float] = {}
    body = b"x" * 300

    async def publish(i: int) -> None:
        payload = json.dumps({"alert_id": f"a{i}", "event_id": f"e{i}", "pad": body.decode()}).encode()
        await js.publish("bench.floor.x", payload, headers={"Nats-Msg-Id": f"e{i}"})
        acked[f"e{i}"] = time.perf_counter()

    try:
        start = time.perf_counter()
        tasks = []
        n = int(rate * duration)
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(publish(i)))
        await asyncio.gather(*tasks)
        await receiver.wait_for(n, timeout=20)
        latencies = [a.perf - acked[a.event_id] for a in receiver.arrivals.values() if a.event_id in acked]
    finally:
        stop_consumer.set()
        await consumer
        await client.aclose()
        await js.delete_stream("BENCH_FLOOR")
        await nc.close()
        await receiver.close()
    return {"offered_per_s": rate, "duration_s": duration, "messages": n, "ack_to_webhook": latency_summary(latencies)}


def run(ctx: Context) -> dict[str, Any]:
    rate, duration, warmup = ctx.size((50.0, 1.0, 5), (RATE, 20.0, 60))
    ramp, ramp_duration = ctx.size(((30.0, 60.0), 1.0), (RAMP, 8.0))
    out: dict[str, Any] = {"deals": ctx.size(32, DEALS), "event_type": "ConcessionRecorded", "p99_limit_ms": P99_LIMIT_MS, "stores": {}}
    server = embedded_nats(ctx, "nats-floor")
    server.start()
    try:
        out["floor"] = run_async(raw_floor(server.url, rate, ctx.size(1.0, 5.0)))
    finally:
        server.stop()
    for kind in ctx.stores():
        sqlite = kind == "sqlite"  # the targets are SQLite's: the ramp and the relay apart are measured there
        per_store_duration = duration if sqlite else ctx.size(duration, 10.0)
        result = measure_store(ctx, kind, rate, per_store_duration, warmup, ramp=ramp if sqlite else (), ramp_duration=ramp_duration)
        if not result["machine_kept_up"]:
            ctx.notes.append(
                f"event to alert on {STORES[kind]}: at {rate:g} commands/s the pipeline did not keep up "
                f"({'; '.join(result['not_kept_up_because'])}); the deal service, the notifier, nats-server and the load generator share two cores."
            )
        if sqlite or not ctx.quick:
            # On SQLite nothing but polling wakes a relay in another process; on PostgreSQL, NOTIFY does: measure both.
            result["relay_apart"] = measure_store(ctx, kind, rate, per_store_duration, warmup, relay_apart=True)
        if sqlite:
            # The profile of a missed target runs at the headline rate, or at the highest rate below it that was kept up.
            kept = [step["offered_per_s"] for step in result.get("ramp", []) if step["machine_kept_up"] and step["offered_per_s"] <= rate]
            ctx.extra["e2a_sustained_rate"] = rate if result["machine_kept_up"] or not kept else max(kept)
        result["p50/floor_p50"] = ratio(result["response_to_alert"]["p50_ms"], out["floor"]["ack_to_webhook"]["p50_ms"])
        result["p99/floor_p99"] = ratio(result["response_to_alert"]["p99_ms"], out["floor"]["ack_to_webhook"]["p99_ms"])
        out["stores"][kind] = result
    return out


STORES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def profile(ctx: Context, rate: float, duration: float) -> dict[str, Any]:
    """The same pipeline on SQLite with the serve and notifier processes profiled (every thread)."""
    return measure_store(ctx, "sqlite", rate, duration, 20, profile=True)
