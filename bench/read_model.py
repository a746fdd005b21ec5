"""Scenario 4, the read model: one page (limit 50) of deals by stage at 10k, 100k and 1M deals.

The summary rows are bulk-loaded straight into the read-model table (SQLite
`deal_summaries`, PostgreSQL `<schema>.deals_events_deal_summaries`), in the service's own
column formats. Measured: DealService.list_deals for the first page and for a deep page
(a cursor half-way through the stage), the same SELECT run raw on a plain connection as
the floor, and at the largest size the same pages over HTTP with the serve process's RSS.
"""

from __future__ import annotations

import os
import random
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from .common import (
    auth_headers,
    Context,
    Store,
    deal_service,
    fresh_store,
    latency_summary,
    proc_rss_mb,
    ratio,
    run_async,
    serve_process,
)
from .profiling import ThreadProfiler, by_library, summarise

STAGE = "letter_of_intent"
# A plausible funnel: most deals are early.
FUNNEL = [("prospect", 40), ("letter_of_intent", 25), ("transition_meeting", 15), ("contract_signed", 12), ("walked_away", 8)]
BASE = datetime(2024, 1, 1, tzinfo=UTC)
COLUMNS = ("deal_id", "title", "client_name", "owner", "stage", "version", "opened_at", "updated_at")


def _stages() -> list[str]:
    return [stage for stage, weight in FUNNEL for _ in range(weight)]


def rows(start: int, stop: int, seed: int = 7) -> list[tuple[Any, ...]]:
    rng = random.Random(seed + start)
    stages = _stages()
    out = []
    for n in range(start, stop):
        opened = BASE + timedelta(seconds=n * 13)
        out.append((
            str(UUID(int=rng.getrandbits(128), version=4)),
            f"Deal {n}",
            f"Client {n % 5000}",
            f"owner{n % 200}",
            stages[rng.randrange(100)],
            rng.randrange(1, 60),
            opened,
            opened + timedelta(hours=rng.randrange(1, 2000)),
        ))
    return out


def load_rows(store: Store, service: Any, start: int, stop: int) -> None:
    chunk = 100_000
    for lo in range(start, stop, chunk):
        batch = rows(lo, min(stop, lo + chunk))
        if store.kind == "sqlite":
            from dealflow.deal_lifecycle.adapters.storage.sqlite import _timestamp  # noqa: PLC0415 - the service's own format

            with service.recorder.datastore.transaction(commit=True) as c:
                c.executemany(
                    f"INSERT INTO deal_summaries ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(*r[:6], _timestamp(r[6]), _timestamp(r[7])) for r in batch],
                )
        else:
            import psycopg  # noqa: PLC0415

            from .common import PG_BASE_URL  # noqa: PLC0415

            with psycopg.connect(PG_BASE_URL) as conn, conn.cursor() as cur:
                with cur.copy(f'COPY "{store.schema}".deals_events_deal_summaries ({", ".join(COLUMNS)}) FROM STDIN') as copy:
                    for r in batch:
                        copy.write_row(r)
    if store.kind == "postgres":
        import psycopg  # noqa: PLC0415

        from .common import PG_BASE_URL  # noqa: PLC0415

        # What autovacuum does after a bulk load; a planner without statistics is not the service's fault.
        with psycopg.connect(PG_BASE_URL, autocommit=True) as conn:
            conn.execute(f'ANALYZE "{store.schema}".deals_events_deal_summaries')


def deep_cursor(service: Any, store: Store, count_in_stage: int) -> str:
    """A cursor half-way through the stage, as a client paging that far would hold."""
    from dealflow.deal_lifecycle.application.read_model import DealSummary, encode_cursor  # noqa: PLC0415

    offset = count_in_stage // 2
    if store.kind == "sqlite":
        with service.recorder.datastore.transaction(commit=False) as c:
            c.execute("SELECT opened_at, deal_id FROM deal_summaries WHERE stage = ? ORDER BY opened_at, deal_id LIMIT 1 OFFSET ?", (STAGE, offset))
            opened, deal_id = c.fetchone()
        opened_at = datetime.fromisoformat(opened)
    else:
        import psycopg  # noqa: PLC0415

        from .common import PG_BASE_URL  # noqa: PLC0415

        with psycopg.connect(PG_BASE_URL) as conn:
            opened_at, deal_id = conn.execute(
                f'SELECT opened_at, deal_id FROM "{store.schema}".deals_events_deal_summaries WHERE stage = %s ORDER BY opened_at, deal_id LIMIT 1 OFFSET %s',
                (STAGE, offset),
            ).fetchone()  # type: ignore[misc]
    summary = DealSummary(deal_id, "", "", "", STAGE, 1, opened_at, opened_at)
    return encode_cursor(summary)


