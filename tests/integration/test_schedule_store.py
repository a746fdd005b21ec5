"""The read model's schedule: the deals' deadline columns in the store, and the scheduler's queries on them.

On a real SQLite file and a real PostgreSQL (the `settings` fixture runs each test on both). The
recorder is built as eventsourcing's factory builds it for the service, from the same settings.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.utils import Environment
from psycopg.sql import SQL

from dealflow.deal_lifecycle.adapters.storage import sqlite as sqlite_storage
from dealflow.deal_lifecycle.application.audit import Audit
from dealflow.deal_lifecycle.application.read_model import DealSummary, summary_of
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain import deadlines
from tests.support import POLICY, open_deal

T0 = datetime(2030, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
TM, CONTRACT, STALLED, DUE_SOON, OVERDUE = deadlines.SCHEDULE
# As a policy gives them: a reminder a week before an expectation is due, overdue at the due moment itself.
OFFSETS = {CONTRACT: DAY, STALLED: DAY, DUE_SOON: -7 * DAY, OVERDUE: timedelta(0)}


@contextmanager
def built(settings: Settings) -> Iterator[Any]:
    """The service's recorder, tables created (and migrated), as the factory builds it."""
    factory = InfrastructureFactory.construct(Environment(env=settings.eventsourcing_env()))
    try:
        yield factory.application_recorder()
    finally:
        factory.close()


@pytest.fixture
def recorder(settings: Settings) -> Iterator[Any]:
    with built(settings) as recorder:
        yield recorder


def summary(deal_id: str, *, opened: int = 0, stage: str = "prospect", overdue: bool | None = False, **due_from: datetime) -> DealSummary:
    return DealSummary(
        deal_id=deal_id,
        title=f"deal {deal_id}",
        client_name="Acme Ltd",
        owner="ann",
        stage=stage,
        version=1,
        opened_at=T0 + opened * HOUR,
        updated_at=T0 + opened * HOUR,
        overdue=overdue,
        due_from=due_from,
    )


def everything(recorder: Any, **filters: Any) -> list[DealSummary]:
    return recorder.select_summaries(stage=None, owner=None, after=None, limit=1000, **filters)  # type: ignore[no-any-return]


def upsert(recorder: Any, summaries: list[DealSummary]) -> None:
    """The write path of every command: the rows upserted in the transaction of the events."""
    with recorder.datastore.transaction(commit=True) as cursor:
        recorder._upsert_summaries(cursor, summaries)


# -- writing and reading the rows ------------------------------------------------------------


def test_overdue_and_the_schedule_are_read_back_exactly_as_written(recorder: Any) -> None:
    written = [
        summary("a", opened=0, overdue=False, **{kind: T0 + n * DAY + timedelta(microseconds=n) for n, kind in enumerate(deadlines.SCHEDULE)}),
        summary("b", opened=1, overdue=True, **{STALLED: T0.replace(microsecond=0)}),  # whole seconds too
        summary("c", opened=2, overdue=None),
        summary("d", opened=3, overdue=False, **{OVERDUE: datetime(2030, 3, 1, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=2)))}),
    ]
    recorder.replace_summaries(written)
    read = everything(recorder)
    assert read == written
    assert [s.overdue for s in read] == [False, True, None, False]
    for s in read:
        assert all(moment.utcoffset() == timedelta(0) for moment in s.due_from.values()), s  # in UTC
    assert read[3].due_from == {OVERDUE: datetime(2030, 3, 1, 10, 0, 0, 1, tzinfo=UTC)}
    assert read[2].due_from == {}


def test_a_command_upserting_the_row_sets_its_overdue_and_its_whole_schedule(recorder: Any) -> None:
    upsert(recorder, [summary("a", **{TM: T0, STALLED: T0})])
    moved_on = replace(summary("a", stage="transition_meeting", overdue=True, **{CONTRACT: T0 + DAY, STALLED: T0 + DAY}), version=2, updated_at=T0 + DAY)
    upsert(recorder, [moved_on])
    assert everything(recorder) == [moved_on]  # the kind no longer pending is gone, not left behind
    made_good = replace(moved_on, version=3, overdue=False, due_from={})
    upsert(recorder, [made_good])
    assert everything(recorder) == [made_good]


