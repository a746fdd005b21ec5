"""When the firm may walk away: the rule of every walk-away condition, in one table.

Each row is one kind of condition (DOMAIN.md, "Walk-away conditions"): the facts that can
open it and those that can resolve it, what a condition of that kind is about (its
subject), the evidence it is raised with while its rule is broken (None while the rule
holds), and the words it is resolved with.

The Deal judges the table once per command, after all the command's facts are recorded,
on the state they leave: a command that both withdraws an earlier concession and records a
new one (agree_term) judges the balance once, and never raises and resolves the same
condition in one go. Rows are judged in table order, so a command that concerns two kinds
(agree_term: the balance, then the term) records its conditions in that order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .events import (
    ClientFactsRecorded,
    ConcessionRecorded,
    ConcessionWithdrawn,
    Event,
    ExpectationRejected,
    ExpectationWithdrawn,
    NonNegotiableAccepted,
    NonNegotiableRefused,
    SalesPromiseRejected,
    SalesPromiseRenegotiated,
    SalesPromiseWithdrawn,
    TermAgreed,
    TermProposed,
)
from .model import ConditionKind, Decision, Side, excerpt
from .policy import Policy

if TYPE_CHECKING:
    from .deal import Deal

# Caller text quoted in a condition's evidence or resolution is cut to this length: the whole
# text is in the event that recorded it, and the condition only needs to point at it.
QUOTED = 200
BALANCE = "balance"


def quoted(text: str | None) -> str | None:
    return None if text is None else excerpt(text, QUOTED)


@dataclass(frozen=True)
class Case:
    """One subject of a rule, as a command left it: `fact` is the command's last fact about it."""

    deal: Deal
    subject: str
    fact: Any
    policy: Policy | None

    @property
    def parameters(self) -> Policy:
        """The firm's negotiating parameters the command was judged under (only commands that have them read them)."""
        assert self.policy is not None, "a rule that reads the policy is judged by a command that has one"
        return self.policy


@dataclass(frozen=True)
class Rule:
    kind: ConditionKind
    opened_by: tuple[type[Event], ...]
    resolved_by: tuple[type[Event], ...]
    subjects: Callable[[Any, Policy | None], Iterable[str]]
    evidence: Callable[[Case], dict[str, Any] | None]
    resolution: Callable[[Case], str]


@dataclass(frozen=True)
class Verdict:
    """Open a condition of `kind` on `subject` with `evidence`, or (evidence None) resolve it with `resolution`."""

    kind: ConditionKind
    subject: str
    evidence: dict[str, Any] | None
    resolution: str | None = None


# -- what each rule looks at -----------------------------------------------------------------------


def _rejected_promise(case: Case) -> dict[str, Any] | None:
    promise = case.deal.sales_promises[case.subject]
    if promise.decision is not Decision.REJECTED:
        return None
    return {"promise_id": promise.id, "statement": quoted(promise.statement), "reason": quoted(promise.reason)}


def _promise_back_on_track(case: Case) -> str:
    promise = case.deal.sales_promises[case.subject]
    if promise.decision is Decision.WITHDRAWN:
        return "the promise was withdrawn"
    return f"the promise was renegotiated: {quoted(promise.statement)!r}"


def _rejected_provider_expectation(case: Case) -> dict[str, Any] | None:
    expectation = case.deal.expectations[case.subject]
    if expectation.side is not Side.PROVIDER or expectation.decision is not Decision.REJECTED:
        return None
    return {"expectation_id": expectation.id, "statement": quoted(expectation.statement), "reason": quoted(expectation.reason)}


def _client_position(fact: TermProposed | TermAgreed, _: Policy | None) -> list[str]:
    """The client's latest position on a term: its demand, or the value both sides agreed (not the firm's proposal)."""
    return [] if isinstance(fact, TermProposed) and fact.by != Side.CLIENT else [fact.term]


def _term_beyond_limit(case: Case) -> dict[str, Any] | None:
    term, value = case.parameters.term(case.subject), case.fact.value
    if not term.beyond_limit(value):
        return None
    return {"term": term.name, "value": value, "limit": term.limit, "public": term.public, "worse": str(term.worse)}


def _term_within_limit(case: Case) -> str:
    term = case.parameters.term(case.subject)
    return f"{term.name} revised to {case.fact.value:g}, within the limit of {term.limit:g}"


def _out_of_balance(case: Case) -> dict[str, Any] | None:
    given, received = case.deal.concession_counts()
    verdict = case.parameters.concessions.verdict(given, received)
    return None if verdict is None else {"given": given, "received": received, "rule": verdict}