class RawQuery:
    """The service's page query on a plain connection, rows fetched as tuples: the store's floor."""

    def __init__(self, store: Store) -> None:
        self.store = store
        if store.kind == "sqlite":
            import sqlite3  # noqa: PLC0415

            self.conn: Any = sqlite3.connect(store.sqlite_path, isolation_level=None)
            self.sql = f"SELECT {', '.join(COLUMNS)} FROM deal_summaries WHERE stage = ? {{after}} ORDER BY opened_at, deal_id LIMIT ?"
            self.after = "AND (opened_at, deal_id) > (?, ?)"
        else:
            import psycopg  # noqa: PLC0415

            from .common import PG_BASE_URL  # noqa: PLC0415

            self.conn = psycopg.connect(PG_BASE_URL, autocommit=True)
            self.sql = f'SELECT {", ".join(COLUMNS)} FROM "{store.schema}".deals_events_deal_summaries WHERE stage = %s {{after}} ORDER BY opened_at, deal_id LIMIT %s'
            self.after = "AND (opened_at, deal_id) > (%s, %s)"

    def page(self, after: tuple[datetime, str] | None) -> list[Any]:
        if after is None:
            return self.conn.execute(self.sql.format(after=""), (STAGE, 51)).fetchall()
        if self.store.kind == "sqlite":
            from dealflow.deal_lifecycle.adapters.storage.sqlite import _timestamp  # noqa: PLC0415

            params: tuple[Any, ...] = (STAGE, _timestamp(after[0]), after[1], 51)
        else:
            params = (STAGE, after[0], after[1], 51)
        return self.conn.execute(self.sql.format(after=self.after), params).fetchall()

    def plan(self, after: tuple[datetime, str]) -> str:
        if self.store.kind == "sqlite":
            from dealflow.deal_lifecycle.adapters.storage.sqlite import _timestamp  # noqa: PLC0415

            rows_ = self.conn.execute("EXPLAIN QUERY PLAN " + self.sql.format(after=self.after), (STAGE, _timestamp(after[0]), after[1], 51)).fetchall()
            return "; ".join(str(r[-1]) for r in rows_)
        rows_ = self.conn.execute("EXPLAIN " + self.sql.format(after=self.after), (STAGE, after[0], after[1], 51)).fetchall()
        return "; ".join(r[0].strip() for r in rows_)

    def close(self) -> None:
        self.conn.close()


def _times(fn: Any, repeats: int) -> list[float]:
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


async def _http_pages(base: str, cursor: str, repeats: int) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    out = {}
    async with httpx.AsyncClient(base_url=base, timeout=30, verify=False, headers=auth_headers()) as client:
        for name, url in (("first_page", f"/deals?stage={STAGE}&limit=50"), ("deep_page", f"/deals?stage={STAGE}&limit=50&cursor={urllib.parse.quote(cursor)}")):
            response = await client.get(url)
            assert response.status_code == 200 and len(response.json()["items"]) == 50, response.text[:300]
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                response = await client.get(url)
                times.append(time.perf_counter() - t0)
                assert response.status_code == 200
            out[name] = latency_summary(times)
    return out