def test_a_schedule_of_an_unknown_kind_or_with_a_naive_moment_is_refused(recorder: Any) -> None:
    with pytest.raises(ValueError, match="not kinds of the schedule"):
        upsert(recorder, [summary("a", someday=T0)])
    with pytest.raises(ValueError, match="timezone-aware"):
        upsert(recorder, [summary("a", **{STALLED: T0.replace(tzinfo=None)})])
    assert everything(recorder) == []


def test_the_service_stores_the_schedule_of_its_deals_as_their_events_say(settings: Settings) -> None:
    deals = DealService(env=settings.eventsourcing_env(), policy=POLICY)
    try:
        deal_id = open_deal(deals)
        [row] = deals.recorder.select_summaries(stage=None, owner=None, after=None, limit=10, overdue=None)
        assert row == summary_of(deals.get_deal(deal_id))
        assert row.overdue is False and STALLED in row.due_from
        assert Audit(deals).read_model_differences() == []
    finally:
        deals.close()


# -- the overdue listing ----------------------------------------------------------------------


def test_the_overdue_deals_are_listed_in_order_page_by_page(recorder: Any) -> None:
    pattern = [True, False, True, None, True, True, False, True]
    recorder.replace_summaries([summary(f"d{n}", opened=n, overdue=o, stage="prospect" if n % 2 else "lead") for n, o in enumerate(pattern)])
    pages, after = [], None
    while True:
        page = recorder.select_summaries(stage=None, owner=None, after=after, limit=2, overdue=True)
        pages.append([s.deal_id for s in page])
        if len(page) < 2:
            break
        after = (page[-1].opened_at, page[-1].deal_id)
    assert pages == [["d0", "d2"], ["d4", "d5"], ["d7"]]
    assert [s.deal_id for s in everything(recorder, overdue=True)] == ["d0", "d2", "d4", "d5", "d7"]
    # The other filters still apply, and False lists the rest (a row written before deadlines among them).
    assert [s.deal_id for s in recorder.select_summaries(stage="lead", owner="ann", after=None, limit=10, overdue=True)] == ["d0", "d2", "d4"]
    assert [s.deal_id for s in everything(recorder, overdue=False)] == ["d1", "d3", "d6"]
    assert len(everything(recorder)) == len(pattern)


# -- what is due --------------------------------------------------------------------------------


@pytest.fixture
def scheduled(recorder: Any) -> Any:
    recorder.replace_summaries(
        [
            summary("a", **{STALLED: T0}),  # due at T0 + 1 day
            summary("b", **{CONTRACT: T0 + HOUR}),  # due at T0 + 1 day 1 hour
            summary("c", **{DUE_SOON: T0 + 10 * DAY}),  # negative offset: due at T0 + 3 days
            summary("d", **{OVERDUE: T0 + 2 * HOUR}),  # zero offset: due at T0 + 2 hours
            summary("e", **{TM: T0 - 100 * DAY}),  # long past, but of a kind the offsets leave out
            summary("f"),  # nothing pending
            summary("g", overdue=None),  # written before deadlines
            # Several kinds at once: listed once, by the first of them to fall due (T0 + 2 days).
            summary("h", **{STALLED: T0 + DAY, DUE_SOON: T0 + 9 * DAY + HOUR, OVERDUE: T0 + 2 * DAY + HOUR}),
        ]
    )
    return recorder


def test_due_deals_are_those_with_a_kind_of_the_offsets_counted_from_at_or_before_now_minus_its_offset(scheduled: Any) -> None:
    due = scheduled.select_due
    assert due(OFFSETS, T0 + HOUR, 10) == []
    assert due(OFFSETS, T0 + 2 * HOUR - timedelta(microseconds=1), 10) == []
    assert due(OFFSETS, T0 + 2 * HOUR, 10) == ["d"]  # zero offset: due at its moment exactly
    assert due(OFFSETS, T0 + DAY, 10) == ["d", "a"]  # earliest due first
    assert due(OFFSETS, T0 + DAY + HOUR, 10) == ["d", "a", "b"]
    assert due(OFFSETS, T0 + 2 * DAY + HOUR, 10) == ["d", "a", "b", "h"]  # h once, though three of its kinds are due
    assert due(OFFSETS, T0 + 3 * DAY - timedelta(microseconds=1), 10) == ["d", "a", "b", "h"]
    assert due(OFFSETS, T0 + 3 * DAY, 10) == ["d", "a", "b", "h", "c"]  # negative offset: due before its moment
    assert due(OFFSETS, T0 + 365 * DAY, 10) == ["d", "a", "b", "h", "c"]  # e's kind is not in the offsets


