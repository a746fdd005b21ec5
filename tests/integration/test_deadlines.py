"""Deadlines on a real store (SQLite and PostgreSQL), with the scheduler running and the clock moved by
the test: each kind missed and met, exactly once across a restart and with two schedulers, catch-up
after downtime, nothing for a deal that moved on, and after signing the outcomes and the scorecard."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from litestar.testing import TestClient

from dealflow.deal_lifecycle.application import commands as c
from dealflow.deal_lifecycle.application.clock import ManualClock
from dealflow.deal_lifecycle.application import scheduler as scheduler_module
from dealflow.deal_lifecycle.application.audit import Audit
from dealflow.deal_lifecycle.application.scheduler import Scheduler
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.bootstrap import service_app
from dealflow.deal_lifecycle.bootstrap.scheduling import leadership_for
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.deal import event_type
from dealflow.deal_lifecycle.domain.errors import InvalidCommand
from dealflow.deal_lifecycle.domain.model import Side
from dealflow.deal_lifecycle.domain.policy import Deadlines
from tests.support import POLICY, TEST_KEYS, ctx, expectation, meeting, open_deal, ready_to_sign, signed_in

DAY = timedelta(days=1)
TIMED = replace(
    POLICY,
    deadlines=Deadlines(transition_meeting_within=14 * DAY, contract_within=30 * DAY, stalled_after=21 * DAY, expectation_reminder=7 * DAY),
)


class Running:
    """A scheduler running in its own thread and event loop, as it does beside the HTTP app."""

    def __init__(self, deals: DealService, settings: Settings) -> None:
        self.scheduler = Scheduler(deals)
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        started = threading.Event()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            started.set()
            await self.scheduler.run(self._stop, leadership_for(settings, deals, "scheduler"))

        self.thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self.thread.start()
        started.wait(5)

    def stop(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)
        assert not self.thread.is_alive()


@contextmanager
def scheduling(deals: DealService, settings: Settings) -> Iterator[Running]:
    running = Running(deals, settings)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))


@pytest.fixture
def deals(settings: Settings, clock: ManualClock) -> Iterator[DealService]:
    service = DealService(env=settings.eventsourcing_env(), policy=TIMED, clock=clock)
    try:
        yield service
    finally:
        service.close()


def facts(deals: DealService, deal_id: UUID, name: str) -> list[Any]:
    return [e for e in deals.history(deal_id) if event_type(e) == name]


def eventually(check: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.02)


def settled(*runnings: Running) -> None:
    """Until the leading scheduler has made a whole pass begun after this moment (and after the clock's last
    move): what it did not record by then, it will not. A pass counter, not a sleep."""
    eventually(lambda: any(r.scheduler.leading for r in runnings))
    for running in runnings:
        if running.scheduler.leading:
            # Woken twice, each time waiting for the pass it causes: a pass under way at the first wake ends,
            # and the one that answers the second began after it.
            for _ in range(2):
                seen = running.scheduler.passes
                running.scheduler.wake()
                eventually(lambda r=running, n=seen: r.scheduler.passes > n)  # type: ignore[misc]


def at_letter_of_intent(deals: DealService) -> UUID:
    deal_id = open_deal(deals)
    deals.handle("sign_letter_of_intent", deal_id, None, ctx())
    return deal_id


def test_a_transition_meeting_not_held_in_time_is_recorded_once_when_the_clock_passes_it(
    deals: DealService, settings: Settings, clock: ManualClock
) -> None:
    deal_id = at_letter_of_intent(deals)
    signed_at = clock.now()
    with scheduling(deals, settings) as running:
        clock.advance(14 * DAY - timedelta(seconds=1))
        settled(running)
        assert facts(deals, deal_id, "DeadlineMissed") == []
        clock.advance(timedelta(seconds=1))
        eventually(lambda: len(facts(deals, deal_id, "DeadlineMissed")) == 1)
        clock.advance(timedelta(hours=1))
        settled(running)
    (missed,) = facts(deals, deal_id, "DeadlineMissed")
    assert (missed.deadline, missed.due_at, missed.actor) == ("transition_meeting_within", signed_at + 14 * DAY, "dealflow")
    assert missed.policy_version == TIMED.version
    assert [s.deal_id for s in deals.list_deals(stage=None, owner=None, limit=10, cursor=None, overdue=True).items] == [str(deal_id)]


def test_a_meeting_held_in_time_is_never_reported_and_the_contract_deadline_then_runs(
    deals: DealService, settings: Settings, clock: ManualClock
) -> None:
    deal_id = at_letter_of_intent(deals)
    with scheduling(deals, settings) as running:
        clock.advance(13 * DAY)
        deals.handle("hold_transition_meeting", deal_id, meeting(), ctx())
        clock.advance(10 * DAY)  # past the meeting's deadline (met) but not the contract's (30 d from the meeting)
        settled(running)
        assert facts(deals, deal_id, "DeadlineMissed") == []
        clock.advance(21 * DAY)  # 31 days after the meeting
        eventually(lambda: len(facts(deals, deal_id, "DeadlineMissed")) == 2)
    assert sorted(m.deadline for m in facts(deals, deal_id, "DeadlineMissed")) == ["contract_within", "stalled_after"]


def test_a_stalled_deal_is_recorded_and_a_new_fact_makes_it_good(deals: DealService, settings: Settings, clock: ManualClock) -> None:
    deal_id = open_deal(deals)
    with scheduling(deals, settings) as running:
        clock.advance(20 * DAY)
        deals.handle("record_client_facts", deal_id, c.RecordClientFacts(industry="logistics"), ctx())  # in time: met
        clock.advance(2 * DAY)
        settled(running)
        assert facts(deals, deal_id, "DeadlineMissed") == []
        clock.advance(20 * DAY)  # 22 days since the last fact
        eventually(lambda: len(facts(deals, deal_id, "DeadlineMissed")) == 1)
        assert deals.list_deals(stage=None, owner=None, limit=10, cursor=None, overdue=True).items
        deals.handle("record_client_facts", deal_id, c.RecordClientFacts(annual_value=500_000), ctx())
        assert deals.list_deals(stage=None, owner=None, limit=10, cursor=None, overdue=True).items == []
        clock.advance(22 * DAY)  # a new quiet spell: a new deadline
        eventually(lambda: len(facts(deals, deal_id, "DeadlineMissed")) == 2)


def test_a_deal_that_moved_on_is_never_reported(deals: DealService, settings: Settings, clock: ManualClock) -> None:
    walked = at_letter_of_intent(deals)
    deals.handle("walk_away", walked, c.WalkAway(reason="not a right client"), ctx())
    with scheduling(deals, settings) as running:
        clock.advance(400 * DAY)
        settled(running)
    assert facts(deals, walked, "DeadlineMissed") == []


def test_catch_up_records_what_fell_due_while_no_scheduler_ran_with_the_moment_it_was_due(
    deals: DealService, settings: Settings, clock: ManualClock
) -> None:
    deal_id = at_letter_of_intent(deals)
    start = clock.now()
    clock.advance(40 * DAY)  # the service was down
    with scheduling(deals, settings):
        eventually(lambda: len(facts(deals, deal_id, "DeadlineMissed")) == 2)
    due = {m.deadline: m.due_at for m in facts(deals, deal_id, "DeadlineMissed")}
    assert due == {"transition_meeting_within": start + 14 * DAY, "stalled_after": start + 21 * DAY}
    assert all(m.timestamp == start + 40 * DAY for m in facts(deals, deal_id, "DeadlineMissed"))


def test_exactly_once_across_a_restart(settings: Settings, clock: ManualClock) -> None:
    first = DealService(env=settings.eventsourcing_env(), policy=TIMED, clock=clock)
    deal_id = at_letter_of_intent(first)
    with scheduling(first, settings):
        clock.advance(15 * DAY)
        eventually(lambda: len(facts(first, deal_id, "DeadlineMissed")) == 1)
    first.close()
    again = DealService(env=settings.eventsourcing_env(), policy=TIMED, clock=clock)
    try:
        with scheduling(again, settings) as running:
            clock.advance(timedelta(hours=1))
            settled(running)
        assert [m.deadline for m in facts(again, deal_id, "DeadlineMissed")] == ["transition_meeting_within"]
    finally:
        again.close()


def test_two_schedulers_on_one_store_record_each_deadline_once(settings: Settings, clock: ManualClock) -> None:
    one = DealService(env=settings.eventsourcing_env(), policy=TIMED, clock=clock)
    other = DealService(env=settings.eventsourcing_env(), policy=TIMED, clock=clock)
    try:
        deal_ids = [at_letter_of_intent(one) for _ in range(5)]
        with scheduling(one, settings) as a, scheduling(other, settings) as b:
            eventually(lambda: a.scheduler.leading or b.scheduler.leading)
            time.sleep(0.2)
            assert [a.scheduler.leading, b.scheduler.leading].count(True) == 1  # one leads, the other stands by
            clock.advance(15 * DAY)
            eventually(lambda: all(len(facts(one, d, "DeadlineMissed")) == 1 for d in deal_ids))
            settled(a, b)
        assert all(len(facts(other, d, "DeadlineMissed")) == 1 for d in deal_ids)
    finally:
        one.close()
        other.close()


def test_two_services_keeping_time_on_the_same_deal_at_once_record_it_once(settings: Settings, clock: ManualClock) -> None:
    """Without the election too: the deal remembers, and the store's version check serialises the writers."""
    one = DealService(env=settings.eventsourcing_env(), policy=TIMED, clock=clock)
    other = DealService(env=settings.eventsourcing_env(), policy=TIMED, clock=clock)
    try:
        deal_id = at_letter_of_intent(one)
        clock.advance(15 * DAY)
        barrier = threading.Barrier(2)
        recorded: list[int] = []

        def keep(service: DealService) -> None:
            barrier.wait()
            recorded.append(service.keep_time(deal_id))

        threads = [threading.Thread(target=keep, args=(s,)) for s in (one, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert sorted(recorded) == [0, 1]
        assert len(facts(one, deal_id, "DeadlineMissed")) == 1
    finally:
        one.close()
        other.close()


def test_after_signing_outcomes_reminders_overdue_and_the_scorecard_over_http(
    deals: DealService, settings: Settings, clock: ManualClock
) -> None:
    deal_id = ready_to_sign(deals)
    clock.advance(20 * DAY)
    deals.handle("sign_contract", deal_id, None, ctx())  # within contract_within of the meeting, before a stall: met
    expectations = deals.get_deal(deal_id).expectations
    client_eid, provider_eid = (e.id for e in sorted(expectations.values(), key=lambda e: e.side))
    due_at = expectations[client_eid].due_at
    with signed_in(TestClient(service_app(settings, service=deals, keys=TEST_KEYS))) as client:
        marked = client.post(f"/deals/{deal_id}/expectations/{client_eid}/outcome", json={"met": True, "evidence": "12 reports sent"})
        assert marked.status_code == 200, marked.text
        assert marked.json()["scorecard"]["client"] == {"met": 1, "missed": 0, "overdue": 0, "pending": 0}
        again = client.post(f"/deals/{deal_id}/expectations/{client_eid}/outcome", json={"met": False, "evidence": "x"})
        assert (again.status_code, again.json()["code"]) == (409, "already_marked")
        bad = client.post(f"/deals/{deal_id}/expectations/{provider_eid}/outcome", json={"met": "yes", "evidence": ""})
        assert bad.status_code == 422

        clock.set(due_at - 7 * DAY)
        eventually(lambda: len(facts(deals, deal_id, "ExpectationDueSoon")) == 1)
        clock.set(due_at)
        eventually(lambda: len(facts(deals, deal_id, "ExpectationOverdue")) == 1)
        view = client.get(f"/deals/{deal_id}").json()
        assert view["overdue"] is True
        assert view["scorecard"]["provider"] == {"met": 0, "missed": 0, "overdue": 1, "pending": 0}
        assert client.get("/deals", params={"overdue": "true"}).json()["items"][0]["id"] == str(deal_id)
        assert "overdue" in client.get(f"/deals/{deal_id}/health").json()["verdict"]

        missed = client.post(f"/deals/{deal_id}/expectations/{provider_eid}/outcome", json={"met": False, "evidence": "data arrived late"})
        assert missed.status_code == 200
        assert client.get("/deals", params={"overdue": "true"}).json()["items"] == []
        assert client.get(f"/deals/{deal_id}").json()["scorecard"]["provider"] == {"met": 0, "missed": 1, "overdue": 0, "pending": 0}
    assert facts(deals, deal_id, "DeadlineMissed") == []  # signed in time, then no deadline of an open deal applies
    assert [event_type(e) for e in deals.history(deal_id)][-4:] == [
        "ExpectationMet",
        "ExpectationDueSoon",
        "ExpectationOverdue",
        "ExpectationMissed",
    ]


def test_the_deal_view_health_and_policy_show_the_deadlines(deals: DealService, settings: Settings, clock: ManualClock) -> None:
    deal_id = at_letter_of_intent(deals)
    with signed_in(TestClient(service_app(settings, service=deals, keys=TEST_KEYS))) as client:
        pending = client.get(f"/deals/{deal_id}").json()["deadlines"]
        assert [(d["deadline"], d["status"]) for d in pending] == [("transition_meeting_within", "pending"), ("stalled_after", "pending")]
        assert client.get(f"/deals/{deal_id}/health").json()["verdict"].startswith("Healthy")
        clock.advance(15 * DAY)
        eventually(lambda: client.get(f"/deals/{deal_id}").json()["overdue"])
        shown = client.get(f"/deals/{deal_id}").json()["deadlines"]
        assert ("transition_meeting_within", "missed") in [(d["deadline"], d["status"]) for d in shown]
        health = client.get(f"/deals/{deal_id}/health").json()
        assert health["verdict"].startswith("Watch")
        assert any("transition_meeting_within" in sign for sign in health["warning_signs"])
        assert client.get("/policy").json()["deadlines"] == {
            "transition_meeting_within": "14d",
            "contract_within": "30d",
            "stalled_after": "21d",
            "expectation_reminder": "7d",
        }
        listed = client.get("/deals", params={"overdue": "true"}).json()["items"]
        assert [(d["id"], d["overdue"]) for d in listed] == [(str(deal_id), True)]


def test_the_schedule_is_rebuilt_from_the_log(deals: DealService, settings: Settings, clock: ManualClock) -> None:
    deal_id = at_letter_of_intent(deals)
    deals.recorder.replace_summaries([])  # the read model lost
    assert deals.due_deals(10) == []
    deals.rebuild_read_model()
    clock.advance(15 * DAY)
    assert deals.due_deals(10) == [deal_id]
    assert deals.next_due() == deals.get_deal(deal_id).letter_of_intent_at + 14 * DAY


def test_an_expectation_recorded_with_the_clock_is_judged_by_the_clocks_today(deals: DealService, clock: ManualClock) -> None:
    deal_id = at_letter_of_intent(deals)
    clock.advance(100 * DAY)
    yesterday = (clock.now() - DAY).date()
    with pytest.raises(InvalidCommand, match="must not be in the past"):
        deals.handle("record_expectation", deal_id, expectation(Side.CLIENT).model_copy(update={"due": yesterday}), ctx())


def test_a_store_from_before_deadlines_is_scheduled_at_the_first_start(deals: DealService, settings: Settings, clock: ManualClock) -> None:
    deal_id = at_letter_of_intent(deals)
    (row,) = deals.recorder.select_summaries(stage=None, owner=None, after=None, limit=10)
    # As the row was written by a version without deadlines: no schedule.
    deals.recorder.replace_summaries([replace(row, overdue=None, due_from={})])
    assert deals.unscheduled_deals(10) == [deal_id]
    clock.advance(15 * DAY)
    assert deals.due_deals(10) == []  # the schedule does not know it yet
    with scheduling(deals, settings):
        eventually(lambda: len(facts(deals, deal_id, "DeadlineMissed")) == 1)
    assert deals.unscheduled_deals(10) == []
    (rewritten,) = deals.recorder.select_summaries(stage=None, owner=None, after=None, limit=10)
    assert rewritten.overdue is True


def test_a_late_meeting_records_the_missed_deadline_first_though_no_scheduler_ran(deals: DealService, clock: ManualClock) -> None:
    """The command keeps time before its own facts: the meeting held late makes good a missed deadline."""
    deal_id = at_letter_of_intent(deals)
    clock.advance(20 * DAY)
    deals.handle("hold_transition_meeting", deal_id, meeting(), ctx())
    assert [event_type(e) for e in deals.history(deal_id)][-2:] == ["DeadlineMissed", "TransitionMeetingHeld"]
    (missed,) = facts(deals, deal_id, "DeadlineMissed")
    assert (missed.deadline, missed.actor, missed.timestamp) == ("transition_meeting_within", "dealflow", clock.now())
    view = deals.get_deal(deal_id)
    assert [(m.deadline, m.made_good_at) for m in view.missed_deadlines] == [("transition_meeting_within", clock.now())]


def test_a_deal_with_every_fact_of_time_snapshots_and_loads_as_its_events_replay(settings: Settings, deals: DealService, clock: ManualClock) -> None:
    deal_id = ready_to_sign(deals)
    clock.advance(31 * DAY)  # the contract (30 d) and a quiet spell (21 d) both missed
    deals.handle("sign_contract", deal_id, None, ctx())
    assert {m.deadline for m in facts(deals, deal_id, "DeadlineMissed")} == {"contract_within", "stalled_after"}
    client_eid, provider_eid = (e.id for e in sorted(deals.get_deal(deal_id).expectations.values(), key=lambda e: e.side))
    deals.handle("record_expectation_outcome", deal_id, c.RecordExpectationOutcome(met=True, evidence="reports sent"), ctx(), expectation_id=client_eid)
    clock.set(deals.get_deal(deal_id).expectations[provider_eid].due_at)
    assert deals.keep_time(deal_id) == 1  # overdue (the reminder's moment had passed unrecorded: both kinds once)
    deals.handle("record_expectation_outcome", deal_id, c.RecordExpectationOutcome(met=False, evidence="late"), ctx(), expectation_id=provider_eid)
    deals.take_snapshot(deal_id)

    fresh = DealService(env=settings.eventsourcing_env(), policy=TIMED, clock=clock)
    try:
        assert [s.originator_version for s in fresh.snapshots.get(deal_id)] == [deals.get_deal(deal_id).version]  # type: ignore[union-attr]
        loaded = fresh.get_deal(deal_id)
        replayed = fresh.project_from(fresh.history(deal_id))
        assert {k: v for k, v in vars(loaded).items() if k != "_pending_events"} == {k: v for k, v in vars(replayed).items() if k != "_pending_events"}
        assert Audit(fresh).verify(deal_id).intact
    finally:
        fresh.close()


def test_a_deal_that_cannot_keep_time_neither_spins_the_scheduler_nor_crowds_out_the_others(
    deals: DealService, settings: Settings, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scheduler_module, "BATCH", 2)
    deal_id = at_letter_of_intent(deals)
    (row,) = deals.recorder.select_summaries(stage=None, owner=None, after=None, limit=10)
    # Rows whose deals have no events (a damaged store): due first, and each fails.
    orphans = [
        replace(row, deal_id=str(uuid4()), opened_at=row.opened_at - DAY * n, due_from={k: v - DAY * n for k, v in row.due_from.items()})
        for n in range(1, 4)
    ]
    with deals.recorder.datastore.transaction(commit=True) as cursor:
        deals.recorder._upsert_summaries(cursor, orphans)
    clock.advance(15 * DAY)
    with scheduling(deals, settings) as running:
        eventually(lambda: len(facts(deals, deal_id, "DeadlineMissed")) == 1)
        settled(running)
        seen = running.scheduler.passes
        time.sleep(1.0)
        # Still due, still failing: looked at again at the next recheck (or wake), not in a loop.
        assert running.scheduler.passes - seen <= 3, running.scheduler.passes - seen