def measure_store(ctx: Context, kind: str, sizes: list[int], repeats: int, http_repeats: int) -> dict[str, Any]:
    from dealflow.deal_lifecycle.application.read_model import decode_cursor  # noqa: PLC0415

    out: dict[str, Any] = {"stage": STAGE, "limit": 50, "sizes": {}}
    with fresh_store(ctx, kind, "readmodel") as store:
        service = deal_service(store)
        raw = RawQuery(store)
        try:
            loaded = 0
            for size in sizes:
                t0 = time.perf_counter()
                load_rows(store, service, loaded, size)
                load_s = time.perf_counter() - t0
                loaded = size
                in_stage = _count_stage(service, store)
                cursor = deep_cursor(service, store, in_stage)
                after = decode_cursor(cursor)
                first = service.list_deals(stage=STAGE, owner=None, limit=50, cursor=None)
                deep = service.list_deals(stage=STAGE, owner=None, limit=50, cursor=cursor)
                assert len(first.items) == 50 and len(deep.items) == 50 and first.next_cursor and deep.next_cursor
                result = {
                    "load_rows_s": round(load_s, 2),
                    "rows_in_stage": in_stage,
                    "service_first_page": latency_summary(_times(lambda: service.list_deals(stage=STAGE, owner=None, limit=50, cursor=None), repeats)),
                    "service_deep_page": latency_summary(_times(lambda: service.list_deals(stage=STAGE, owner=None, limit=50, cursor=cursor), repeats)),
                    "raw_sql_first_page": latency_summary(_times(lambda: raw.page(None), repeats)),
                    "raw_sql_deep_page": latency_summary(_times(lambda: raw.page(after), repeats)),
                    "deep_page_plan": raw.plan(after),
                    "bench_process_rss_mb": proc_rss_mb(os.getpid()),
                }
                result["service/raw (first)"] = ratio(result["service_first_page"]["p50_ms"], result["raw_sql_first_page"]["p50_ms"])
                result["service/raw (deep)"] = ratio(result["service_deep_page"]["p50_ms"], result["raw_sql_deep_page"]["p50_ms"])
                out["sizes"][str(size)] = result
            largest = out["sizes"][str(sizes[-1])]
            with serve_process(store, ctx.workdir) as (base, process):
                idle = proc_rss_mb(process.pid)
                http = run_async(_http_pages(base, cursor, http_repeats))
                http["serve_rss_idle_mb"] = idle
                http["serve_rss_after_mb"] = proc_rss_mb(process.pid)
                http["http/in-process (first)"] = ratio(http["first_page"]["p50_ms"], largest["service_first_page"]["p50_ms"])
                http["http/in-process (deep)"] = ratio(http["deep_page"]["p50_ms"], largest["service_deep_page"]["p50_ms"])
                largest["http"] = http
        finally:
            raw.close()
            service.close()
    return out


def _count_stage(service: Any, store: Store) -> int:
    if store.kind == "sqlite":
        with service.recorder.datastore.transaction(commit=False) as c:
            c.execute("SELECT count(*) FROM deal_summaries WHERE stage = ?", (STAGE,))
            return int(c.fetchone()[0])
    import psycopg  # noqa: PLC0415

    from .common import PG_BASE_URL  # noqa: PLC0415

    with psycopg.connect(PG_BASE_URL) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{store.schema}".deals_events_deal_summaries WHERE stage = %s', (STAGE,)).fetchone()
        return int(row[0]) if row else 0


def run(ctx: Context) -> dict[str, Any]:
    sizes = ctx.size([1_000, 10_000], [10_000, 100_000, 1_000_000])
    repeats, http_repeats = ctx.size((20, 10), (200, 100))
    return {"stores": {kind: measure_store(ctx, kind, sizes, repeats, http_repeats) for kind in ctx.stores()}}


def profile(ctx: Context, size: int, pages: int) -> dict[str, Any]:
    """cProfile of listing pages in-process on SQLite at `size` deals."""
    with fresh_store(ctx, "sqlite", "readmodel-prof") as store:
        service = deal_service(store)
        try:
            load_rows(store, service, 0, size)
            cursor = deep_cursor(service, store, _count_stage(service, store))
            service.list_deals(stage=STAGE, owner=None, limit=50, cursor=cursor)
            profiler = ThreadProfiler().start()
            for _ in range(pages):
                service.list_deals(stage=STAGE, owner=None, limit=50, cursor=None)
                service.list_deals(stage=STAGE, owner=None, limit=50, cursor=cursor)
            stats = profiler.stop()
        finally:
            service.close()
    return {"pages": 2 * pages, **summarise(stats, top=12), "by_library": by_library(stats)}
