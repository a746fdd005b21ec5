"""Scenario 5, the notifier: alerts per second to a local webhook from one notifier process, and two.

N events (ConcessionRecorded, each alerting one webhook recipient; plus the deals'
DealOpened, which alert no one) are published to the events stream in the relay's envelope
first; then the notifier process(es) start and we time the alerts arriving, from the first
to the last (so process start-up is not counted; it is reported apart). Two notifiers
share the durable consumer, as deployed.

Floors in the same run, in this process: a raw pull consumer that only fetches and acks,
sequential raw httpx POSTs of a same-sized alert to the same receiver, and a minimal
consumer doing both (fetch 10, POST, ack).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from .backlog import deal_events, template_events
from .common import Context, CpuMeter, embedded_nats, ratio, reset_profile, run_async
from .event_to_alert import notifier_env, notifier_processes, notifier_store, write_rules
from .webhook import Receiver


def build_envelopes(deals: int, events_per_deal: int) -> tuple[list[Any], int]:
    from dealflow.deal_lifecycle.adapters.bus import envelope  # noqa: PLC0415

    template = template_events(min(events_per_deal - 1, 199))
    messages, alerts, notification_id = [], 0, 0
    for _ in range(deals):
        for event in deal_events(template, events_per_deal):
            notification_id += 1
            messages.append(envelope(event, notification_id))
            alerts += type(event).__name__ == "ConcessionRecorded"
    return messages, alerts


async def _publish_all(js: Any, messages: list[Any]) -> None:
    from nats.js.errors import NotFoundError  # noqa: PLC0415

    from dealflow.deal_lifecycle.adapters.bus import EVENTS_STREAM, ensure_streams  # noqa: PLC0415

    for stream in (EVENTS_STREAM, "DEALS_ALERTS"):
        try:
            await js.delete_stream(stream)
        except NotFoundError:
            pass
    await ensure_streams(js)
    for m in messages:
        await js.publish_async(m.subject, m.body, headers=m.headers)
    await js.publish_async_completed()


def sample_alert_body(messages: list[Any]) -> bytes:
    from dealflow.notifier.alerts import DealContext, compose  # noqa: PLC0415
    from dealflow.notifier.rules import Target  # noqa: PLC0415

    m = messages[1]
    event = json.loads(m.body)
    alert = compose(event, m.headers["ce-id"], DealContext(event["deal_id"], "Bench backlog deal", "Acme Ltd", "ann"), Target("bench", "ops", "bench_webhook", None, "normal"))
    return json.dumps(alert.payload(), separators=(",", ":")).encode()


async def floors(url: str, messages: list[Any], alerts: int, body: bytes) -> dict[str, Any]:
    import httpx  # noqa: PLC0415
    import nats  # noqa: PLC0415
    from nats.js.api import AckPolicy, ConsumerConfig  # noqa: PLC0415

    from dealflow.deal_lifecycle.adapters.bus import EVENTS_STREAM, EVENTS_SUBJECTS  # noqa: PLC0415

    out: dict[str, Any] = {}
    receiver = await Receiver().start_on(0)
    nc = await nats.connect(url)
    js = nc.jetstream()
    client = httpx.AsyncClient(timeout=5, verify=False)
    try:
        # Sequential webhook POSTs of an alert-sized body (unique ids so the receiver counts each).
        template = json.loads(body)
        bodies = [json.dumps({**template, "alert_id": f"floor-{i}", "event_id": f"floor-{i}"}).encode() for i in range(alerts)]
        t0 = time.perf_counter()
        for b in bodies:
            await client.post(receiver.url, content=b, headers={"Content-Type": "application/json"})
        elapsed = time.perf_counter() - t0
        out["raw_webhook_posts"] = {"posts": alerts, "seconds": round(elapsed, 3), "per_s": round(alerts / elapsed, 1), "body_bytes": len(body)}

        for name, post in (("raw_fetch_ack", False), ("raw_fetch_post_ack", True)):
            await _publish_all(js, messages)
            receiver.reset()
            sub = await js.pull_subscribe(EVENTS_SUBJECTS, durable=f"floor-{name.replace('_', '-')}", stream=EVENTS_STREAM, config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT))
            done = 0
            t0 = time.perf_counter()
            while done < len(messages):
                try:
                    batch = await sub.fetch(10, timeout=2)
                except TimeoutError:
                    break
                for msg in batch:
                    if post and msg.subject.endswith(".ConcessionRecorded"):
                        await client.post(receiver.url, content=bodies[done % len(bodies)].replace(b"floor-", f"m{done}-".encode(), 2), headers={"Content-Type": "application/json"})
                    await msg.ack()
                    done += 1
            elapsed = time.perf_counter() - t0
            out[name] = {"messages": done, "seconds": round(elapsed, 3), "msgs_per_s": round(done / elapsed, 1)}
            if post:
                out[name]["alerts_per_s"] = round(alerts / elapsed, 1)
    finally:
        await client.aclose()
        await nc.close()
        await receiver.close()
    return out


def measure(ctx: Context, kind: str, url: str, server_pid: int, messages: list[Any], alerts: int, notifiers: int) -> dict[str, Any]:
    import nats  # noqa: PLC0415

    async def main() -> dict[str, Any]:
        receiver = await Receiver().start_on(0)
        nc = await nats.connect(url)
        try:
            await _publish_all(nc.jetstream(), messages)
            rules = write_rules(ctx.new_dir("rules") / "alert-rules.toml", receiver.url)
            with notifier_store(ctx, kind) as (db, database_url):
                env = notifier_env(url, rules, db, database_url)
                started = time.perf_counter()
                with notifier_processes(notifiers, env, ctx.workdir) as processes:
                    pids = {f"notifier_{n}": p.pid for n, p in enumerate(processes)}
                    with CpuMeter({**pids, "nats_server": server_pid}) as cpu:
                        complete = await receiver.wait_for(alerts, timeout=ctx.size(60, 180))
                    arrivals = sorted(a.perf for a in receiver.arrivals.values())
                    tails = {} if complete else {p.pid: p.bench_log.read_text()[-1500:] for p in processes}
        finally:
            await nc.close()
            await receiver.close()
        first, last = (arrivals[0], arrivals[-1]) if arrivals else (started, started)
        span = last - first
        result: dict[str, Any] = {
            "notifiers": notifiers,
            "alerts_expected": alerts,
            "alerts_received": len(arrivals),
            "duplicates": receiver.duplicates,
            "first_alert_after_start_s": round(first - started, 2),
            "first_to_last_s": round(span, 3),
            "alerts_per_s": round((len(arrivals) - 1) / span, 1) if span > 0 else None,
            "cpu_percent": cpu.percent,
        }
        if tails:
            result["incomplete_logs"] = tails
        return result

    return run_async(main())


def run(ctx: Context) -> dict[str, Any]:
    deals, per_deal = ctx.size((2, 100), (20, 200))
    messages, alerts = build_envelopes(deals, per_deal)
    body = sample_alert_body(messages)
    out: dict[str, Any] = {"events": len(messages), "alerts": alerts, "stores": {}}
    server = embedded_nats(ctx, "nats-notifier")
    server.start()
    try:
        out["floors"] = run_async(floors(server.url, messages, alerts, body))
        for kind in ctx.stores():
            one = measure(ctx, kind, server.url, server.process.pid, messages, alerts, 1)
            two = measure(ctx, kind, server.url, server.process.pid, messages, alerts, 2)
            out["stores"][kind] = {
                "one": one,
                "two": two,
                "two/one": ratio(two["alerts_per_s"], one["alerts_per_s"]),
                "one/raw_fetch_post_ack": ratio(one["alerts_per_s"], out["floors"]["raw_fetch_post_ack"]["alerts_per_s"]),
                "one/raw_webhook_posts": ratio(one["alerts_per_s"], out["floors"]["raw_webhook_posts"]["per_s"]),
            }
    finally:
        server.stop()
    return out


def profile(ctx: Context, deals: int = 5, per_deal: int = 200) -> dict[str, Any]:
    """The notifier process profiled (every thread) while it works through a backlog on SQLite."""
    import nats  # noqa: PLC0415

    from .profiling import by_library, summarise  # noqa: PLC0415

    messages, alerts = build_envelopes(deals, per_deal)
    prof = ctx.workdir / "notifier.prof"
    server = embedded_nats(ctx, "nats-notifier-prof")
    server.start()

    async def main() -> None:
        receiver = await Receiver().start_on(0)
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            # The first deal's first two events wake the notifier up; the profile starts after them.
            await _publish_all(js, messages[:2])
            rules = write_rules(ctx.new_dir("rules") / "alert-rules.toml", receiver.url)
            with notifier_store(ctx, "sqlite") as (db, _), notifier_processes(1, notifier_env(server.url, rules, db, None), ctx.workdir, profile_to=prof):
                await receiver.wait_for(1, timeout=60)
                reset_profile(prof)
                for m in messages[2:]:
                    await js.publish_async(m.subject, m.body, headers=m.headers)
                await js.publish_async_completed()
                await receiver.wait_for(alerts, timeout=120)
                await asyncio.sleep(0.2)
        finally:
            await nc.close()
            await receiver.close()

    try:
        run_async(main())
    finally:
        server.stop()
    return {"alerts": alerts, **summarise(prof, top=14), "by_library": by_library(prof)}
