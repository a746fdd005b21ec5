"""Relationship health: what the record of gives and takes says about the deal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import deadlines
from .model import ConditionKind, Escalation, Impasse, Side, Stage, WalkAwayCondition

if TYPE_CHECKING:
    from .deal import Deal

# A run this long of the firm's concessions, with nothing in return, is "one-sided".
ONE_SIDED_RUN = 3


@dataclass(frozen=True)
class Health:
    given: int
    received: int
    by_stage: dict[str, dict[str, int]]
    early_concessions: int  # how many of those that stand were made while still a prospect
    open_conditions: list[WalkAwayCondition]
    impasses: list[Impasse]
    escalations: list[Escalation]
    warning_signs: list[str]
    verdict: str


def assess(deal: Deal) -> Health:
    given, received = deal.concession_counts()
    by_stage = {
        str(stage): dict(deal.concession_balance.get(str(stage), {"given": 0, "received": 0}))
        for stage in (Stage.PROSPECT, Stage.LETTER_OF_INTENT, Stage.TRANSITION_MEETING)
    }
    early = deal.early_concessions
    open_conditions = [c for c in deal.conditions.values() if c.is_open]
    signs = _warning_signs(deal, open_conditions)
    return Health(
        given=given,
        received=received,
        by_stage=by_stage,
        early_concessions=early,
        open_conditions=open_conditions,
        impasses=list(deal.impasses.values()),
        escalations=list(deal.escalations),
        warning_signs=signs,
        verdict=_verdict(deal.stage, given, received, early, open_conditions, signs),
    )


def _warning_signs(deal: Deal, open_conditions: list[WalkAwayCondition]) -> list[str]:
    signs = []
    run = 0
    for concession in reversed(deal.recent_concessions):
        if concession.by is not Side.PROVIDER:
            break
        run += 1
    demands = [c for c in open_conditions if c.kind is ConditionKind.TERM_BEYOND_LIMIT]
    if run >= ONE_SIDED_RUN and demands:
        signs.append(
            f"{run} one-sided concessions by the firm, then a demand beyond the limit on {demands[0].subject}: "
            "the classic sign of a relationship going wrong"
        )
    if any(e.counterpart_consented is False for e in deal.escalations):
        signs.append("the firm escalated over the counterpart's head without their consent")
    # Timing is everything: a missed deadline is a warning (not a walk-away condition) until made good.
    for missed in deadlines.open_missed(deal):
        signs.append(f"deadline {missed.deadline} missed (due {missed.due_at.isoformat()}): still waiting for {missed.expected}")
    overdue = [e for e in deal.expectations.values() if e.overdue and e.outcome is None] if deal.stage == Stage.CONTRACT_SIGNED else []
    if overdue:
        signs.append(f"{len(overdue)} agreed expectation(s) overdue and not yet marked met or missed")
    return signs


def _verdict(
    stage: str, given: int, received: int, early: int, open_conditions: list[WalkAwayCondition], signs: list[str]
) -> str:
    balance = f"the firm has given {given} concession(s) and received {received}"
    if stage == Stage.WALKED_AWAY:
        # Nothing left to resolve or sign: advising either would be advice about a deal that is over.
        still_open = f", with {len(open_conditions)} walk-away condition(s) open when it did" if open_conditions else ""
        return f"Closed: the firm walked away{still_open}; {balance}."
    if open_conditions:
        kinds = ", ".join(sorted({str(c.kind) for c in open_conditions}))
        return (
            f"At risk: {len(open_conditions)} walk-away condition(s) open ({kinds}); {balance}. "
            "Resolve or waive them, or walk away: the contract cannot be signed until then."
        )
    worries = [*signs]
    if early:
        worries.append(f"{early} concession(s) made while still a prospect")
    if given > received:
        worries.append(balance)
    if worries:
        return "Watch: " + "; ".join(worries) + "."
    return f"Healthy: no open walk-away conditions, and {balance}."