def test_only_the_kinds_in_the_offsets_count_each_with_its_own_offset(scheduled: Any) -> None:
    due = scheduled.select_due
    assert due({}, T0 + 365 * DAY, 10) == []
    assert due({TM: 30 * DAY}, T0 + 365 * DAY, 10) == ["e"]
    assert due({TM: 30 * DAY}, T0 - 70 * DAY - timedelta(microseconds=1), 10) == []
    assert due({TM: 30 * DAY}, T0 - 70 * DAY, 10) == ["e"]
    assert due({STALLED: DAY}, T0 + 2 * DAY, 10) == ["a", "h"]
    assert due({STALLED: 3 * DAY}, T0 + 2 * DAY, 10) == []
    assert due({DUE_SOON: -7 * DAY}, T0 + 3 * DAY, 10) == ["h", "c"]  # h's moment is an hour before c's
    with pytest.raises(ValueError, match="not kinds of the schedule"):
        due({"someday": DAY}, T0, 10)


def test_the_limit_keeps_the_deals_due_first(scheduled: Any) -> None:
    now = T0 + 365 * DAY
    assert scheduled.select_due(OFFSETS, now, 1) == ["d"]
    assert scheduled.select_due(OFFSETS, now, 3) == ["d", "a", "b"]
    assert scheduled.select_due(OFFSETS, now, 0) == []
    # Many deals due of one kind: the limit counts deals, the kind's first ones.
    scheduled.replace_summaries([summary(f"s{n:03}", **{STALLED: T0 + n * HOUR}) for n in range(50)])
    assert scheduled.select_due({STALLED: timedelta(0)}, now, 5) == [f"s{n:03}" for n in range(5)]
    assert len(scheduled.select_due(OFFSETS, now, 1000)) == 50


def test_the_next_due_moment_is_the_earliest_under_the_offsets(recorder: Any, scheduled: Any) -> None:
    assert scheduled.select_next_due(OFFSETS) == T0 + 2 * HOUR  # d
    assert scheduled.select_next_due({STALLED: DAY, CONTRACT: DAY}) == T0 + DAY  # a
    assert scheduled.select_next_due({DUE_SOON: -7 * DAY}) == T0 + 2 * DAY + HOUR  # h, before c
    assert scheduled.select_next_due({DUE_SOON: -20 * DAY, STALLED: DAY}) == T0 - 11 * DAY + HOUR  # h again
    assert scheduled.select_next_due({TM: 30 * DAY}) == T0 - 70 * DAY
    assert scheduled.select_next_due({}) is None
    assert scheduled.select_next_due(OFFSETS).utcoffset() == timedelta(0)
    recorder.replace_summaries([summary("f"), summary("g", overdue=None), summary("e", **{TM: T0})])
    assert recorder.select_next_due(OFFSETS) is None  # nothing of these kinds scheduled
    recorder.replace_summaries([])
    assert recorder.select_next_due(OFFSETS) is None


def test_rows_written_before_deadlines_are_found_to_be_scheduled(recorder: Any) -> None:
    recorder.replace_summaries([summary(f"d{n}", overdue=None if n % 3 == 0 else bool(n % 2)) for n in range(10)])
    assert recorder.select_unscheduled(100) == ["d0", "d3", "d6", "d9"]
    assert recorder.select_unscheduled(2) == ["d0", "d3"]
    upsert(recorder, [summary("d3", **{STALLED: T0})])  # given its schedule
    assert recorder.select_unscheduled(100) == ["d0", "d6", "d9"]


# -- a store written before deadlines ---------------------------------------------------------

OLD_ROW = ("old-deal", "Acme payroll", "Acme Ltd", "ann", "prospect", 3)


