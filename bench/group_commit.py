"""Scenario 6, group commit: durable commands per second, and the latency it adds, by batch size.

DealService in-process (threads), `record_concession` on 256 pre-opened deals shared out among
64 clients (they never conflict), as in scenario 1's b: with group commit off (every command its
own transaction, as the service did before) and on with at most 1, 8, 64 and 256 saves a
transaction (DEALFLOW_GROUP_COMMIT_MAX), waiting up to 2 ms for commands under way. The raw
library's one-save-per-call floor (scenario 1's a) is measured in the same run, at 64 clients.
One client is measured too: a lone command never waits for others, so what group commit adds to
its latency is the hand-off to the committer thread and back.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .common import AS_BEFORE, Context, deal_service, fresh_store, latency_summary, ratio, timed_repeats
from .profiling import ThreadProfiler, by_library, summarise
from .write_path import POOL, _concession_op, measure_raw, measure_service, open_deals, thread_load

SIZES = (1, 8, 64, 256)
CLIENTS = 64
WAIT_MS = 2.0  # the service's default DEALFLOW_GROUP_COMMIT_MS


def fsync_ms(directory: Path, count: int = 200) -> float:
    """What one durable write costs this disk: write 4 KiB and fsync, p50 in ms (the cost group commit shares out)."""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        return latency_summary(timed_repeats(lambda: (os.write(fd, b"x" * 4096), os.fsync(fd)), count))["p50_ms"]  # type: ignore[return-value]
    finally:
        os.close(fd)
        path.unlink()


def run(ctx: Context) -> dict[str, Any]:
    warmup, duration = ctx.size((0.05, 0.25), (0.5, 2.5))
    out: dict[str, Any] = {"window_s": duration, "warmup_s": warmup, "clients": CLIENTS, "sizes": list(SIZES), "wait_ms": WAIT_MS, "stores": {}}
    out["fsync_ms"] = fsync_ms(ctx.new_dir("fsync"), ctx.size(20, 200))
    for kind in ctx.stores():
        per: dict[str, Any] = {"a_raw": measure_raw(ctx, kind, CLIENTS, warmup, duration)}
        per["off"] = measure_service(ctx, kind, CLIENTS, warmup, duration, **AS_BEFORE)
        per["off_one_client"] = measure_service(ctx, kind, 1, warmup, duration, **AS_BEFORE)
        per["on"] = {}
        for size in SIZES:
            per["on"][str(size)] = measure_service(ctx, kind, CLIENTS, warmup, duration, group_commit_ms=WAIT_MS, group_commit_max=size, aggregate_cache=0)
        per["on_one_client"] = measure_service(ctx, kind, 1, warmup, duration, group_commit_ms=WAIT_MS, aggregate_cache=0)
        best = max(per["on"].values(), key=lambda r: r["ops_per_s"])
        per["ratios"] = {
            "best/off": ratio(best["ops_per_s"], per["off"]["ops_per_s"]),
            "best/a": ratio(best["ops_per_s"], per["a_raw"]["ops_per_s"]),
            "default(64)/off": ratio(per["on"]["64"]["ops_per_s"], per["off"]["ops_per_s"]),
            "default(64)/a": ratio(per["on"]["64"]["ops_per_s"], per["a_raw"]["ops_per_s"]),
            "one client p50 on/off": ratio(per["on_one_client"]["p50_ms"], per["off_one_client"]["p50_ms"]),
            "one client p99 on/off": ratio(per["on_one_client"]["p99_ms"], per["off_one_client"]["p99_ms"]),
        }
        out["stores"][kind] = per
    return out


def profile(ctx: Context, duration: float) -> dict[str, Any]:
    """cProfile of every thread (the committer's too) with 64 clients and group commit on, on SQLite."""
    with fresh_store(ctx, "sqlite", "group-prof") as store:
        profiler = ThreadProfiler().start()  # before the service starts its committer thread
        service = deal_service(store, group_commit_ms=WAIT_MS, aggregate_cache=0)
        try:
            ids = open_deals(service, POOL)
            profiler.clear()
            result = thread_load(_concession_op(service, ids, CLIENTS), CLIENTS, 0.0, duration)
            stats = profiler.stop()
        finally:
            service.close()
    return {"load": result, **summarise(stats, top=16), "by_library": by_library(stats)}
