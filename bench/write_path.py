"""Scenario 1, the write path: durable commands per second and latency at 1 and 64 clients.

  a  raw eventsourcing Application, trivial aggregate, one event per call (get, trigger, save): the floor
  b  DealService in-process: record_concession on pre-opened deals
  c  dealflow over HTTP: `python -m dealflow serve` (uvicorn, uvloop, httptools), async httpx load
  d  a trivial Litestar POST endpoint served the same way: the HTTP ceiling

A pool of 256 pre-opened deals (aggregates) is shared out: client k of n works round robin on
deals k, k+n, k+2n, ..., so concurrent clients never conflict, and no deal grows long enough
for its load time to matter (the raw floor has no snapshots: a deal with hundreds of events
would make the floor slower, not the service faster).
In-process concurrency is threads (the service is synchronous).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from .common import (
    AS_BEFORE,
    auth_headers,
    Context,
    CpuMeter,
    Store,
    ceiling_process,
    deal_service,
    fresh_store,
    latency_summary,
    ratio,
    run_async,
    serve_process,
)
from .profiling import ThreadProfiler, by_library, summarise

CONCURRENCY = (1, 64)
POOL = 256  # deals (aggregates) shared out among the clients


class Counter(Aggregate):
    """The library's floor: a trivial aggregate with one @event method."""

    def __init__(self) -> None:
        self.count = 0

    @event("Incremented")
    def increment(self, what: str) -> None:
        self.count += 1


class RawApp(Application[UUID]):
    name = "BenchRaw"


def raw_app(store: Store) -> RawApp:
    env = store.settings().eventsourcing_env()
    env.pop("APPLICATION_RECORDER_TOPIC", None)  # the library's own recorder
    return RawApp(env=env)


# -- load generators ----------------------------------------------------------------------------


def thread_load(op: Callable[[int, int], None], clients: int, warmup: float, duration: float) -> dict[str, Any]:
    """`clients` threads call op(client, i) back to back; ops completing in the window after warmup count."""
    spans: list[list[tuple[float, float]]] = [[] for _ in range(clients)]
    errors = [0] * clients
    barrier = threading.Barrier(clients + 1)
    go = threading.Event()
    window: dict[str, float] = {}
    first_error: list[str] = []

    def worker(k: int) -> None:
        barrier.wait()
        go.wait()
        end = window["end"]
        local = spans[k]
        i = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            try:
                op(k, i)
            except Exception as e:  # noqa: BLE001 - counted, reported
                errors[k] += 1
                if not first_error:
                    first_error.append(f"{type(e).__name__}: {e}")
            local.append((t0, time.perf_counter()))
            i += 1

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    window["from"], window["end"] = start + warmup, start + warmup + duration
    go.set()
    for t in threads:
        t.join()
    return _summarise(spans, window["from"], window["end"], sum(errors), first_error)


def _summarise(spans: list[list[tuple[float, float]]], t_from: float, t_end: float, errors: int, first_error: list[str]) -> dict[str, Any]:
    latencies = [t1 - t0 for per_client in spans for (t0, t1) in per_client if t_from <= t1 <= t_end]
    duration = t_end - t_from
    result: dict[str, Any] = {
        "ops": len(latencies),
        "ops_per_s": round(len(latencies) / duration, 1),
        "window_s": round(duration, 2),
        "errors": errors,
        **latency_summary(latencies),
    }
    if first_error:
        result["first_error"] = first_error[0]
    return result


async def http_load(
    base: str, path: Callable[[int, int], str], body: Callable[[int, int], dict[str, Any]], clients: int, warmup: float, duration: float
) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    spans: list[list[tuple[float, float]]] = [[] for _ in range(clients)]
    errors = [0]
    first_error: list[str] = []
    # One client (one connection) per simulated client: httpcore's shared pool does
    # O(connections x waiting requests) work per request, which at 64 would make the load
    # generator, not the server, the bottleneck.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    # verify=False: plain http to 127.0.0.1; loading the CA bundle costs ~17 ms per client.
    sessions = [httpx.AsyncClient(base_url=base, limits=limits, timeout=30, verify=False) for _ in range(clients)]
    auth = auth_headers()
    try:
        start = time.perf_counter()
        t_from, t_end = start + warmup, start + warmup + duration

        async def worker(k: int) -> None:
            client = sessions[k]
            local = spans[k]
            i = 0
            while True:
                t0 = time.perf_counter()
                if t0 >= t_end:
                    return
                try:
                    response = await client.post(path(k, i), json=body(k, i), headers=auth)
                    if response.status_code >= 300:
                        errors[0] += 1
                        if not first_error:
                            first_error.append(f"HTTP {response.status_code}: {response.text[:200]}")
                except httpx.HTTPError as e:
                    errors[0] += 1
                    if not first_error:
                        first_error.append(f"{type(e).__name__}: {e}")
                local.append((t0, time.perf_counter()))
                i += 1

        await asyncio.gather(*(worker(k) for k in range(clients)))
    finally:
        for session in sessions:
            await session.aclose()
    return _summarise(spans, t_from, t_end, errors[0], first_error)