def make_old_store(settings: Settings) -> None:
    """The deal summaries table as the code before deadlines created it (8 columns), with a row in it."""
    if settings.database_url is None:
        with sqlite3.connect(settings.sqlite_path) as conn:
            conn.execute("CREATE TABLE deal_summaries (deal_id TEXT PRIMARY KEY, title, client_name, owner, stage, version, opened_at, updated_at)")
            conn.execute("CREATE INDEX deal_summaries_opened ON deal_summaries (opened_at, deal_id)")
            conn.execute(
                "INSERT INTO deal_summaries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*OLD_ROW, T0.strftime("%Y-%m-%dT%H:%M:%S.%f%z"), T0.strftime("%Y-%m-%dT%H:%M:%S.%f%z")),
            )
        conn.close()
        return
    import psycopg  # noqa: PLC0415

    url, schema = settings.database_url.split("?schema=")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f'CREATE TABLE "{schema}".stored_events_deal_summaries (deal_id text PRIMARY KEY, title text NOT NULL, '
            "client_name text NOT NULL, owner text NOT NULL, stage text NOT NULL, version bigint NOT NULL, "
            "opened_at timestamptz NOT NULL, updated_at timestamptz NOT NULL)"
        )
        conn.execute(f'CREATE INDEX stored_events_summaries_opened ON "{schema}".stored_events_deal_summaries (opened_at, deal_id)')
        conn.execute(f'INSERT INTO "{schema}".stored_events_deal_summaries VALUES (%s, %s, %s, %s, %s, %s, %s, %s)', (*OLD_ROW, T0, T0))


def test_a_store_written_before_deadlines_gains_the_columns_and_keeps_its_rows_unscheduled(settings: Settings) -> None:
    make_old_store(settings)
    with built(settings) as recorder:
        [row] = everything(recorder)
        assert row == DealSummary(*OLD_ROW, opened_at=T0, updated_at=T0, overdue=None, due_from={})
        assert recorder.select_unscheduled(10) == ["old-deal"]
        assert recorder.select_due(OFFSETS, T0 + 365 * DAY, 10) == []
        assert recorder.select_next_due(OFFSETS) is None
        # The new columns take what a command writes.
        rescheduled = replace(row, version=4, overdue=True, due_from={STALLED: T0 + DAY, OVERDUE: T0})
        upsert(recorder, [rescheduled])
        assert everything(recorder) == [rescheduled]
        assert everything(recorder, overdue=True) == [rescheduled]
        assert recorder.select_unscheduled(10) == []
        assert recorder.select_due(OFFSETS, T0 + 2 * DAY, 10) == ["old-deal"]
        assert recorder.select_next_due(OFFSETS) == T0
    with built(settings) as recorder:  # started again: nothing more to add
        assert everything(recorder) == [rescheduled]
        assert set(index_names(recorder)) >= set(SCHEDULE_INDEXES)


def test_processes_starting_at_once_on_a_store_written_before_deadlines_migrate_it_once(settings: Settings) -> None:
    make_old_store(settings)
    start, outcomes = threading.Barrier(4), []

    def run() -> None:
        start.wait()
        try:
            with built(settings) as recorder:
                outcomes.append(everything(recorder))
        except Exception as error:  # noqa: BLE001 - the test looks at what each got
            outcomes.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [o if isinstance(o, Exception) else len(o) for o in outcomes] == [1, 1, 1, 1]


# -- the indexes ----------------------------------------------------------------------------------

SCHEDULE_INDEXES = [*(f"summaries_due_from_{kind}" for kind in deadlines.SCHEDULE), "summaries_overdue", "summaries_unscheduled"]


def index_names(recorder: Any) -> list[str]:
    """The summaries table's index names, less their prefix (deal_ on SQLite, the events table's name on PostgreSQL)."""
    with recorder.datastore.transaction(commit=False) as cursor:
        if is_sqlite(recorder):
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deal_summaries'")
            return [row["name"].removeprefix("deal_") for row in cursor.fetchall()]
        cursor.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", (recorder.datastore.schema,))
        return [row["indexname"].removeprefix(f"{recorder.events_table_name}_") for row in cursor.fetchall()]


def is_sqlite(recorder: Any) -> bool:
    return isinstance(recorder, sqlite_storage.DealRecorder)


