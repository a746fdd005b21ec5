"""The Deal aggregate on its own: rules, blockers and replay, with no store and no I/O."""

from __future__ import annotations

from datetime import timedelta

import pytest
from eventsourcing.application import project_aggregate

from dealflow.deal_lifecycle.domain import deal as deal_module
from dealflow.deal_lifecycle.domain import events as events_module
from dealflow.deal_lifecycle.domain.deal import Deal, event_topics
from dealflow.deal_lifecycle.domain.errors import CommandRefused, InvalidCommand, NotFound, SigningRefused
from dealflow.deal_lifecycle.domain.lifecycle import NotAllowedAtStage
from dealflow.deal_lifecycle.domain.model import Decision, Participant, Role, Side, Stage
from tests.support import BY, FULL_ATTENDANCE, LATER, POLICY, TODAY, domain_deal_in_meeting


def record(deal: Deal, side: Side) -> str:
    return deal.record_expectation(
        side=side, statement=f"{side} need", metric="m", target="t", due=LATER, priority=1, today=TODAY, by=BY
    )


def signable() -> Deal:
    deal = domain_deal_in_meeting()
    for side in Side:
        deal.decide_expectation(record(deal, side), agreed=True, reason=None, policy=POLICY, by=BY)
    pid = deal.record_sales_promise(statement="go-live in 30 days", by=BY)
    deal.decide_sales_promise(pid, accepted=True, reason=None, policy=POLICY, by=BY)
    return deal


def codes(error: SigningRefused) -> list[str]:
    return [b.code for b in error.blockers]


def test_a_new_deal_is_a_prospect_and_its_events_carry_actor_and_correlation() -> None:
    deal = Deal.open(title="Acme payroll", client_name="Acme Ltd", owner="ann", by=BY)
    deal.sign_letter_of_intent(by=BY)
    assert deal.version == 2
    events = deal.collect_events()
    assert [type(e).__name__ for e in events] == ["DealOpened", "LetterOfIntentSigned"]
    assert all((e.actor, e.correlation_id) == (BY.actor, BY.correlation_id) for e in events)


def test_signing_is_allowed_when_every_condition_holds() -> None:
    deal = signable()
    assert deal.blockers == []
    deal.sign_contract(by=BY)
    assert deal.stage == Stage.CONTRACT_SIGNED


def test_signing_from_an_early_stage_names_every_blocker_including_the_stage() -> None:
    deal = Deal.open(title="Acme payroll", client_name="Acme Ltd", owner="ann", by=BY)
    with pytest.raises(SigningRefused) as refused:
        deal.sign_contract(by=BY)
    assert codes(refused.value) == [
        "stage",
        "missing_client_expectation",
        "missing_provider_expectation",
        "attendance_incomplete",
    ]
    assert deal.version == 1


def test_each_unagreed_expectation_and_unaccepted_promise_is_its_own_blocker() -> None:
    deal = domain_deal_in_meeting()
    pending = record(deal, Side.CLIENT)
    rejected = record(deal, Side.PROVIDER)
    deal.decide_expectation(rejected, agreed=False, reason="too vague", policy=POLICY, by=BY)
    promise = deal.record_sales_promise(statement="24/7 support", by=BY)
    with pytest.raises(SigningRefused) as refused:
        deal.sign_contract(by=BY)
    condition = next(iter(deal.conditions.values()))
    assert [(b.code, b.subject_id) for b in refused.value.blockers] == [
        ("expectation_not_agreed", pending),
        ("expectation_not_agreed", rejected),
        ("promise_not_accepted", promise),
        ("open_walk_away_condition", condition.id),
    ]


def test_a_rejected_promise_blocks_signing() -> None:
    deal = signable()
    promise = deal.record_sales_promise(statement="free training", by=BY)
    deal.decide_sales_promise(promise, accepted=False, reason="we cannot staff it", policy=POLICY, by=BY)
    with pytest.raises(SigningRefused) as refused:
        deal.sign_contract(by=BY)
    assert codes(refused.value) == ["promise_not_accepted", "open_walk_away_condition"]