# -- the cases ------------------------------------------------------------------------------------


def open_deals(service: Any, count: int) -> list[UUID]:
    from dealflow.deal_lifecycle.application.read_model import summary_of  # noqa: PLC0415
    from dealflow.deal_lifecycle.domain.deal import Deal  # noqa: PLC0415
    from dealflow.deal_lifecycle.domain.model import Attribution  # noqa: PLC0415

    by = Attribution(actor="bench", correlation_id="bench-setup")
    ids = []
    for start in range(0, count, 64):
        deals = [Deal.open(title=f"Bench deal {n}", client_name="Acme Ltd", owner="ann", by=by) for n in range(start, min(count, start + 64))]
        service.save(*deals, summaries=[summary_of(d) for d in deals])
        ids += [d.id for d in deals]
    return ids


def _slot(k: int, i: int, clients: int) -> int:
    """Client k's i-th command goes to this deal of the pool: its own deals, round robin."""
    return k + clients * (i % (POOL // clients))


def _concession_op(service: Any, deal_ids: list[UUID], clients: int) -> Callable[[int, int], None]:
    from dealflow.deal_lifecycle.application import commands as c  # noqa: PLC0415
    from dealflow.deal_lifecycle.domain.model import Side  # noqa: PLC0415

    emitter = frozenset({"emitter"})  # the role a system sending commands has

    def op(k: int, i: int) -> None:
        deal_id = deal_ids[_slot(k, i, clients)]
        # Always the client's concession: the balance rule never raises a condition (one event per command).
        service.handle("record_concession", deal_id, c.RecordConcession(by=Side.CLIENT, what=f"gift {i}"), c.CommandContext(actor="bench", correlation_id=f"b{k}-{i}", roles=emitter))

    return op


def _raw_op(app: RawApp, ids: list[UUID], clients: int) -> Callable[[int, int], None]:
    def op(k: int, i: int) -> None:
        counter: Counter = app.repository.get(ids[_slot(k, i, clients)])
        counter.increment(what=f"gift {i}")
        app.save(counter)

    return op


def measure_raw(ctx: Context, kind: str, clients: int, warmup: float, duration: float) -> dict[str, Any]:
    with fresh_store(ctx, kind, "raw") as store:
        app = raw_app(store)
        try:
            counters = [Counter() for _ in range(POOL)]
            app.save(*counters)
            return thread_load(_raw_op(app, [x.id for x in counters], clients), clients, warmup, duration)
        finally:
            app.close()


def measure_service(ctx: Context, kind: str, clients: int, warmup: float, duration: float, **settings: Any) -> dict[str, Any]:
    """DealService in-process (with these settings); with group commit on, also how many saves a transaction held."""
    with fresh_store(ctx, kind, "svc") as store:
        service = deal_service(store, **settings)
        try:
            ids = open_deals(service, POOL)
            group = getattr(service.recorder, "group", None)
            before = (group.batches, group.saves) if group else (0, 0)
            result = thread_load(_concession_op(service, ids, clients), clients, warmup, duration)
            if group:
                batches, saves = group.batches - before[0], group.saves - before[1]
                result["saves_per_transaction"] = round(saves / batches, 1) if batches else None
            return result
        finally:
            service.close()


def measure_http(ctx: Context, kind: str, warmup: float, duration: float) -> dict[int, dict[str, Any]]:
    results = {}
    with fresh_store(ctx, kind, "http") as store:
        service = deal_service(store)
        deal_sets = {clients: [str(d) for d in open_deals(service, POOL)] for clients in CONCURRENCY}
        service.close()
        with serve_process(store, ctx.workdir) as (base, process):
            for clients in CONCURRENCY:
                ids = deal_sets[clients]
                with CpuMeter({"server_process": process.pid}) as cpu:
                    result = run_async(
                        http_load(
                            base,
                            lambda k, i, ids=ids, n=clients: f"/deals/{ids[_slot(k, i, n)]}/concessions",
                            lambda k, i: {"by": "client", "what": f"gift {i}"},
                            clients,
                            warmup,
                            duration,
                        )
                    )
                result["cpu_percent"] = cpu.percent
                results[clients] = result
    return results


def measure_ceiling(ctx: Context, warmup: float, duration: float) -> dict[int, dict[str, Any]]:
    results = {}
    deal = "00000000-0000-0000-0000-000000000001"
    with ceiling_process(ctx.workdir) as (base, process):
        for clients in CONCURRENCY:
            with CpuMeter({"server_process": process.pid}) as cpu:
                result = run_async(
                    http_load(base, lambda k, i: f"/deals/{deal}/concessions", lambda k, i: {"by": "client", "what": f"gift {i}"}, clients, warmup, duration)
                )
            result["cpu_percent"] = cpu.percent
            results[clients] = result
    return results


def run(ctx: Context) -> dict[str, Any]:
    warmup, duration = ctx.size((0.05, 0.25), (0.75, 3.0))
    out: dict[str, Any] = {"window_s": duration, "warmup_s": warmup, "concurrency": list(CONCURRENCY), "stores": {}}
    out["ceiling_d"] = {str(k): v for k, v in measure_ceiling(ctx, warmup, duration).items()}
    for kind in ctx.stores():
        per: dict[str, Any] = {"a_raw": {}, "b_service": {}, "b_before": {}, "c_http": {}}
        for clients in CONCURRENCY:
            per["a_raw"][str(clients)] = measure_raw(ctx, kind, clients, warmup, duration)
            per["b_service"][str(clients)] = measure_service(ctx, kind, clients, warmup, duration)
            # The same without group commit and the aggregate cache: what b was before them.
            per["b_before"][str(clients)] = measure_service(ctx, kind, clients, warmup, duration, **AS_BEFORE)
        per["c_http"] = {str(k): v for k, v in measure_http(ctx, kind, warmup, duration).items()}
        ratios = {}
        for clients in map(str, CONCURRENCY):
            a = per["a_raw"][clients]["ops_per_s"]
            b = per["b_service"][clients]["ops_per_s"]
            c_ = per["c_http"][clients]["ops_per_s"]
            d = out["ceiling_d"][clients]["ops_per_s"]
            before = per["b_before"][clients]["ops_per_s"]
            ratios[clients] = {"b/a": ratio(b, a), "c/a": ratio(c_, a), "c/d": ratio(c_, d), "b/b_before": ratio(b, before), "b_before/a": ratio(before, a)}
        per["ratios"] = ratios
        out["stores"][kind] = per
    return out


# -- where the time goes (profiles) ----------------------------------------------------------------


def profile_in_process(ctx: Context, ops: int) -> dict[str, Any]:
    """cProfile one client's raw-floor ops and DealService ops on SQLite, same count each."""
    out: dict[str, Any] = {"ops": ops}
    with fresh_store(ctx, "sqlite", "prof-raw") as store:
        app = raw_app(store)
        counters = [Counter() for _ in range(POOL)]
        app.save(*counters)
        op = _raw_op(app, [x.id for x in counters], 1)
        profiler = ThreadProfiler().start()
        t0 = time.perf_counter()
        for i in range(ops):
            op(0, i)
        elapsed = time.perf_counter() - t0
        stats = profiler.stop()
        out["raw_a"] = {"wall_s": round(elapsed, 3), "per_op_ms": round(1000 * elapsed / ops, 3), **summarise(stats, top=10), "by_library": by_library(stats)}
        app.close()
    with fresh_store(ctx, "sqlite", "prof-svc") as store:
        service = deal_service(store)
        ids = open_deals(service, POOL)
        op = _concession_op(service, ids, 1)
        op(0, 0)
        profiler = ThreadProfiler().start()
        t0 = time.perf_counter()
        for i in range(ops):
            op(0, i)
        elapsed = time.perf_counter() - t0
        stats = profiler.stop()
        out["service_b"] = {"wall_s": round(elapsed, 3), "per_op_ms": round(1000 * elapsed / ops, 3), **summarise(stats, top=14), "by_library": by_library(stats)}
        service.close()
    return out


def profile_http(ctx: Context, duration: float) -> dict[str, Any]:
    """cProfile every thread of the serve process under one client's load on SQLite."""
    prof_file = ctx.workdir / "serve.prof"
    with fresh_store(ctx, "sqlite", "prof-http") as store:
        service = deal_service(store)
        ids = [str(d) for d in open_deals(service, POOL)]
        service.close()
        with serve_process(store, ctx.workdir, profile_to=prof_file) as (base, _process):
            result = run_async(
                http_load(base, lambda k, i: f"/deals/{ids[_slot(k, i, 1)]}/concessions", lambda k, i: {"by": "client", "what": f"gift {i}"}, 1, 0.2, duration)
            )
    return {"load": result, **summarise(prof_file, top=16), "by_library": by_library(prof_file)}


