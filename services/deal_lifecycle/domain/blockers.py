"""What stops the contract from being signed: every blocker, not just the first.

Which stages allow signing is the lifecycle's to say (lifecycle.py puts the stage's blocker
first); what the deal itself still has to clear is said here. The lifecycle's guard on
signing and the deal's `blockers` view both come from `lifecycle.signing_blockers`, so the
answer to "why can't we sign?" is the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from .errors import Blocker
from .model import Decision, Expectation, Participant, Role, SalesPromise, Side, Stage, WalkAwayCondition, excerpt

STAGE = "stage"
MISSING_CLIENT_EXPECTATION = "missing_client_expectation"
MISSING_PROVIDER_EXPECTATION = "missing_provider_expectation"
EXPECTATION_NOT_AGREED = "expectation_not_agreed"
PROMISE_NOT_ACCEPTED = "promise_not_accepted"
ATTENDANCE_INCOMPLETE = "attendance_incomplete"
OPEN_WALK_AWAY_CONDITION = "open_walk_away_condition"

_CLOSED = {
    Stage.CONTRACT_SIGNED: "the contract is already signed, so there is nothing left to sign",
    Stage.WALKED_AWAY: "the firm walked away from this deal, so it can no longer be signed",
}


class SigningState(Protocol):
    stage: str
    participants: Sequence[Participant]
    sales_promises: Mapping[str, SalesPromise]
    expectations: Mapping[str, Expectation]
    conditions: Mapping[str, WalkAwayCondition]


def closed(stage: str) -> Blocker:
    """The one blocker of a deal the lifecycle has closed."""
    return Blocker(STAGE, _CLOSED[Stage(stage)])


def too_early(stage: str) -> Blocker:
    return Blocker(STAGE, f"the deal is at stage {stage}; signing happens after the transition meeting")


def open_items(deal: SigningState) -> list[Blocker]:
    """What the deal itself has yet to clear, whatever its stage."""
    blockers: list[Blocker] = []
    live = [e for e in deal.expectations.values() if e.decision is not Decision.WITHDRAWN]
    for side, code in ((Side.CLIENT, MISSING_CLIENT_EXPECTATION), (Side.PROVIDER, MISSING_PROVIDER_EXPECTATION)):
        if not any(e.side is side for e in live):
            blockers.append(Blocker(code, f"no {side} expectation is recorded"))
    for e in live:
        if e.decision is not Decision.ACCEPTED:
            blockers.append(
                Blocker(
                    EXPECTATION_NOT_AGREED,
                    f"{e.side} expectation {excerpt(e.statement)!r} is {e.decision}, not agreed by the {e.side.other}",
                    e.id,
                )
            )
    for p in deal.sales_promises.values():
        if p.decision not in (Decision.ACCEPTED, Decision.WITHDRAWN):
            blockers.append(
                Blocker(
                    PROMISE_NOT_ACCEPTED,
                    f"Sales promise {excerpt(p.statement)!r} is {p.decision}, not accepted by Operations",
                    p.id,
                )
            )
    attended = {p.role for p in deal.participants}
    missing = [r.value for r in Role if r not in attended]
    if missing:
        blockers.append(
            Blocker(ATTENDANCE_INCOMPLETE, "the transition meeting was not attended by " + ", ".join(missing))
        )
    for condition in deal.conditions.values():
        if condition.is_open:
            blockers.append(
                Blocker(
                    OPEN_WALK_AWAY_CONDITION,
                    f"walk-away condition {condition.kind} on {condition.subject} is open: resolve or waive it",
                    condition.id,
                )
            )
    return blockers