@contextmanager
def plans_of(recorder: Any) -> Iterator[list[list[str]]]:
    """The query plan of each statement the recorder runs meanwhile, line by line (each still run, for its result)."""
    plans: list[list[str]] = []
    real = recorder.datastore.transaction

    class Explaining:
        def __init__(self, cursor: Any) -> None:
            self.cursor = cursor

        def execute(self, statement: Any, *args: Any) -> Any:
            if is_sqlite(recorder):
                self.cursor.execute("EXPLAIN QUERY PLAN " + statement, *args)
                plans.append([row["detail"] for row in self.cursor.fetchall()])
            else:
                self.cursor.execute(SQL("EXPLAIN ") + statement, *args)
                plans.append([row["QUERY PLAN"].strip() for row in self.cursor.fetchall()])
            return self.cursor.execute(statement, *args)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.cursor, name)

    @contextmanager
    def transaction(*, commit: bool) -> Iterator[Any]:
        with real(commit=commit) as cursor:
            yield Explaining(cursor)

    recorder.datastore.transaction = transaction
    try:
        yield plans
    finally:
        del recorder.datastore.transaction


def first_due(rows: list[DealSummary], offsets: dict[str, timedelta], now: datetime) -> list[str]:
    """select_due worked out the long way: every row, every kind of the offsets."""
    due = {
        s.deal_id: min(moment + offsets[kind] for kind, moment in s.due_from.items() if kind in offsets)
        for s in rows
        if any(kind in offsets and moment + offsets[kind] <= now for kind, moment in s.due_from.items())
    }
    return sorted(due, key=lambda deal_id: (due[deal_id], deal_id))


def test_the_schedule_queries_read_their_indexes_not_the_whole_table(recorder: Any) -> None:
    # Some thousands of deals, most of them due far ahead, a few overdue, a few without a schedule.
    kinds = [CONTRACT, STALLED, DUE_SOON, OVERDUE, TM]
    rows = [
        summary(
            f"deal-{n:05}",
            opened=n,
            overdue=None if n % 500 == 0 else n % 100 == 1,
            **{STALLED: T0 + (n + 3) * HOUR, kinds[n % 5]: T0 + n * HOUR},
        )
        for n in range(5000)
    ]
    recorder.replace_summaries(rows)
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute("ANALYZE" if is_sqlite(recorder) else SQL("ANALYZE ") + recorder.summaries)
    now = T0 + 20 * HOUR
    prefix = "deal_" if is_sqlite(recorder) else f"{recorder.events_table_name}_"
    with plans_of(recorder) as plans:
        due = recorder.select_due(OFFSETS, now, 1000)
        next_due = recorder.select_next_due(OFFSETS)
        unscheduled = recorder.select_unscheduled(100)
        overdue = recorder.select_summaries(stage=None, owner=None, after=(T0 + 1000 * HOUR, ""), limit=20, overdue=True)
    # The right answers ...
    assert due == first_due(rows, OFFSETS, now) and 0 < len(due) < 50
    assert recorder.select_due(OFFSETS, now, 10) == due[:10]
    assert next_due == min(s.due_from[k] + OFFSETS[k] for s in rows for k in s.due_from if k in OFFSETS)
    assert unscheduled == [f"deal-{n:05}" for n in range(0, 5000, 500)]
    assert [s.deal_id for s in overdue] == [f"deal-{n:05}" for n in range(1001, 3001, 100)]
    # ... each from its indexes.
    due_plan, next_due_plan, unscheduled_plan, overdue_plan = ("\n".join(plan) for plan in plans)
    for kind in OFFSETS:
        assert f"{prefix}summaries_due_from_{kind}" in due_plan, due_plan
        assert f"{prefix}summaries_due_from_{kind}" in next_due_plan, next_due_plan
    assert f"{prefix}summaries_due_from_{TM}" not in due_plan + next_due_plan
    assert f"{prefix}summaries_unscheduled" in unscheduled_plan, unscheduled_plan
    assert f"{prefix}summaries_overdue" in overdue_plan, overdue_plan
    for plan in plans:
        assert "SCAN deal_summaries" not in plan, plan  # SQLite's full scan of the table
        assert not any("Seq Scan" in line for line in plan), plan  # PostgreSQL's