@pytest.mark.parametrize("absent", list(Role))
def test_attendance_must_include_sales_operations_and_client(absent: Role) -> None:
    deal = Deal.open(title="Acme payroll", client_name="Acme Ltd", owner="ann", by=BY)
    deal.sign_letter_of_intent(by=BY)
    deal.hold_transition_meeting(participants=[p for p in FULL_ATTENDANCE if p.role != absent], by=BY)
    blockers = {b.code: b.message for b in deal.blockers}
    assert blockers["attendance_incomplete"].endswith(f"attended by {absent}")


def test_attendance_can_be_completed_in_a_later_session_of_the_meeting() -> None:
    deal = signable()
    late = Deal.open(title="x", client_name="y", owner="z", by=BY)
    late.sign_letter_of_intent(by=BY)
    late.hold_transition_meeting(participants=[Participant("Sam", Role.SALES)], by=BY)
    late.hold_transition_meeting(participants=[Participant("Olu", Role.OPERATIONS), Participant("Cleo", Role.CLIENT)], by=BY)
    assert {p.role for p in late.participants} == set(Role)
    assert deal.blockers == []


def test_withdrawn_expectations_and_promises_no_longer_block() -> None:
    deal = signable()
    extra = record(deal, Side.CLIENT)
    promise = deal.record_sales_promise(statement="free training", by=BY)
    assert {b.code for b in deal.blockers} == {"expectation_not_agreed", "promise_not_accepted"}
    deal.withdraw_expectation(extra, reason="refined into a measurable one", by=BY)
    deal.withdraw_sales_promise(promise, reason="not offered after all", by=BY)
    assert deal.blockers == []
    with pytest.raises(CommandRefused, match="already withdrawn"):
        deal.withdraw_expectation(extra, reason="again", by=BY)


def test_the_other_side_decides_an_expectation() -> None:
    deal = domain_deal_in_meeting()
    eid = record(deal, Side.PROVIDER)
    deal.decide_expectation(eid, agreed=True, reason=None, policy=POLICY, by=BY)
    agreed = deal.collect_events()[-1]
    assert type(agreed).__name__ == "ExpectationAgreed"
    assert agreed.agreed_by == "client"
    with pytest.raises(CommandRefused, match="already accepted"):
        deal.decide_expectation(eid, agreed=False, reason=None, policy=POLICY, by=BY)


def test_expectations_start_at_the_letter_of_intent_and_promises_at_the_meeting() -> None:
    deal = Deal.open(title="Acme payroll", client_name="Acme Ltd", owner="ann", by=BY)
    with pytest.raises(NotAllowedAtStage):
        record(deal, Side.CLIENT)
    deal.sign_letter_of_intent(by=BY)
    record(deal, Side.CLIENT)
    with pytest.raises(NotAllowedAtStage, match="record sales promise while the deal is at stage letter_of_intent"):
        deal.record_sales_promise(statement="x", by=BY)


def test_an_expectation_due_in_the_past_is_refused() -> None:
    deal = domain_deal_in_meeting()
    with pytest.raises(InvalidCommand) as invalid:
        deal.record_expectation(
            side=Side.CLIENT, statement="s", metric="m", target="t", due=TODAY - timedelta(days=1), priority=1, today=TODAY, by=BY
        )
    assert invalid.value.field == "due"
    assert deal.version == 3


def test_an_expectation_due_beyond_fifty_years_is_refused_and_the_last_day_allowed_is_due_in_time() -> None:
    deal = domain_deal_in_meeting()
    last = TODAY.replace(year=TODAY.year + 50, month=12, day=31)
    eid = deal.record_expectation(side=Side.CLIENT, statement="s", metric="m", target="t", due=last, priority=1, today=TODAY, by=BY)
    assert deal.expectations[eid].due_at.date() == last + timedelta(days=1)
    with pytest.raises(InvalidCommand) as invalid:
        deal.record_expectation(side=Side.CLIENT, statement="s", metric="m", target="t", due=last + timedelta(days=1), priority=1, today=TODAY, by=BY)
    assert (invalid.value.field, invalid.value.rule) == ("due", f"must be within 50 years (by {last.isoformat()})")


