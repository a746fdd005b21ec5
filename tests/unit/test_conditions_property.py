"""Property: for any sequence of term demands, agreements and concessions, a walk-away condition
is open exactly when the policy's rules say it must be."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.errors import InvalidCommand
from dealflow.deal_lifecycle.domain.model import Side
from tests.support import BY, POLICY

TERMS = sorted(POLICY.terms)


def values(term: str) -> st.SearchStrategy[float]:
    rule = POLICY.terms[term]
    low, high = sorted((rule.public, rule.limit))
    # Around and across both the public position and the private limit, edges included.
    return st.one_of(
        st.sampled_from([rule.public, rule.limit]),
        st.integers(min_value=int(low) - 20, max_value=int(high) + 20).map(float),
    )


demand = st.sampled_from(TERMS).flatmap(
    lambda term: st.tuples(st.just("propose"), st.just(term), values(term), st.sampled_from(list(Side)))
)
agreement = st.sampled_from(TERMS).flatmap(lambda term: st.tuples(st.just("agree"), st.just(term), values(term)))
concession = st.tuples(st.just("concede"), st.sampled_from(list(Side)))


# The rules restated from DOMAIN.md, independently of the code under test.
def worse(term: str, value: float, than: float) -> bool:
    return value > than if POLICY.terms[term].worse == "higher" else value < than


def beyond_limit(term: str, value: float) -> bool:
    return worse(term, value, POLICY.terms[term].limit)


def out_of_range(term: str, value: float) -> bool:
    rule = POLICY.terms[term]
    return (rule.min is not None and value < rule.min) or (rule.max is not None and value > rule.max)


def out_of_balance(given: int, received: int) -> bool:
    rules = POLICY.concessions
    return given - received > rules.max_imbalance or (
        rules.must_win_something_after > 0 and given >= rules.must_win_something_after and received == 0
    )


def expected_open(standing: dict[str, float], given: int, received: int) -> set[tuple[str, str]]:
    """What the policy says, from the client's latest position per term and the balance of concessions."""
    expected = {("term_beyond_limit", t) for t, v in standing.items() if beyond_limit(t, v)}
    if out_of_balance(given, received):
        expected.add(("concession_imbalance", "balance"))
    return expected


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(demand, agreement, concession), max_size=40))
def test_a_condition_is_open_exactly_when_the_policy_says_so(steps: list[tuple]) -> None:
    deal = Deal.open(title="Acme payroll", client_name="Acme Ltd", owner="ann", by=BY)
    standing: dict[str, float] = {}
    gifts = {Side.PROVIDER: 0, Side.CLIENT: 0}
    agreed: dict[str, float] = {}  # each term counts once, by its last agreement
    for step in steps:
        if step[0] == "propose":
            _, term, value, side = step
            try:
                deal.propose_term(term=term, value=value, side=side, policy=POLICY, by=BY)
            except InvalidCommand:
                assert out_of_range(term, value) or (side is Side.PROVIDER and beyond_limit(term, value))
                continue
            assert not out_of_range(term, value)
            if side is Side.CLIENT:
                standing[term] = value
        elif step[0] == "agree":
            _, term, value = step
            try:
                deal.agree_term(term=term, value=value, policy=POLICY, by=BY)
            except InvalidCommand:
                assert out_of_range(term, value)
                continue
            assert not out_of_range(term, value)
            standing[term] = value
            agreed[term] = value
        else:
            deal.record_concession(side=step[1], what="something", policy=POLICY, by=BY)
            gifts[step[1]] += 1
        public = {term: POLICY.terms[term].public for term in agreed}
        given_ = gifts[Side.PROVIDER] + sum(worse(t, v, than=public[t]) for t, v in agreed.items())
        received = gifts[Side.CLIENT] + sum(v != public[t] and not worse(t, v, than=public[t]) for t, v in agreed.items())
        actual = {(str(c.kind), c.subject) for c in deal.conditions.values() if c.is_open}
        assert actual == expected_open(standing, given_, received)
