"""The concession balance: one term is one give, however often it is agreed again."""

from __future__ import annotations

from eventsourcing.application import project_aggregate
from hypothesis import given, settings
from hypothesis import strategies as st

from dealflow.deal_lifecycle.application.views import event_view
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.health import assess
from dealflow.deal_lifecycle.domain.model import ConditionKind, ConditionStatus, Side
from dealflow.notifier.schemas import EventSchemas
from tests.support import BY, POLICY, domain_deal_in_meeting


def imbalance_open(deal: Deal) -> bool:
    return any(
        c.kind is ConditionKind.CONCESSION_IMBALANCE and c.status is ConditionStatus.OPEN for c in deal.conditions.values()
    )


def test_agreeing_a_term_again_replaces_its_concession_and_says_so() -> None:
    deal = domain_deal_in_meeting()
    deal.collect_events()
    for days in (50, 55, 58):  # all worse than the public 45, within the limit of 60
        deal.agree_term(term="payment_terms_days", value=days, policy=POLICY, by=BY)
    events = [type(e).__name__ for e in deal.collect_events()]
    assert events.count("ConcessionRecorded") == 3
    assert events.count("ConcessionWithdrawn") == 2
    assert deal.concession_counts() == (1, 0)
    assert [c.what for c in deal.recent_concessions] == ["payment_terms_days agreed at 58 (public position 45)"]
    assert assess(deal).given == 1
    assert not imbalance_open(deal)
    assert "concession_imbalance" not in [b.code for b in deal.blockers]


def test_agreeing_a_term_again_at_the_public_position_withdraws_its_concession() -> None:
    deal = domain_deal_in_meeting()
    deal.agree_term(term="payment_terms_days", value=50, policy=POLICY, by=BY)
    deal.collect_events()
    deal.agree_term(term="payment_terms_days", value=45, policy=POLICY, by=BY)
    withdrawn = [e for e in deal.collect_events() if type(e).__name__ == "ConcessionWithdrawn"]
    assert [(e.term, e.reason) for e in withdrawn] == [("payment_terms_days", "payment_terms_days agreed again at 45")]
    EventSchemas().check(event_view(withdrawn[0], limits=True), 1)  # the published contract, as the notifier checks it
    assert deal.concession_counts() == (0, 0)


def test_a_withdrawal_that_restores_the_balance_resolves_the_imbalance() -> None:
    deal = domain_deal_in_meeting()
    for n in range(2):
        deal.record_concession(side=Side.PROVIDER, what=f"gift {n}", policy=POLICY, by=BY)
    deal.agree_term(term="discount_percent", value=5, policy=POLICY, by=BY)  # a third give: 3 given, 0 received
    assert imbalance_open(deal)
    deal.agree_term(term="discount_percent", value=0, policy=POLICY, by=BY)  # back to the public position
    assert deal.concession_counts() == (2, 0)
    assert not imbalance_open(deal)


# -- property: the balance stated independently -----------------------------------------

TERMS = {name: (POLICY.term(name).min, POLICY.term(name).max) for name in POLICY.terms}
agreement = st.sampled_from(sorted(TERMS)).flatmap(
    lambda term: st.tuples(st.just(term), st.integers(int(TERMS[term][0]), int(TERMS[term][1])))
)
gift = st.tuples(st.just("gift"), st.sampled_from([Side.PROVIDER, Side.CLIENT]))


def expected_balance(steps: list[tuple[str, object]]) -> tuple[int, int]:
    """Each term counts once, by the side its last agreement favours; each recorded gift counts once."""
    last: dict[str, float] = {}
    gifts = {Side.PROVIDER: 0, Side.CLIENT: 0}
    for name, value in steps:
        if name == "gift":
            gifts[value] += 1  # type: ignore[index]
        else:
            last[name] = value  # type: ignore[assignment]
    given, received = gifts[Side.PROVIDER], gifts[Side.CLIENT]
    for name, value in last.items():
        rule = POLICY.term(name)
        if rule.worse_than(value, rule.public):
            given += 1
        elif rule.worse_than(rule.public, value):
            received += 1
    return given, received


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(agreement, gift), max_size=12))
def test_the_balance_counts_each_term_once_and_survives_replay(steps: list[tuple[str, object]]) -> None:
    deal = domain_deal_in_meeting()
    for name, value in steps:
        if name == "gift":
            deal.record_concession(side=value, what="a gift", policy=POLICY, by=BY)  # type: ignore[arg-type]
        else:
            deal.agree_term(term=name, value=value, policy=POLICY, by=BY)  # type: ignore[arg-type]
    given_, received = expected_balance(steps)
    assert deal.concession_counts() == (given_, received)
    assert imbalance_open(deal) == (POLICY.concessions.verdict(given_, received) is not None)
    replayed = project_aggregate(None, deal.collect_events())
    assert replayed is not None
    assert replayed.concession_counts() == (given_, received)
