"""Deadlines in the domain: each kind missed and met, recorded once, overdue until made good, and after
signing the expectations' outcomes, reminders, overdue facts and scorecard. Time is given, never read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import pytest
from eventsourcing.application import project_aggregate

from dealflow.deal_lifecycle.domain import deadlines
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.errors import CommandRefused
from dealflow.deal_lifecycle.domain.events import recorded_at
from dealflow.deal_lifecycle.domain.health import assess
from dealflow.deal_lifecycle.domain.lifecycle import NotAllowedAtStage
from dealflow.deal_lifecycle.domain.model import Attribution, Participant, Role, Side, Stage
from dealflow.deal_lifecycle.domain.policy import Deadlines, Policy
from tests.support import BY, POLICY

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
DEADLINES = Deadlines(
    transition_meeting_within=14 * DAY, contract_within=30 * DAY, stalled_after=21 * DAY, expectation_reminder=7 * DAY
)
TIMED = Policy(version="sha256:timed", terms=POLICY.terms, non_negotiables=POLICY.non_negotiables, deadlines=DEADLINES)
EVERYONE = [Participant("Sam", Role.SALES), Participant("Olu", Role.OPERATIONS), Participant("Cleo", Role.CLIENT)]


@contextmanager
def at(moment: datetime) -> Iterator[None]:
    with recorded_at(moment):
        yield


def keep_time(deal: Deal, moment: datetime, policy: Policy = TIMED) -> list[str]:
    """What keeping time at `moment` records, by event name."""
    before = len(deal.pending_events)
    with at(moment):
        deal.keep_time(now=moment, policy=policy, correlation_id="tick")
    return [type(e).__name__ for e in deal.pending_events[before:]]


def missed(deal: Deal) -> list[tuple[str, datetime]]:
    return [(str(m.deadline), m.due_at) for m in deal.missed_deadlines]


def opened(at_moment: datetime = T0) -> Deal:
    with at(at_moment):
        return Deal.open(title="Acme payroll", client_name="Acme Ltd", owner="ann", by=BY)


def at_letter_of_intent() -> Deal:
    deal = opened()
    with at(T0):
        deal.sign_letter_of_intent(by=BY)
    return deal


def in_meeting(moment: datetime) -> Deal:
    deal = at_letter_of_intent()
    with at(moment):
        deal.hold_transition_meeting(participants=EVERYONE, by=BY)
    return deal


def agreed(deal: Deal, side: Side, due: date, moment: datetime) -> str:
    with at(moment):
        eid = deal.record_expectation(
            side=side, statement=f"{side} report", metric="reports", target="12", due=due, priority=1, today=moment.date(), by=BY
        )
        deal.decide_expectation(eid, agreed=True, reason=None, policy=TIMED, by=BY)
    return eid


def signed(moment: datetime, *dues: tuple[Side, date]) -> tuple[Deal, list[str]]:
    deal = in_meeting(T0 + DAY)
    ids = [agreed(deal, side, due, T0 + DAY) for side, due in dues]
    with at(T0 + DAY):
        for side in Side:
            if not any(s is side for s, _ in dues):
                agreed(deal, side, (T0 + 400 * DAY).date(), T0 + DAY)
    with at(moment):
        deal.sign_contract(by=BY)
    return deal, ids


# -- the three deadlines of an open deal -----------------------------------------------------------


def test_no_transition_meeting_within_its_deadline_is_recorded_missed_at_the_moment_it_was_due() -> None:
    deal = at_letter_of_intent()
    assert keep_time(deal, T0 + 14 * DAY - timedelta(seconds=1)) == []
    assert keep_time(deal, T0 + 14 * DAY) == ["DeadlineMissed"]
    fact = deal.pending_events[-1]
    assert isinstance(fact, Deal.DeadlineMissed)
    assert (fact.deadline, fact.due_at, fact.counted_from) == ("transition_meeting_within", T0 + 14 * DAY, T0)
    assert (fact.actor, fact.policy_version) == ("dealflow", "sha256:timed")
    assert "transition meeting" in fact.expected
    assert fact.timestamp == T0 + 14 * DAY  # recorded when the clock said, not when the test ran


def test_a_deadline_that_passed_while_nobody_looked_is_recorded_with_the_moment_it_was_due() -> None:
    deal = at_letter_of_intent()
    # The service was down for 40 days: on catching up, each deadline carries its own due moment.
    assert keep_time(deal, T0 + 40 * DAY) == ["DeadlineMissed", "DeadlineMissed"]
    assert missed(deal) == [("transition_meeting_within", T0 + 14 * DAY), ("stalled_after", T0 + 21 * DAY)]


def test_no_contract_within_its_deadline_of_the_first_meeting_is_missed() -> None:
    deal = in_meeting(T0 + 2 * DAY)
    with at(T0 + 12 * DAY):  # a later session of the meeting does not restart the clock
        deal.hold_transition_meeting(participants=EVERYONE[:1], by=BY)
    assert keep_time(deal, T0 + 32 * DAY - timedelta(seconds=1)) == []
    assert keep_time(deal, T0 + 32 * DAY) == ["DeadlineMissed"]
    assert missed(deal) == [("contract_within", T0 + 32 * DAY)]


def test_a_deal_with_no_new_fact_for_the_stall_period_is_missed_and_a_later_stall_is_a_new_deadline() -> None:
    deal = opened()
    assert keep_time(deal, T0 + 21 * DAY) == ["DeadlineMissed"]
    assert deadlines.is_overdue(deal)
    assert keep_time(deal, T0 + 60 * DAY) == []  # the same quiet spell is missed once
    with at(T0 + 61 * DAY):
        deal.record_client_facts(annual_value=500_000, industry=None, policy=TIMED, by=BY)
    assert not deadlines.is_overdue(deal)  # made good by the new fact
    assert keep_time(deal, T0 + 82 * DAY) == ["DeadlineMissed"]
    assert missed(deal) == [("stalled_after", T0 + 21 * DAY), ("stalled_after", T0 + 82 * DAY)]


def test_the_services_own_facts_do_not_count_as_activity_on_a_stalled_deal() -> None:
    deal = opened()
    keep_time(deal, T0 + 21 * DAY)
    assert deal.last_activity_at == T0
    assert deadlines.due_from(deal) == {}  # nothing left to fall due until someone acts


def test_deadlines_met_in_time_are_never_reported() -> None:
    deal = in_meeting(T0 + 13 * DAY)
    assert keep_time(deal, T0 + 15 * DAY) == []
    statuses = {s.deadline: s for s in deadlines.statuses(deal, DEADLINES, TIMED.version)}
    assert statuses["transition_meeting_within"].status == "met"
    assert statuses["transition_meeting_within"].met_at == T0 + 13 * DAY
    assert statuses["contract_within"].status == "pending"
    assert statuses["contract_within"].due_at == T0 + 43 * DAY


@pytest.mark.parametrize("end", ["walk_away", "sign_contract"])
def test_a_deal_that_moved_on_is_never_reported(end: str) -> None:
    deal, _ = signed(T0 + 5 * DAY) if end == "sign_contract" else (at_letter_of_intent(), [])
    if end == "walk_away":
        with at(T0 + DAY):
            deal.walk_away(reason="not a fit", by=BY)
    assert [f for f in keep_time(deal, T0 + 300 * DAY) if f == "DeadlineMissed"] == []


def test_a_missed_deadline_is_overdue_until_what_was_expected_happens_and_stays_missed() -> None:
    deal = at_letter_of_intent()
    keep_time(deal, T0 + 15 * DAY)
    assert deadlines.is_overdue(deal)
    with at(T0 + 16 * DAY):
        deal.hold_transition_meeting(participants=EVERYONE, by=BY)
    assert not deadlines.is_overdue(deal)
    shown = next(s for s in deadlines.statuses(deal, DEADLINES, TIMED.version) if s.deadline == "transition_meeting_within")
    assert (shown.status, shown.met_at, shown.policy_version) == ("missed", T0 + 16 * DAY, "sha256:timed")


def test_a_missed_deadline_is_a_warning_that_does_not_block_signing() -> None:
    deal, _ = signed(T0 + DAY)  # a signable deal...
    later = in_meeting(T0 + DAY)
    for side in Side:
        agreed(later, side, (T0 + 400 * DAY).date(), T0 + DAY)
    keep_time(later, T0 + 40 * DAY)
    assert ("contract_within", T0 + 31 * DAY) in missed(later)
    assert later.blockers == []
    with at(T0 + 41 * DAY):
        later.sign_contract(by=BY)
    assert later.stage == Stage.CONTRACT_SIGNED
    assert not deadlines.is_overdue(later)
    assert deal.stage == Stage.CONTRACT_SIGNED


def test_a_policy_without_deadlines_records_nothing_before_signing() -> None:
    deal = at_letter_of_intent()
    assert keep_time(deal, T0 + 1000 * DAY, POLICY.__class__(version="v", terms={}, non_negotiables={})) == []


def test_each_deadline_is_recorded_once_even_after_replaying_the_history() -> None:
    deal = at_letter_of_intent()
    keep_time(deal, T0 + 15 * DAY)
    assert keep_time(deal, T0 + 15 * DAY) == []
    replayed = project_aggregate(None, deal.collect_events())
    assert replayed is not None
    assert keep_time(replayed, T0 + 16 * DAY) == []
    assert missed(replayed) == missed(deal)


def test_the_schedule_is_free_of_the_policy_and_follows_the_stage() -> None:
    deal = opened()
    assert deadlines.due_from(deal) == {"stalled_after": T0}
    with at(T0 + DAY):
        deal.sign_letter_of_intent(by=BY)
    assert deadlines.due_from(deal) == {"transition_meeting_within": T0 + DAY, "stalled_after": T0 + DAY}
    assert deadlines.offsets(DEADLINES) == {
        "transition_meeting_within": 14 * DAY,
        "contract_within": 30 * DAY,
        "stalled_after": 21 * DAY,
        "expectation_due_soon": -7 * DAY,
        "expectation_overdue": timedelta(0),
    }
    assert deadlines.offsets(Deadlines()) == {"expectation_overdue": timedelta(0)}


def test_an_open_missed_deadline_turns_a_healthy_verdict_to_watch_and_names_it() -> None:
    deal = at_letter_of_intent()
    assert assess(deal).verdict.startswith("Healthy")
    keep_time(deal, T0 + 15 * DAY)
    health = assess(deal)
    assert health.verdict.startswith("Watch")
    assert any("transition_meeting_within" in sign for sign in health.warning_signs)


# -- after signing: did we deliver? -----------------------------------------------------------------


def test_after_signing_each_agreed_expectation_is_marked_met_or_missed_and_counted_per_side() -> None:
    due = (T0 + 100 * DAY).date()
    deal, (client_eid, provider_eid) = signed(T0 + 5 * DAY, (Side.CLIENT, due), (Side.PROVIDER, due))
    with at(T0 + 50 * DAY):
        deal.record_expectation_outcome(client_eid, met=True, evidence="12 reports sent", by=BY)
        deal.record_expectation_outcome(provider_eid, met=False, evidence="data arrived late", by=BY)
    names = [type(e).__name__ for e in deal.pending_events[-2:]]
    assert names == ["ExpectationMet", "ExpectationMissed"]
    cards = deadlines.scorecard(deal.expectations)
    assert (cards["client"].met, cards["client"].missed) == (1, 0)
    assert (cards["provider"].met, cards["provider"].missed) == (0, 1)
    with pytest.raises(CommandRefused) as again:
        deal.record_expectation_outcome(client_eid, met=False, evidence="changed mind", by=BY)
    assert again.value.code == "already_marked"


def test_outcomes_are_recorded_only_after_signing_and_only_for_agreed_expectations() -> None:
    deal = in_meeting(T0 + DAY)
    eid = agreed(deal, Side.CLIENT, (T0 + 100 * DAY).date(), T0 + DAY)
    with pytest.raises(NotAllowedAtStage):
        deal.record_expectation_outcome(eid, met=True, evidence="early", by=BY)
    with at(T0 + DAY):
        rejected = deal.record_expectation(
            side=Side.PROVIDER, statement="x", metric="m", target="t", due=(T0 + 100 * DAY).date(), priority=2, today=T0.date(), by=BY
        )
        deal.decide_expectation(rejected, agreed=False, reason=None, policy=TIMED, by=BY)
        deal.withdraw_expectation(rejected, reason="refined", by=BY)
        agreed(deal, Side.PROVIDER, (T0 + 100 * DAY).date(), T0 + DAY)
        deal.sign_contract(by=BY)
    with pytest.raises(CommandRefused) as refused:
        deal.record_expectation_outcome(rejected, met=True, evidence="x", by=BY)
    assert refused.value.code == "not_agreed"
    # Nothing else is allowed after signing.
    with pytest.raises(NotAllowedAtStage):
        deal.record_concession(side=Side.CLIENT, what="x", policy=TIMED, by=BY)


def test_an_expectation_is_due_soon_a_reminder_before_the_end_of_its_due_date_then_overdue_each_once() -> None:
    due = date(2026, 6, 30)
    deal, (eid,) = signed(T0 + 5 * DAY, (Side.PROVIDER, due))
    due_at = datetime(2026, 7, 1, tzinfo=UTC)  # the end of the due date: "by" the date includes the day
    assert keep_time(deal, due_at - 7 * DAY - timedelta(seconds=1)) == []
    assert keep_time(deal, due_at - 7 * DAY) == ["ExpectationDueSoon"]
    assert keep_time(deal, due_at - DAY) == []
    assert keep_time(deal, due_at - timedelta(seconds=1)) == []
    assert keep_time(deal, due_at) == ["ExpectationOverdue"]
    assert keep_time(deal, due_at + 30 * DAY) == []
    fact = deal.pending_events[-1]
    assert isinstance(fact, Deal.ExpectationOverdue)
    assert (fact.expectation_id, fact.side, fact.due, fact.actor) == (eid, "provider", due, "dealflow")
    assert deadlines.is_overdue(deal)
    assert deadlines.scorecard(deal.expectations)["provider"].overdue == 1
    with at(due_at + 31 * DAY):
        deal.record_expectation_outcome(eid, met=True, evidence="delivered late", by=BY)
    assert not deadlines.is_overdue(deal)
    assert deadlines.scorecard(deal.expectations)["provider"] == deadlines.Scorecard(met=1, missed=0, overdue=0, pending=0)


def test_an_expectation_already_past_due_at_signing_is_overdue_not_due_soon() -> None:
    deal, _ = signed(T0 + 5 * DAY, (Side.CLIENT, (T0 + 10 * DAY).date()))
    assert keep_time(deal, T0 + 20 * DAY) == ["ExpectationOverdue"]


def test_a_marked_expectation_is_neither_reminded_nor_overdue() -> None:
    deal, (eid,) = signed(T0 + 5 * DAY, (Side.CLIENT, (T0 + 100 * DAY).date()))
    with at(T0 + 6 * DAY):
        deal.record_expectation_outcome(eid, met=True, evidence="early delivery", by=BY)
    assert keep_time(deal, T0 + 200 * DAY) == []


def test_a_snapshot_from_before_deadlines_counts_from_its_own_moment() -> None:
    moment = "2026-03-02T09:00:00+00:00"
    state = {"_modified_on": moment, "stage": "transition_meeting"}
    Deal.upcast_v2_v3(state)
    assert state["letter_of_intent_at"] == state["transition_meeting_at"] == state["last_activity_at"] == moment
    assert state["signed_at"] is None
    assert state["missed_deadlines"] == []
    prospect = {"_modified_on": moment, "stage": "prospect"}
    Deal.upcast_v2_v3(prospect)
    assert prospect["letter_of_intent_at"] is None


def test_a_commands_facts_happen_at_the_clocks_moment() -> None:
    deal = opened(T0)
    assert deal.created_on == deal.last_activity_at == T0
    with at(T0 + DAY):
        deal.sign_letter_of_intent(by=Attribution("bob", "c2"))
    assert deal.modified_on == deal.letter_of_intent_at == T0 + DAY