def _back_in_balance(case: Case) -> str:
    given, received = case.deal.concession_counts()
    return f"concessions back in balance: given {given}, received {received}"


def _refused_non_negotiable(case: Case) -> dict[str, Any] | None:
    if case.deal.non_negotiables.get(case.subject) != "refused":
        return None
    description = case.parameters.non_negotiable(case.subject)
    return {"non_negotiable": case.subject, "description": description, "reason": quoted(case.fact.reason)}


def _criteria_judged(fact: ClientFactsRecorded, policy: Policy | None) -> list[str]:
    assert policy is not None
    return sorted(policy.right_client.judged(annual_value=fact.annual_value, industry=fact.industry))


def _criterion_failed(case: Case) -> dict[str, Any] | None:
    failures = case.parameters.right_client.failures(annual_value=case.fact.annual_value, industry=case.fact.industry)
    return {"criterion": case.subject, **failures[case.subject]} if case.subject in failures else None


# -- the table ----------------------------------------------------------------------------------------

RULES: tuple[Rule, ...] = (
    Rule(
        ConditionKind.PROMISE_REJECTED,
        opened_by=(SalesPromiseRejected,),
        resolved_by=(SalesPromiseRenegotiated, SalesPromiseWithdrawn),
        subjects=lambda fact, _: [fact.promise_id],
        evidence=_rejected_promise,
        resolution=_promise_back_on_track,
    ),
    Rule(
        ConditionKind.PROVIDER_EXPECTATION_REJECTED,
        opened_by=(ExpectationRejected,),
        resolved_by=(ExpectationWithdrawn,),
        subjects=lambda fact, _: [fact.expectation_id],
        evidence=_rejected_provider_expectation,
        resolution=lambda _: "the expectation was withdrawn",
    ),
    # Before the term: agreeing a term judges the balance of concessions first.
    Rule(
        ConditionKind.CONCESSION_IMBALANCE,
        opened_by=(ConcessionRecorded, ConcessionWithdrawn),
        resolved_by=(ConcessionRecorded, ConcessionWithdrawn),
        subjects=lambda *_: [BALANCE],
        evidence=_out_of_balance,
        resolution=_back_in_balance,
    ),
    Rule(
        ConditionKind.TERM_BEYOND_LIMIT,
        opened_by=(TermProposed, TermAgreed),
        resolved_by=(TermProposed, TermAgreed),
        subjects=_client_position,
        evidence=_term_beyond_limit,
        resolution=_term_within_limit,
    ),
    Rule(
        ConditionKind.NON_NEGOTIABLE_REFUSED,
        opened_by=(NonNegotiableRefused,),
        resolved_by=(NonNegotiableAccepted,),
        subjects=lambda fact, _: [fact.name],
        evidence=_refused_non_negotiable,
        resolution=lambda case: f"the client accepted {case.subject}",
    ),
    Rule(
        ConditionKind.CLIENT_DISQUALIFIED,
        opened_by=(ClientFactsRecorded,),
        resolved_by=(ClientFactsRecorded,),
        subjects=_criteria_judged,
        evidence=_criterion_failed,
        resolution=lambda case: f"{case.subject} is now met",
    ),
)


def judge(deal: Deal, facts: Sequence[Event], policy: Policy | None) -> list[Verdict]:
    """What a command's facts mean for the walk-away conditions, judged on the state they left.

    A verdict says what the rule finds; the Deal opens a condition only if none is open on that
    subject, and resolves one only if one is.
    """
    verdicts = []
    for rule in RULES:
        # subject -> (its last fact, may open, may resolve), in the order the facts brought them up
        cases: dict[str, tuple[Event, bool, bool]] = {}
        for fact in facts:
            opens, resolves = isinstance(fact, rule.opened_by), isinstance(fact, rule.resolved_by)
            if opens or resolves:
                for subject in rule.subjects(fact, policy):
                    _, opened, resolved = cases.get(subject, (fact, False, False))
                    cases[subject] = (fact, opened or opens, resolved or resolves)
        for subject, (fact, opens, resolves) in cases.items():
            case = Case(deal, subject, fact, policy)
            evidence = rule.evidence(case)
            if evidence is not None and opens:
                verdicts.append(Verdict(rule.kind, subject, evidence))
            elif evidence is None and resolves:
                verdicts.append(Verdict(rule.kind, subject, None, rule.resolution(case)))
    return verdicts
