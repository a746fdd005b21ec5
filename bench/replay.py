"""Scenario 3, replay: loading a deal with 10,000 events, with snapshots and without, and as-of reads.

The deal's events are real domain events (a template deal's, copied onto consecutive
versions, see backlog.py), stored in one transaction. DealService snapshots every 100
events; a load starts from the latest snapshot at or below the version asked for, so only
the snapshots at the versions read matter: they are taken at N/2, N-100 and N (the same
ones the service's every-100 rule would have left there). Without snapshots: a DealService
subclass with snapshotting off, on the same store. The floor: the library's trivial
aggregate with as many events, loaded the same two ways.
"""

from __future__ import annotations

import statistics
import time
from typing import Any
from uuid import UUID

from .backlog import deal_events, template_events
from .common import Context, Store, deal_service, fresh_store, ratio, timed_repeats
from .profiling import ThreadProfiler, by_library, summarise
from .write_path import Counter, RawApp


def _ms(times: list[float]) -> dict[str, float]:
    ms = sorted(t * 1000 for t in times)
    return {"p50_ms": round(statistics.median(ms), 3), "min_ms": round(ms[0], 3), "max_ms": round(ms[-1], 3), "repeats": len(ms)}


def no_snapshot_service(store: Store) -> Any:
    from dealflow.deal_lifecycle.adapters.policy_file import load_policy  # noqa: PLC0415
    from dealflow.deal_lifecycle.application.service import DealService  # noqa: PLC0415

    from .common import POLICY_FILE  # noqa: PLC0415

    class DealServiceWithoutSnapshots(DealService):
        name = "Deals"  # the same tables (PostgreSQL names them after the application)
        snapshotting_intervals = {}  # noqa: RUF012

    return DealServiceWithoutSnapshots(env=store.settings().eventsourcing_env(), policy=load_policy(POLICY_FILE))


def _snapshot_bytes(app: Any, aggregate_id: UUID) -> int | None:
    if app.snapshots is None:
        return None
    stored = app.snapshots.recorder.select_events(aggregate_id, desc=True, limit=1)
    return len(stored[0].state) if stored else None


def measure_store(ctx: Context, kind: str, n: int, template: list[Any], fast: int, slow: int) -> dict[str, Any]:
    mid, near_end = n // 2, n - 100
    out: dict[str, Any] = {"events": n}
    with fresh_store(ctx, kind, "replay") as store:
        service = deal_service(store)
        bare = no_snapshot_service(store)
        try:
            events = deal_events(template, n)
            deal_id = events[0].originator_id
            t0 = time.perf_counter()
            service.save(*events)
            out["store_events_s"] = round(time.perf_counter() - t0, 3)
            t0 = time.perf_counter()
            for version in (mid, near_end, n):
                service.take_snapshot(deal_id, version=version)
            out["take_snapshots_s"] = round(time.perf_counter() - t0, 3)
            out["snapshot_bytes"] = _snapshot_bytes(service, deal_id)
            assert service.get_deal(deal_id).version == n and bare.get_deal(deal_id).version == n
            out["with_snapshots"] = {
                "latest": _ms(timed_repeats(lambda: service.get_deal(deal_id), fast)),
                f"as_of_{mid}": _ms(timed_repeats(lambda: service.get_deal(deal_id, version=mid), fast)),
                f"as_of_{n - 1}_tail_99": _ms(timed_repeats(lambda: service.get_deal(deal_id, version=n - 1), fast)),
            }
            out["without_snapshots"] = {
                "latest": _ms(timed_repeats(lambda: bare.get_deal(deal_id), slow)),
                f"as_of_{mid}": _ms(timed_repeats(lambda: bare.get_deal(deal_id, version=mid), slow)),
            }
            # Reading the stored events alone (no decoding, no replay): the store's share.
            out["select_stored_events_only"] = _ms(timed_repeats(lambda: service.recorder.select_events(deal_id), slow))
        finally:
            service.close()
            bare.close()
    with fresh_store(ctx, kind, "replay-raw") as store:
        env = store.settings().eventsourcing_env()
        env.pop("APPLICATION_RECORDER_TOPIC", None)
        app = RawApp(env={**env, "IS_SNAPSHOTTING_ENABLED": "y"})
        bare_raw = RawApp(env=env)
        try:
            counter = Counter()
            for i in range(n - 1):
                counter.increment(what=f"gift {i}")
            app.save(counter)
            app.take_snapshot(counter.id, version=n)
            out["raw_floor"] = {
                "latest_with_snapshot": _ms(timed_repeats(lambda: app.repository.get(counter.id), fast)),
                "latest_without_snapshots": _ms(timed_repeats(lambda: bare_raw.repository.get(counter.id), slow)),
            }
        finally:
            app.close()
            bare_raw.close()
    with_latest = out["with_snapshots"]["latest"]["p50_ms"]
    without_latest = out["without_snapshots"]["latest"]["p50_ms"]
    out["ratios"] = {
        "without/with (latest)": ratio(without_latest, with_latest),
        "without/with (as-of mid)": ratio(out["without_snapshots"][f"as_of_{mid}"]["p50_ms"], out["with_snapshots"][f"as_of_{mid}"]["p50_ms"]),
        "deal/raw floor, without snapshots": ratio(without_latest, out["raw_floor"]["latest_without_snapshots"]["p50_ms"]),
        "deal/raw floor, with snapshot": ratio(with_latest, out["raw_floor"]["latest_with_snapshot"]["p50_ms"]),
    }
    return out


def run(ctx: Context) -> dict[str, Any]:
    n = ctx.size(1_000, 10_000)
    fast, slow = ctx.size((5, 2), (30, 5))
    template = template_events(199)
    return {"stores": {kind: measure_store(ctx, kind, n, template, fast, slow) for kind in ctx.stores()}}


def profile(ctx: Context, n: int, loads: int) -> dict[str, Any]:
    """cProfile of loading the deal (latest snapshot) on SQLite."""
    template = template_events(199)
    with fresh_store(ctx, "sqlite", "replay-prof") as store:
        service = deal_service(store)
        try:
            events = deal_events(template, n)
            deal_id = events[0].originator_id
            service.save(*events)
            service.take_snapshot(deal_id, version=n)
            service.get_deal(deal_id)
            profiler = ThreadProfiler().start()
            t0 = time.perf_counter()
            for _ in range(loads):
                service.get_deal(deal_id)
            elapsed = time.perf_counter() - t0
            stats = profiler.stop()
        finally:
            service.close()
    return {"loads": loads, "per_load_ms": round(1000 * elapsed / loads, 3), **summarise(stats, top=14), "by_library": by_library(stats)}