@pytest.mark.parametrize(("priority", "rule"), [(0, "must be 1 (highest) or more"), (100, "must be 99 (lowest) or less")])
def test_a_priority_outside_1_to_99_is_refused(priority: int, rule: str) -> None:
    deal = domain_deal_in_meeting()
    for allowed in (1, 99):
        deal.record_expectation(side=Side.CLIENT, statement="s", metric="m", target="t", due=LATER, priority=allowed, today=TODAY, by=BY)
    with pytest.raises(InvalidCommand) as invalid:
        deal.record_expectation(side=Side.CLIENT, statement="s", metric="m", target="t", due=LATER, priority=priority, today=TODAY, by=BY)
    assert (invalid.value.field, invalid.value.rule) == ("priority", rule)
    assert deal.version == 5


def test_deciding_an_unknown_promise_is_not_found() -> None:
    deal = domain_deal_in_meeting()
    with pytest.raises(NotFound):
        deal.decide_sales_promise("nope", accepted=True, reason=None, policy=POLICY, by=BY)


def test_walking_away_records_the_reason_and_is_final() -> None:
    deal = domain_deal_in_meeting()
    deal.walk_away(reason="client demanded 120-day payment terms", by=BY)
    assert (deal.stage, deal.walk_away_reason) == (Stage.WALKED_AWAY, "client demanded 120-day payment terms")
    with pytest.raises(NotAllowedAtStage):
        deal.walk_away(reason="again", by=BY)
    with pytest.raises(SigningRefused):
        deal.sign_contract(by=BY)


def test_no_walk_away_after_signing() -> None:
    deal = signable()
    deal.sign_contract(by=BY)
    with pytest.raises(NotAllowedAtStage):
        deal.walk_away(reason="too late", by=BY)


def test_replaying_history_never_runs_the_guards(monkeypatch: pytest.MonkeyPatch) -> None:
    deal = signable()
    deal.sign_contract(by=BY)
    events = deal.collect_events()

    def guard_must_not_run(*_: object, **__: object) -> str:
        raise AssertionError("a guard ran during replay")

    monkeypatch.setattr(deal_module, "permit", guard_must_not_run)
    monkeypatch.setattr(deal_module, "signing_blockers", guard_must_not_run)
    replayed = project_aggregate(None, events)
    assert replayed is not None
    assert (replayed.stage, replayed.version) == (Stage.CONTRACT_SIGNED, deal.version)
    assert replayed.expectations == deal.expectations
    assert all(e.decision is Decision.ACCEPTED for e in replayed.expectations.values())


def test_each_fact_says_how_it_changes_the_deal_and_is_the_deals_own() -> None:
    facts = [value for value in vars(Deal).values() if isinstance(value, type) and getattr(value, "TOPIC", None) in event_topics()]
    assert len(facts) == len(event_topics()) == 32
    for fact in facts:
        assert "apply" in vars(fact), f"{fact.__name__} does not say how it changes the deal"
        assert getattr(events_module, fact.__name__) is fact
        assert fact.TOPIC == f"dealflow:Deal.{fact.__name__}"


def test_every_fact_in_events_py_is_listed_on_the_deal() -> None:
    # The published schemas and the stored topics are read from the Deal's list: a fact defined in
    # events.py but not listed there would be stored yet never published as a schema.
    defined = {
        value
        for value in vars(events_module).values()
        if isinstance(value, type)
        and issubclass(value, (events_module.Event, events_module.Created))
        and value.__module__ == events_module.__name__
        and value not in (events_module.Event, events_module.Created)
    }
    listed = {value for value in vars(Deal).values() if isinstance(value, type) and getattr(value, "TOPIC", None) in event_topics()}
    assert defined == listed, sorted(c.__name__ for c in defined ^ listed)
