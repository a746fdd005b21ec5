"""Walk-away conditions: raised by the Deal from a fact and the policy, resolved by a later fact, waived by an approver."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.errors import CommandRefused, InvalidCommand, NotFound, SigningRefused
from dealflow.deal_lifecycle.domain.health import assess
from dealflow.deal_lifecycle.domain.model import ConditionKind, ConditionStatus, Decision, Side, Stage
from dealflow.deal_lifecycle.domain.policy import ConcessionBalance
from tests.support import BY, LATER, POLICY, TODAY, domain_deal_in_meeting


def prospect() -> Deal:
    return Deal.open(title="Acme payroll", client_name="Acme Ltd", owner="ann", by=BY)


def signable() -> Deal:
    deal = domain_deal_in_meeting()
    for side in Side:
        eid = deal.record_expectation(
            side=side, statement=f"{side} need", metric="m", target="t", due=LATER, priority=1, today=TODAY, by=BY
        )
        deal.decide_expectation(eid, agreed=True, reason=None, policy=POLICY, by=BY)
    return deal


def open_conditions(deal: Deal) -> list[tuple[str, str]]:
    return [(str(c.kind), c.subject) for c in deal.conditions.values() if c.is_open]


def only(deal: Deal, kind: ConditionKind):  # noqa: ANN201
    [condition] = [c for c in deal.conditions.values() if c.kind is kind]
    return condition


def raised_events(deal: Deal) -> list:
    return [e for e in deal.collect_events() if type(e).__name__ == "WalkAwayConditionRaised"]


# -- term_beyond_limit -------------------------------------------------------------------


def test_a_client_demand_beyond_the_private_limit_raises_a_condition_with_evidence() -> None:
    deal = prospect()
    deal.propose_term(term="payment_terms_days", value=90, side=Side.CLIENT, policy=POLICY, by=BY)
    condition = only(deal, ConditionKind.TERM_BEYOND_LIMIT)
    assert condition.subject == "payment_terms_days"
    assert condition.evidence == {"term": "payment_terms_days", "value": 90, "limit": 60.0, "public": 45.0, "worse": "higher"}
    assert condition.policy_version == POLICY.version
    [raised] = raised_events(deal)
    assert raised.actor == "dealflow", "conditions are raised by the service, not by the caller"


def test_a_demand_between_public_and_limit_raises_nothing() -> None:
    deal = prospect()
    deal.propose_term(term="payment_terms_days", value=60, side=Side.CLIENT, policy=POLICY, by=BY)
    assert deal.conditions == {}


def test_revising_the_demand_within_the_limit_resolves_the_condition() -> None:
    deal = prospect()
    deal.propose_term(term="payment_terms_days", value=90, side=Side.CLIENT, policy=POLICY, by=BY)
    deal.propose_term(term="payment_terms_days", value=95, side=Side.CLIENT, policy=POLICY, by=BY)
    assert len(deal.conditions) == 1, "one open condition per term, however often it is demanded"
    deal.propose_term(term="payment_terms_days", value=55, side=Side.CLIENT, policy=POLICY, by=BY)
    condition = only(deal, ConditionKind.TERM_BEYOND_LIMIT)
    assert condition.status is ConditionStatus.RESOLVED
    assert "revised to 55" in (condition.closed_because or "")


def test_lower_is_worse_terms_are_judged_the_other_way() -> None:
    deal = prospect()
    deal.propose_term(term="contract_length_months", value=6, side=Side.CLIENT, policy=POLICY, by=BY)
    assert open_conditions(deal) == [("term_beyond_limit", "contract_length_months")]


def test_agreeing_beyond_the_limit_raises_and_agreeing_within_resolves_with_a_concession() -> None:
    deal = prospect()
    deal.agree_term(term="discount_percent", value=15, policy=POLICY, by=BY)
    assert open_conditions(deal) == [("term_beyond_limit", "discount_percent")]
    deal.agree_term(term="discount_percent", value=5, policy=POLICY, by=BY)
    assert open_conditions(deal) == []
    # The second agreement replaces the first: one term, one concession.
    assert [(c.by, c.term, c.what) for c in deal.recent_concessions] == [
        (Side.PROVIDER, "discount_percent", "discount_percent agreed at 5 (public position 0)")
    ]


def test_agreeing_better_than_the_public_position_is_a_concession_by_the_client() -> None:
    deal = prospect()
    deal.agree_term(term="payment_terms_days", value=30, policy=POLICY, by=BY)
    assert [(c.by, c.what) for c in deal.recent_concessions] == [
        (Side.CLIENT, "payment_terms_days agreed at 30 (public position 45)")
    ]


def test_the_firm_does_not_propose_past_its_own_limit_and_unknown_terms_are_refused() -> None:
    deal = prospect()
    with pytest.raises(InvalidCommand) as beyond:
        deal.propose_term(term="payment_terms_days", value=75, side=Side.PROVIDER, policy=POLICY, by=BY)
    assert beyond.value.field == "value"
    with pytest.raises(InvalidCommand) as unknown:
        deal.propose_term(term="free_lunches", value=1, side=Side.CLIENT, policy=POLICY, by=BY)
    assert unknown.value.field == "term"
    assert deal.version == 1


# -- non_negotiable_refused ----------------------------------------------------------------


def test_a_refused_non_negotiable_raises_until_the_client_accepts_it() -> None:
    deal = prospect()
    deal.refuse_non_negotiable(name="msa_signed_first", reason="legal is slow", policy=POLICY, by=BY)
    condition = only(deal, ConditionKind.NON_NEGOTIABLE_REFUSED)
    assert condition.evidence["description"] == "The MSA is signed before any project agreement"
    deal.accept_non_negotiable(name="msa_signed_first", policy=POLICY, by=BY)
    assert only(deal, ConditionKind.NON_NEGOTIABLE_REFUSED).status is ConditionStatus.RESOLVED
    with pytest.raises(InvalidCommand):
        deal.refuse_non_negotiable(name="free_coffee", reason=None, policy=POLICY, by=BY)


# -- provider_expectation_rejected and promise_rejected ---------------------------------------


def test_the_client_rejecting_a_provider_expectation_raises_until_it_is_withdrawn() -> None:
    deal = domain_deal_in_meeting()
    mine = deal.record_expectation(
        side=Side.PROVIDER, statement="data by the 5th", metric="m", target="t", due=LATER, priority=1, today=TODAY, by=BY
    )
    theirs = deal.record_expectation(
        side=Side.CLIENT, statement="reports", metric="m", target="t", due=LATER, priority=1, today=TODAY, by=BY
    )
    deal.decide_expectation(theirs, agreed=False, reason="no", policy=POLICY, by=BY)
    assert deal.conditions == {}, "the firm rejecting a client expectation is not a walk-away condition"
    deal.decide_expectation(mine, agreed=False, reason="we cannot", policy=POLICY, by=BY)
    assert open_conditions(deal) == [("provider_expectation_rejected", mine)]
    deal.withdraw_expectation(mine, reason="refined into a weekly file", by=BY)
    assert open_conditions(deal) == []


def test_operations_rejecting_a_promise_raises_until_it_is_renegotiated_or_withdrawn() -> None:
    deal = domain_deal_in_meeting()
    first = deal.record_sales_promise(statement="go-live in 10 days", by=BY)
    second = deal.record_sales_promise(statement="free training", by=BY)
    for promise in (first, second):
        deal.decide_sales_promise(promise, accepted=False, reason="cannot staff it", policy=POLICY, by=BY)
    assert sorted(open_conditions(deal)) == sorted([("promise_rejected", first), ("promise_rejected", second)])
    deal.renegotiate_sales_promise(first, statement="go-live in 30 days", by=BY)
    assert deal.sales_promises[first].decision is Decision.PENDING
    assert deal.sales_promises[first].statement == "go-live in 30 days"
    deal.withdraw_sales_promise(second, reason="not offered after all", by=BY)
    assert open_conditions(deal) == []
    with pytest.raises(CommandRefused, match="only a rejected one"):
        deal.renegotiate_sales_promise(first, statement="again", by=BY)


# -- concession_imbalance ---------------------------------------------------------------------


def test_the_firm_giving_more_than_the_threshold_beyond_what_it_received_raises() -> None:
    deal = prospect()
    for n in range(3):
        deal.record_concession(side=Side.PROVIDER, what=f"gift {n}", policy=POLICY, by=BY)
    condition = only(deal, ConditionKind.CONCESSION_IMBALANCE)
    assert condition.evidence["given"] == 3 and condition.evidence["received"] == 0
    deal.record_concession(side=Side.CLIENT, what="case study rights", policy=POLICY, by=BY)
    assert only(deal, ConditionKind.CONCESSION_IMBALANCE).status is ConditionStatus.RESOLVED


def test_winning_nothing_at_all_raises_when_the_policy_says_the_firm_must_win_something() -> None:
    lenient = replace(POLICY, concessions=ConcessionBalance(max_imbalance=10, must_win_something_after=2))
    deal = prospect()
    deal.record_concession(side=Side.PROVIDER, what="gift 1", policy=lenient, by=BY)
    assert deal.conditions == {}
    deal.record_concession(side=Side.PROVIDER, what="gift 2", policy=lenient, by=BY)
    assert "won nothing" in only(deal, ConditionKind.CONCESSION_IMBALANCE).evidence["rule"]


def test_a_concession_while_still_a_prospect_is_flagged_early() -> None:
    deal = prospect()
    deal.record_concession(side=Side.PROVIDER, what="free discovery workshop", policy=POLICY, by=BY)
    deal.sign_letter_of_intent(by=BY)
    deal.record_concession(side=Side.PROVIDER, what="extra report", policy=POLICY, by=BY)
    assert [(c.stage, c.early) for c in deal.recent_concessions] == [("prospect", True), ("letter_of_intent", False)]


# -- client_disqualified ---------------------------------------------------------------------


def test_right_client_criteria_raise_per_criterion_and_resolve_when_met() -> None:
    deal = prospect()
    deal.record_client_facts(annual_value=20_000, industry="Gambling", policy=POLICY, by=BY)
    assert sorted(open_conditions(deal)) == [
        ("client_disqualified", "excluded_industries"),
        ("client_disqualified", "min_annual_value"),
    ]
    deal.record_client_facts(annual_value=80_000, industry=None, policy=POLICY, by=BY)
    assert open_conditions(deal) == [("client_disqualified", "excluded_industries")]
    assert deal.client_facts == {"annual_value": 80_000, "industry": "Gambling"}
    with pytest.raises(InvalidCommand):
        deal.record_client_facts(annual_value=None, industry=None, policy=POLICY, by=BY)


# -- waivers and signing ----------------------------------------------------------------------


def test_a_waiver_records_the_role_it_was_made_under_and_only_an_open_condition_is_waived() -> None:
    # Who may waive is the command table's to say (tests/unit/test_access.py); the deal records under which role.
    deal = prospect()
    deal.propose_term(term="payment_terms_days", value=90, side=Side.CLIENT, policy=POLICY, by=BY)
    condition = only(deal, ConditionKind.TERM_BEYOND_LIMIT)
    deal.waive_condition(condition.id, reason="strategic client", role="approver", by=BY)
    assert only(deal, ConditionKind.TERM_BEYOND_LIMIT).status is ConditionStatus.WAIVED
    assert deal.pending_events[-1].role == "approver"
    with pytest.raises(CommandRefused, match="already waived"):
        deal.waive_condition(condition.id, reason="again", role="approver", by=BY)
    with pytest.raises(NotFound):
        deal.waive_condition("nope", reason="x", role="approver", by=BY)


def test_signing_is_blocked_while_a_condition_is_open_and_allowed_once_it_is_resolved() -> None:
    deal = signable()
    deal.refuse_non_negotiable(name="msa_signed_first", reason=None, policy=POLICY, by=BY)
    with pytest.raises(SigningRefused) as refused:
        deal.sign_contract(by=BY)
    condition = only(deal, ConditionKind.NON_NEGOTIABLE_REFUSED)
    assert [(b.code, b.subject_id) for b in refused.value.blockers] == [("open_walk_away_condition", condition.id)]
    deal.accept_non_negotiable(name="msa_signed_first", policy=POLICY, by=BY)
    deal.sign_contract(by=BY)
    assert deal.stage == Stage.CONTRACT_SIGNED


def test_signing_is_allowed_once_an_approver_waives_the_condition() -> None:
    deal = signable()
    deal.propose_term(term="discount_percent", value=25, side=Side.CLIENT, policy=POLICY, by=BY)
    with pytest.raises(SigningRefused):
        deal.sign_contract(by=BY)
    deal.waive_condition(only(deal, ConditionKind.TERM_BEYOND_LIMIT).id, reason="board approved", role="approver", by=BY)
    deal.sign_contract(by=BY)
    assert deal.stage == Stage.CONTRACT_SIGNED


def test_every_condition_kind_carries_the_policy_version() -> None:
    deal = domain_deal_in_meeting()
    deal.propose_term(term="payment_terms_days", value=90, side=Side.CLIENT, policy=POLICY, by=BY)
    deal.refuse_non_negotiable(name="msa_signed_first", reason=None, policy=POLICY, by=BY)
    deal.record_client_facts(annual_value=1, industry=None, policy=POLICY, by=BY)
    for n in range(3):
        deal.record_concession(side=Side.PROVIDER, what=f"gift {n}", policy=POLICY, by=BY)
    eid = deal.record_expectation(
        side=Side.PROVIDER, statement="s", metric="m", target="t", due=LATER, priority=1, today=TODAY, by=BY
    )
    deal.decide_expectation(eid, agreed=False, reason=None, policy=POLICY, by=BY)
    pid = deal.record_sales_promise(statement="p", by=BY)
    deal.decide_sales_promise(pid, accepted=False, reason=None, policy=POLICY, by=BY)
    raised = raised_events(deal)
    assert {e.kind for e in raised} == {str(k) for k in ConditionKind}
    assert {e.policy_version for e in raised} == {POLICY.version}


# -- impasse and escalation --------------------------------------------------------------------


def test_escalation_needs_an_open_impasse_and_tried_strategies() -> None:
    deal = prospect()
    with pytest.raises(NotFound):
        deal.escalate(impasse_id="nope", to="CFO", counterpart_consented=True, strategies_tried=["trade"], by=BY)
    impasse = deal.declare_impasse(topic="payment terms", by=BY)
    with pytest.raises(InvalidCommand):
        deal.escalate(impasse_id=impasse, to="CFO", counterpart_consented=True, strategies_tried=[], by=BY)
    deal.escalate(impasse_id=impasse, to="CFO", counterpart_consented=False, strategies_tried=["trade a nice-to-have"], by=BY)
    deal.resolve_impasse(impasse, how="CFO agreed 60 days", by=BY)
    with pytest.raises(CommandRefused, match="open impasse"):
        deal.escalate(impasse_id=impasse, to="CEO", counterpart_consented=True, strategies_tried=["x"], by=BY)
    assert [e.to for e in deal.escalations] == ["CFO"]


# -- relationship health -------------------------------------------------------------------------


def test_health_names_the_classic_sign_of_a_relationship_going_wrong() -> None:
    deal = prospect()
    assert assess(deal).verdict.startswith("Healthy")
    deal.record_concession(side=Side.CLIENT, what="case study", policy=POLICY, by=BY)
    for n in range(3):
        deal.record_concession(side=Side.PROVIDER, what=f"gift {n}", policy=POLICY, by=BY)
    deal.propose_term(term="payment_terms_days", value=120, side=Side.CLIENT, policy=POLICY, by=BY)
    health = assess(deal)
    assert (health.given, health.received) == (3, 1)
    assert health.by_stage["prospect"] == {"given": 3, "received": 1}
    assert health.early_concessions == 4
    assert health.verdict.startswith("At risk: 1 walk-away condition(s) open (term_beyond_limit)")
    assert any("classic sign" in sign for sign in health.warning_signs)


def test_a_walked_away_deal_is_closed_and_its_health_advises_nothing() -> None:
    deal = prospect()
    deal.propose_term(term="payment_terms_days", value=120, side=Side.CLIENT, policy=POLICY, by=BY)
    [condition] = [c.id for c in deal.conditions.values()]
    deal.walk_away(reason="beyond our limits", cited_conditions=[condition], by=BY)
    verdict = assess(deal).verdict
    assert verdict == "Closed: the firm walked away, with 1 walk-away condition(s) open when it did; the firm has given 0 concession(s) and received 0."
    assert "walk away" not in verdict and "Resolve" not in verdict


def test_health_watches_early_concessions_without_open_conditions() -> None:
    deal = prospect()
    deal.record_concession(side=Side.PROVIDER, what="free workshop", policy=POLICY, by=BY)
    verdict = assess(deal).verdict
    assert verdict.startswith("Watch:")
    assert "1 concession(s) made while still a prospect" in verdict
