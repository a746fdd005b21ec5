"""Scenario 2b, relay throughput: EventRelay.publish_backlog() on a stored backlog, against raw
nats-py JetStream publishing of as many messages of the same size, sync and pipelined async.

All against one EmbeddedNats; every stream has the events stream's configuration (file
storage, 15-minute duplicate window, Nats-Msg-Id on every message).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from .backlog import save_backlog, template_events
from .common import Context, deal_service, embedded_nats, fresh_store, ratio, run_async
from .profiling import ThreadProfiler, by_library, summarise

RAW_STREAM = "BENCH_RAW"


async def _reset_stream(js: Any, name: str, subjects: list[str]) -> None:
    from nats.js.errors import NotFoundError  # noqa: PLC0415

    from dealflow.deal_lifecycle.adapters.bus import events_stream_config  # noqa: PLC0415

    try:
        await js.delete_stream(name)
    except NotFoundError:
        pass
    await js.add_stream(replace(events_stream_config(), name=name, subjects=subjects))


async def raw_publish(url: str, sample: Any, count: int) -> dict[str, Any]:
    """Raw JetStream publishing of `count` messages shaped like the sample envelope."""
    import nats  # noqa: PLC0415

    nc = await nats.connect(url)
    js = nc.jetstream(timeout=10)
    out: dict[str, Any] = {}
    try:
        for mode in ("sync", "async"):
            await _reset_stream(js, RAW_STREAM, ["bench.raw.>"])
            subject = sample.subject.replace("deals.events.", "bench.raw.", 1)
            messages = [(subject, {**sample.headers, "Nats-Msg-Id": f"{mode}-{i}"}) for i in range(count)]
            body = sample.body
            t0 = time.perf_counter()
            failures = 0
            if mode == "sync":
                for subj, headers in messages:
                    await js.publish(subj, body, headers=headers)
            else:
                futures = [await js.publish_async(subj, body, headers=headers) for subj, headers in messages]
                await js.publish_async_completed()
                failures = sum(1 for f in futures if f.cancelled() or f.exception() is not None)
            elapsed = time.perf_counter() - t0
            stored = (await js.stream_info(RAW_STREAM)).state.messages
            out[mode] = {"messages": count, "seconds": round(elapsed, 3), "msgs_per_s": round(count / elapsed, 1), "stored": stored, "failures": failures}
        await js.delete_stream(RAW_STREAM)
    finally:
        await nc.close()
    return out


async def relay_publish(url: str, service: Any, expected: int, profiler: ThreadProfiler | None = None) -> dict[str, Any]:
    import nats  # noqa: PLC0415

    from dealflow.deal_lifecycle.adapters.bus import EVENTS_STREAM, EVENTS_SUBJECTS, ensure_streams  # noqa: PLC0415
    from dealflow.deal_lifecycle.adapters.relay import EventRelay  # noqa: PLC0415
    from dealflow.deal_lifecycle.config import Settings  # noqa: PLC0415

    nc = await nats.connect(url)
    try:
        relay = EventRelay(service, nc, batch_size=Settings().relay_batch_size)
        await _reset_stream(relay.js, EVENTS_STREAM, [EVENTS_SUBJECTS])
        await ensure_streams(relay.js)
        if profiler is not None:
            profiler.start()
        t0 = time.perf_counter()
        published = await relay.publish_backlog()
        elapsed = time.perf_counter() - t0
        stats = profiler.stop() if profiler is not None else None
        stored = (await relay.js.stream_info(EVENTS_STREAM)).state.messages
    finally:
        await nc.close()
    result = {"messages": published, "expected": expected, "stored": stored, "seconds": round(elapsed, 3), "msgs_per_s": round(published / elapsed, 1)}
    if stats is not None:
        result["profile"] = {**summarise(stats, top=14), "by_library": by_library(stats)}
    return result


async def _sample_envelope(service: Any) -> Any:
    from dealflow.deal_lifecycle.adapters.bus import PUBLISHED_TOPICS, envelope  # noqa: PLC0415

    notifications = service.recorder.select_notifications(start=0, limit=2, topics=PUBLISHED_TOPICS, inclusive_of_start=False)
    last = notifications[-1]
    return envelope(service.mapper.to_domain_event(last), last.id)


def run(ctx: Context) -> dict[str, Any]:
    deals, per_deal = ctx.size((4, 500), (100, 1000))
    total = deals * per_deal
    template = template_events(min(per_deal - 1, 199))
    out: dict[str, Any] = {"backlog_events": total, "deals": deals, "events_per_deal": per_deal, "batch_size": 500, "stores": {}}
    server = embedded_nats(ctx, "nats-relay")
    server.start()
    try:
        sample_size = None
        for kind in ctx.stores():
            with fresh_store(ctx, kind, "relay") as store:
                service = deal_service(store)
                try:
                    t0 = time.perf_counter()
                    save_backlog(service, template, deals, per_deal)
                    build_s = time.perf_counter() - t0
                    if "raw" not in out:
                        sample = run_async(_sample_envelope(service))
                        sample_size = len(sample.body) + sum(len(k) + len(v) + 4 for k, v in sample.headers.items())
                        out["message"] = {"subject": sample.subject, "body_bytes": len(sample.body), "headers_bytes": sample_size - len(sample.body)}
                        out["raw"] = run_async(raw_publish(server.url, sample, total))
                    result = run_async(relay_publish(server.url, service, total))
                    result["backlog_build_s"] = round(build_s, 2)
                    result["relay/raw_async"] = ratio(result["msgs_per_s"], out["raw"]["async"]["msgs_per_s"])
                    result["relay/raw_sync"] = ratio(result["msgs_per_s"], out["raw"]["sync"]["msgs_per_s"])
                    out["stores"][kind] = result
                finally:
                    service.close()
    finally:
        server.stop()
    return out


def profile(ctx: Context, events: int) -> dict[str, Any]:
    """cProfile (every thread) of the relay publishing a smaller SQLite backlog."""
    per_deal = 500
    template = template_events(199)
    server = embedded_nats(ctx, "nats-relay-prof")
    server.start()
    try:
        with fresh_store(ctx, "sqlite", "relay-prof") as store:
            service = deal_service(store)
            try:
                save_backlog(service, template, max(1, events // per_deal), per_deal)
                return run_async(relay_publish(server.url, service, events, profiler=ThreadProfiler()))
            finally:
                service.close()
    finally:
        server.stop()
