"""A deal's size is bounded, and so is every event it records: the largest events the bounds allow
stay far under what NATS carries (its default max_payload is 1 MB; JetStream refuses headers over 64 KB)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from dealflow.deal_lifecycle.adapters.bus import envelope
from dealflow.deal_lifecycle.application import commands as c
from dealflow.deal_lifecycle.application.views import COMMAND_VIEW_ITEMS, command_view, deal_view
from dealflow.deal_lifecycle.domain import bounds
from dealflow.deal_lifecycle.domain.attempts import SigningAttempts
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.errors import MAX_BLOCKERS_SHOWN, DealLimitReached, InvalidCommand, SigningRefused
from dealflow.deal_lifecycle.domain.model import Attribution, Participant, Role, Side
from dealflow.deal_lifecycle.entrypoints.refusals import error_body, status_of
from tests.support import BY, LATER, POLICY, TODAY, domain_deal_in_meeting

# The budgets this test holds every event to.
BODY_BUDGET = 256 * 1024
HEADERS_BUDGET = 8 * 1024
# The longest texts the command payloads take (commands.py), checked below. An astral character
# is the costliest: 12 bytes as a JSON escape in an event body, 4 in a UTF-8 header.
TEXT, NAME = 2000, 200
WIDE = "\U0001f600"


def wide(length: int) -> str:
    return WIDE * length


def test_the_text_bounds_assumed_here_are_the_payloads_own() -> None:
    c.RecordSalesPromise(statement=wide(TEXT))
    c.OpenDeal(title=wide(NAME), client_name="Acme", owner="ann")
    with pytest.raises(ValidationError):
        c.RecordSalesPromise(statement=wide(TEXT + 1))
    with pytest.raises(ValidationError):
        c.OpenDeal(title=wide(NAME + 1), client_name="Acme", owner="ann")


def limit_reached(action: Callable[[], Any]) -> DealLimitReached:
    with pytest.raises(DealLimitReached) as refused:
        action()
    return refused.value


def test_a_deal_holds_at_most_its_bound_of_promises_and_says_what_is_full() -> None:
    deal = domain_deal_in_meeting()
    for n in range(bounds.MAX_PROMISES):
        deal.record_sales_promise(statement=f"promise {n}", by=BY)
    version = deal.version
    refusal = limit_reached(lambda: deal.record_sales_promise(statement="one more", by=BY))
    assert (refusal.code, refusal.what, refusal.limit) == ("deal_limit_reached", "Sales promises", bounds.MAX_PROMISES)
    assert "200" in refusal.message and "Sales promises" in refusal.message
    assert status_of(refusal) == 409
    assert error_body(refusal)["code"] == "deal_limit_reached"
    assert deal.version == version, "nothing recorded"


def test_expectations_impasses_and_escalations_are_bounded() -> None:
    deal = domain_deal_in_meeting()
    for n in range(bounds.MAX_EXPECTATIONS):
        deal.record_expectation(side=Side.CLIENT, statement=f"e{n}", metric="m", target="t", due=LATER, priority=1, today=TODAY, by=BY)
    limit_reached(lambda: deal.record_expectation(side=Side.CLIENT, statement="x", metric="m", target="t", due=LATER, priority=1, today=TODAY, by=BY))
    impasses = [deal.declare_impasse(topic=f"i{n}", by=BY) for n in range(bounds.MAX_IMPASSES)]
    limit_reached(lambda: deal.declare_impasse(topic="x", by=BY))
    for n in range(bounds.MAX_ESCALATIONS):
        deal.escalate(impasse_id=impasses[n % len(impasses)], to="cfo", counterpart_consented=True, strategies_tried=["ask"], by=BY)
    limit_reached(lambda: deal.escalate(impasse_id=impasses[0], to="cfo", counterpart_consented=True, strategies_tried=["ask"], by=BY))


# Concessions and conditions are judged against all before them, so filling the real bounds
# (1,000 each) takes seconds: the same rule is shown with smaller bounds.
def test_concessions_are_bounded_including_those_an_agreed_term_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bounds, "MAX_CONCESSIONS", 6)
    deal = domain_deal_in_meeting()
    for n in range(6):
        deal.record_concession(side=Side(("client", "provider")[n % 2]), what=f"c{n}", policy=POLICY, by=BY)
    assert limit_reached(lambda: deal.record_concession(side=Side.CLIENT, what="x", policy=POLICY, by=BY)).what == "concessions"
    # Agreeing a term away from the public position is a concession too: refused before anything is recorded.
    version = deal.version
    limit_reached(lambda: deal.agree_term(term="payment_terms_days", value=50, policy=POLICY, by=BY))
    assert deal.version == version
    deal.agree_term(term="payment_terms_days", value=45, policy=POLICY, by=BY)  # the public position: no concession


def test_walk_away_conditions_are_bounded_even_when_raised_again_and_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bounds, "MAX_CONDITIONS", 5)
    deal = domain_deal_in_meeting()
    pid = deal.record_sales_promise(statement="go-live in 30 days", by=BY)
    for n in range(5):
        deal.decide_sales_promise(pid, accepted=False, reason=None, policy=POLICY, by=BY)
        deal.renegotiate_sales_promise(pid, statement=f"go-live in {31 + n} days", by=BY)
    assert len(deal.conditions) == 5
    refusal = limit_reached(lambda: deal.decide_sales_promise(pid, accepted=False, reason=None, policy=POLICY, by=BY))
    assert refusal.what == "walk-away conditions"


def test_participants_and_an_escalations_strategies_are_bounded() -> None:
    deal = Deal.open(title="Acme", client_name="Acme Ltd", owner="ann", by=BY)
    deal.sign_letter_of_intent(by=BY)
    crowd = [Participant(f"p{n}", Role.CLIENT) for n in range(bounds.MAX_PARTICIPANTS + 1)]
    assert limit_reached(lambda: deal.hold_transition_meeting(participants=crowd, by=BY)).what == "participants"
    deal.hold_transition_meeting(participants=crowd[:-1], by=BY)
    limit_reached(lambda: deal.hold_transition_meeting(participants=crowd[-1:], by=BY))

    impasse = deal.declare_impasse(topic="price", by=BY)
    too_many = [f"s{n}" for n in range(bounds.MAX_STRATEGIES + 1)]
    too_long = ["x" * 2000] * 5
    for strategies in (too_many, too_long):
        with pytest.raises(InvalidCommand) as refused:
            deal.escalate(impasse_id=impasse, to="cfo", counterpart_consented=True, strategies_tried=strategies, by=BY)
        assert refused.value.field == "strategies_tried"


def test_a_refused_signing_names_at_most_its_bound_of_blockers_and_counts_them_all() -> None:
    deal = domain_deal_in_meeting()
    for _ in range(bounds.MAX_PROMISES):
        deal.record_sales_promise(statement=wide(TEXT), by=BY)
    with pytest.raises(SigningRefused) as refused:
        deal.sign_contract(by=BY)
    assert len(refused.value.blockers) == MAX_BLOCKERS_SHOWN
    assert refused.value.blockers_total == len(deal.blockers) > bounds.MAX_PROMISES
    assert f"and {refused.value.blockers_total - 10} more" in refused.value.message
    # A blocker quotes the start of the caller's text, never all of it.
    assert all(len(b.message) < 300 for b in deal.blockers)


def largest_deal_events() -> list[Any]:
    """Every kind of event a deal records, each as large as the bounds allow."""
    by = Attribution(actor=wide(NAME), correlation_id=wide(NAME))
    deal = Deal.open(title=wide(NAME), client_name=wide(NAME), owner=wide(NAME), by=by)
    deal.sign_letter_of_intent(by=by)
    crowd = [Participant(wide(NAME - 3) + str(n).zfill(3), Role.CLIENT) for n in range(bounds.MAX_PARTICIPANTS)]
    deal.hold_transition_meeting(participants=crowd, by=by)
    for side in Side:
        eid = deal.record_expectation(
            side=side, statement=wide(TEXT), metric=wide(NAME), target=wide(NAME), due=LATER, priority=99, today=TODAY, by=by
        )
        deal.decide_expectation(eid, agreed=False, reason=wide(TEXT), policy=POLICY, by=by)
        deal.withdraw_expectation(eid, reason=wide(TEXT), by=by)
    pid = deal.record_sales_promise(statement=wide(TEXT), by=by)
    deal.decide_sales_promise(pid, accepted=False, reason=wide(TEXT), policy=POLICY, by=by)
    deal.renegotiate_sales_promise(pid, statement=wide(TEXT), by=by)
    deal.withdraw_sales_promise(pid, reason=wide(TEXT), by=by)
    deal.propose_term(term="payment_terms_days", value=365, side=Side.CLIENT, policy=POLICY, by=by)
    deal.agree_term(term="payment_terms_days", value=365, policy=POLICY, by=by)
    deal.record_concession(side=Side.PROVIDER, what=wide(TEXT), policy=POLICY, by=by)
    deal.refuse_non_negotiable(name="msa_signed_first", reason=wide(TEXT), policy=POLICY, by=by)
    deal.accept_non_negotiable(name="msa_signed_first", policy=POLICY, by=by)
    deal.record_client_facts(annual_value=1.0, industry="gambling", policy=POLICY, by=by)
    impasse = deal.declare_impasse(topic=wide(TEXT), by=by)
    strategies = [wide(bounds.MAX_STRATEGIES_CHARACTERS // bounds.MAX_STRATEGIES)] * bounds.MAX_STRATEGIES
    deal.escalate(impasse_id=impasse, to=wide(NAME), counterpart_consented=False, strategies_tried=strategies, by=by)
    deal.resolve_impasse(impasse, how=wide(TEXT), by=by)
    open_ids = [cid for cid, condition in deal.conditions.items() if condition.is_open]
    deal.waive_condition(open_ids[0], reason=wide(TEXT), role="approver", by=by)
    deal.walk_away(reason=wide(TEXT), cited_conditions=list(deal.conditions)[: bounds.MAX_CITED_CONDITIONS], by=by)
    return deal.collect_events()


def largest_signing_refused() -> Any:
    by = Attribution(actor=wide(NAME), correlation_id=wide(NAME))
    deal = domain_deal_in_meeting()
    for _ in range(bounds.MAX_PROMISES):
        deal.record_sales_promise(statement=wide(TEXT), by=BY)
    for _ in range(bounds.MAX_EXPECTATIONS):
        deal.record_expectation(side=Side.CLIENT, statement=wide(TEXT), metric="m", target="t", due=LATER, priority=1, today=TODAY, by=BY)
    with pytest.raises(SigningRefused) as refused:
        deal.sign_contract(by=BY)
    log = SigningAttempts(deal_id=str(deal.id))
    log.refused(deal_version=deal.version, blockers=refused.value.blockers, blockers_total=refused.value.blockers_total, by=by)
    return log.collect_events()[-1]


def test_the_largest_events_the_bounds_allow_fit_the_budget() -> None:
    events = [*largest_deal_events(), largest_signing_refused()]
    kinds = {type(e).__name__ for e in events}
    assert {"TransitionMeetingHeld", "EscalatedOverCounterpart", "WalkAwayConditionRaised", "SigningRefused", "WalkedAway"} <= kinds
    for n, domain_event in enumerate(events, start=1):
        message = envelope(domain_event, n)
        headers = sum(len(k.encode()) + len(v.encode()) + 4 for k, v in message.headers.items())
        assert len(message.body) < BODY_BUDGET, (type(domain_event).__name__, len(message.body))
        assert headers < HEADERS_BUDGET, (type(domain_event).__name__, headers)


def test_a_refused_signing_event_counts_every_blocker() -> None:
    refused = largest_signing_refused()
    data = json.loads(envelope(refused, 1).body)["data"]
    assert len(data["blockers"]) == MAX_BLOCKERS_SHOWN
    assert data["blockers_total"] == bounds.MAX_PROMISES + bounds.MAX_EXPECTATIONS + 1  # and no provider expectation


def test_a_walk_away_conditions_evidence_quotes_caller_text_briefly() -> None:
    deal = domain_deal_in_meeting()
    pid = deal.record_sales_promise(statement="x" * TEXT, by=BY)
    deal.decide_sales_promise(pid, accepted=False, reason="y" * TEXT, policy=POLICY, by=BY)
    (condition,) = deal.conditions.values()
    assert len(condition.evidence["statement"]) <= 200 and len(condition.evidence["reason"]) <= 200
    assert condition.evidence["statement"].startswith("xxx")


def test_a_commands_answer_shows_the_last_items_of_a_large_deal_and_counts_them_all() -> None:
    deal = domain_deal_in_meeting()
    promises = [deal.record_sales_promise(statement=f"promise {n} " + "x" * 1900, by=BY) for n in range(bounds.MAX_PROMISES)]
    view = command_view(deal, limits=True, policy=POLICY)
    full = deal_view(deal, concessions=[], limits=True, policy=POLICY)
    assert set(full) <= set(view), "every key of the full view is kept"
    assert [p["id"] for p in view["promises"]] == promises[-COMMAND_VIEW_ITEMS:]
    assert view["counts"]["promises"] == bounds.MAX_PROMISES
    assert len(view["blockers"]) == COMMAND_VIEW_ITEMS and view["counts"]["blockers"] == len(full["blockers"])
    assert view["truncated"] is True and view["full_view"] == f"/deals/{deal.id}"
    assert len(json.dumps(view)) < 64 * 1024 < len(json.dumps(full))


def test_a_small_deals_answer_is_the_whole_deal() -> None:
    deal = domain_deal_in_meeting()
    deal.record_sales_promise(statement="go-live in 30 days", by=BY)
    view = command_view(deal, limits=True, policy=POLICY)
    assert view["truncated"] is False
    assert {k: v for k, v in view.items() if k not in ("truncated", "counts", "full_view")} == deal_view(deal, concessions=[], limits=True, policy=POLICY)


@pytest.mark.parametrize(
    ("term", "value"),
    [("payment_terms_days", -1), ("payment_terms_days", 366), ("discount_percent", 101), ("contract_length_months", 0), ("response_time_hours", 10**9)],
)
def test_a_term_value_the_term_cannot_take_is_refused_naming_value(term: str, value: float) -> None:
    deal = Deal.open(title="Acme", client_name="Acme Ltd", owner="ann", by=BY)
    for action in (
        lambda: deal.propose_term(term=term, value=value, side=Side.CLIENT, policy=POLICY, by=BY),
        lambda: deal.agree_term(term=term, value=value, policy=POLICY, by=BY),
    ):
        with pytest.raises(InvalidCommand) as refused:
            action()
        assert refused.value.field == "value" and "must be between" in refused.value.rule
        assert status_of(refused.value) == 422
    assert deal.version == 1 and deal.conditions == {}


def test_the_ends_of_a_terms_range_are_values_it_can_take() -> None:
    deal = Deal.open(title="Acme", client_name="Acme Ltd", owner="ann", by=BY)
    deal.propose_term(term="payment_terms_days", value=0, side=Side.CLIENT, policy=POLICY, by=BY)
    deal.propose_term(term="payment_terms_days", value=365, side=Side.CLIENT, policy=POLICY, by=BY)
    assert deal.terms["payment_terms_days"].client_demand == 365


def test_a_v1_refused_signing_reads_as_v2_counting_the_blockers_it_listed() -> None:
    from dataclasses import replace  # noqa: PLC0415

    from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, UUIDAsHex  # noqa: PLC0415

    transcoder = JSONTranscoder()
    transcoder.register(UUIDAsHex())
    transcoder.register(DatetimeAsISO())
    mapper: Mapper[Any] = Mapper(transcoder=transcoder)
    log = SigningAttempts(deal_id="c007472b-55fa-4014-b7e1-07ad86ac3720")
    blockers = [{"code": "stage", "message": "not yet", "subject_id": None}] * 3
    log._signing_refused(deal_id=log.deal_id, deal_version=4, blockers=blockers, blockers_total=3, actor="ann", correlation_id="c", on_behalf_of=None)  # noqa: SLF001
    stored = mapper.to_stored_event(log.collect_events()[-1])
    state = transcoder.decode(stored.state)
    assert state.pop("class_version") == 2
    del state["blockers_total"]  # as v1 stored it
    old = mapper.to_domain_event(replace(stored, state=transcoder.encode(state)))
    assert (old.blockers_total, len(old.blockers)) == (3, 3)
