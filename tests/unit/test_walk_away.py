"""The walk-away table: one row per kind of condition, judged once per command on the state its facts left."""

from __future__ import annotations

from dealflow.deal_lifecycle.domain.deal import Deal, event_topics
from dealflow.deal_lifecycle.domain.model import ConditionKind, Side
from dealflow.deal_lifecycle.domain.walk_away import RULES
from tests.support import BY, POLICY, domain_deal_in_meeting


def conditions_recorded(deal: Deal) -> list[tuple[str, str, str]]:
    return [
        (type(e).__name__, e.kind if hasattr(e, "kind") else deal.conditions[e.condition_id].kind, getattr(e, "subject", ""))
        for e in deal.collect_events()
        if type(e).__name__.startswith("WalkAwayCondition")
    ]


def test_every_kind_of_condition_has_exactly_one_rule() -> None:
    assert sorted(str(rule.kind) for rule in RULES) == sorted(str(kind) for kind in ConditionKind)


def test_the_rules_are_judged_on_facts_of_the_deal() -> None:
    for rule in RULES:
        assert rule.opened_by, f"nothing opens {rule.kind}"
        assert rule.resolved_by, f"nothing resolves {rule.kind}"
        assert {fact.TOPIC for fact in (*rule.opened_by, *rule.resolved_by)} <= set(event_topics())


def test_agreeing_a_term_again_judges_the_balance_once_not_once_per_fact() -> None:
    """Withdrawing the term's old concession would restore the balance and its new one would break it
    again: judged once, on the state after both, the open condition simply stays open."""
    deal = domain_deal_in_meeting()
    for n in range(2):
        deal.record_concession(side=Side.PROVIDER, what=f"gift {n}", policy=POLICY, by=BY)
    deal.agree_term(term="discount_percent", value=5, policy=POLICY, by=BY)  # a third give
    assert conditions_recorded(deal) == [("WalkAwayConditionRaised", "concession_imbalance", "balance")]
    deal.agree_term(term="discount_percent", value=7, policy=POLICY, by=BY)
    events = [type(e).__name__ for e in deal.collect_events()]
    assert events == ["TermAgreed", "ConcessionWithdrawn", "ConcessionRecorded"]


def test_a_command_that_concerns_two_kinds_records_them_in_table_order() -> None:
    deal = domain_deal_in_meeting()
    for n in range(2):
        deal.record_concession(side=Side.PROVIDER, what=f"gift {n}", policy=POLICY, by=BY)
    deal.collect_events()
    deal.agree_term(term="discount_percent", value=15, policy=POLICY, by=BY)  # a third give, and past the limit of 10
    assert conditions_recorded(deal) == [
        ("WalkAwayConditionRaised", "concession_imbalance", "balance"),
        ("WalkAwayConditionRaised", "term_beyond_limit", "discount_percent"),
    ]
    deal.agree_term(term="discount_percent", value=0, policy=POLICY, by=BY)  # the public position: both hold again
    assert [(name, kind) for name, kind, _ in conditions_recorded(deal)] == [
        ("WalkAwayConditionResolved", "concession_imbalance"),
        ("WalkAwayConditionResolved", "term_beyond_limit"),
    ]


def test_the_firms_own_proposal_neither_opens_nor_resolves_a_term_condition() -> None:
    """A term's condition follows the client's position: the firm proposing within its limit changes nothing."""
    deal = domain_deal_in_meeting()
    deal.propose_term(term="payment_terms_days", value=90, side=Side.CLIENT, policy=POLICY, by=BY)
    deal.collect_events()
    deal.propose_term(term="payment_terms_days", value=45, side=Side.PROVIDER, policy=POLICY, by=BY)
    assert conditions_recorded(deal) == []
    assert [c.is_open for c in deal.conditions.values()] == [True]
