"""Timing is everything: the deal's deadlines, from its own facts and the policy's durations.

The firm's relative power lasts only until the contract is signed, and a deal that drifts loses
it. Each deadline is counted from a moment of the deal (the letter of intent, the first transition
meeting, the last fact recorded) and passes a duration of the policy later. After signing, each
agreed expectation falls due at the end of its due date.

Everything here is a function of the deal (and, for the due moments, the policy): the schedule
is derived from the events, so it can be rebuilt from the log like any read model. Which facts the
passing of time records is the Deal's to do (`Deal.keep_time`); this module only says what is due.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .lifecycle import OPEN
from .model import DeadlineKind, Expectation, MissedDeadline, Side, Stage
from .policy import Deadlines

if TYPE_CHECKING:
    from .deal import Deal

# What was expected by each deadline, in words (DeadlineMissed.expected).
EXPECTED = {
    DeadlineKind.TRANSITION_MEETING_WITHIN: "the transition meeting held, after the letter of intent",
    DeadlineKind.CONTRACT_WITHIN: "the contract signed, after the transition meeting",
    DeadlineKind.STALLED_AFTER: "a new fact recorded on the deal",
}

# The kinds of moment in a deal's schedule: the three deadlines, and after signing the first agreed
# expectation still to remind its side of, and the first still to fall due. The read model keeps,
# for each, the moment it is counted from; the policy's durations are added when the schedule is read.
DUE_SOON, OVERDUE = "expectation_due_soon", "expectation_overdue"
SCHEDULE: tuple[str, ...] = (*(str(kind) for kind in DeadlineKind), DUE_SOON, OVERDUE)


def offsets(policy: Deadlines) -> dict[str, timedelta]:
    """For each kind of moment the policy sets, how long after its counted-from moment it falls due.

    An expectation is overdue at its due moment whatever the policy says; it is due soon a
    reminder's length before it."""
    found = {str(kind): getattr(policy, kind) for kind in DeadlineKind if getattr(policy, kind) is not None}
    if policy.expectation_reminder is not None:
        found[DUE_SOON] = -policy.expectation_reminder
    found[OVERDUE] = timedelta(0)
    return found


def due_from(deal: Deal) -> dict[str, datetime]:
    """The deal's schedule, free of the policy: what each pending kind of moment is counted from."""
    schedule: dict[str, datetime] = {}
    for kind, counted_from in _running(deal):
        schedule[str(kind)] = counted_from
    awaiting = [e for e in deal.expectations.values() if e.awaits_outcome] if deal.stage == Stage.CONTRACT_SIGNED else []
    to_remind = [e.due_at for e in awaiting if not e.due_soon and not e.overdue]
    if to_remind:
        schedule[DUE_SOON] = min(to_remind)
    to_fall_due = [e.due_at for e in awaiting if not e.overdue]
    if to_fall_due:
        schedule[OVERDUE] = min(to_fall_due)
    return schedule


def _running(deal: Deal) -> Iterator[tuple[DeadlineKind, datetime]]:
    """The deadlines running now (not yet missed), each with the moment it counts from."""
    if deal.stage not in OPEN:
        return
    if deal.stage == Stage.LETTER_OF_INTENT and deal.letter_of_intent_at and not _missed(deal, DeadlineKind.TRANSITION_MEETING_WITHIN):
        yield DeadlineKind.TRANSITION_MEETING_WITHIN, deal.letter_of_intent_at
    if deal.stage == Stage.TRANSITION_MEETING and deal.transition_meeting_at and not _missed(deal, DeadlineKind.CONTRACT_WITHIN):
        yield DeadlineKind.CONTRACT_WITHIN, deal.transition_meeting_at
    # A stall is missed once per quiet spell: a new fact starts a new one.
    if not _missed(deal, DeadlineKind.STALLED_AFTER, counted_from=deal.last_activity_at):
        yield DeadlineKind.STALLED_AFTER, deal.last_activity_at


def _missed(deal: Deal, kind: DeadlineKind, *, counted_from: datetime | None = None) -> bool:
    return any(m.deadline is kind and (counted_from is None or m.counted_from == counted_from) for m in deal.missed_deadlines)


@dataclass(frozen=True)
class Passed:
    """A deadline whose moment has come: to be recorded as missed."""

    deadline: DeadlineKind
    due_at: datetime
    counted_from: datetime

    @property
    def expected(self) -> str:
        return EXPECTED[self.deadline]


def passed(deal: Deal, policy: Deadlines, now: datetime) -> list[Passed]:
    """The running deadlines of the policy whose due moment is `now` or earlier."""
    found = []
    for kind, counted_from in _running(deal):
        duration = getattr(policy, kind)
        if duration is not None and counted_from + duration <= now:
            found.append(Passed(kind, counted_from + duration, counted_from))
    return found


def falling_due(deal: Deal, policy: Deadlines, now: datetime) -> tuple[list[Expectation], list[Expectation]]:
    """After signing: (the agreed expectations to remind their side of now, those now overdue)."""
    if deal.stage != Stage.CONTRACT_SIGNED:
        return [], []
    awaiting = [e for e in deal.expectations.values() if e.awaits_outcome and not e.overdue]
    overdue = [e for e in awaiting if e.due_at <= now]
    reminder = policy.expectation_reminder
    # One already overdue is not also "due soon": the overdue fact says more.
    due_soon = [
        e for e in awaiting if reminder is not None and not e.due_soon and e not in overdue and e.due_at - reminder <= now
    ]
    return due_soon, overdue


def is_overdue(deal: Deal) -> bool:
    """A deadline missed on an open deal and not yet made good, or an expectation overdue and not yet marked."""
    if deal.stage in OPEN:
        return any(m.made_good_at is None for m in deal.missed_deadlines)
    if deal.stage == Stage.CONTRACT_SIGNED:
        return any(e.overdue and e.outcome is None for e in deal.expectations.values())
    return False


def open_missed(deal: Deal) -> list[MissedDeadline]:
    """The missed deadlines of an open deal that what was expected has not yet made good."""
    return [m for m in deal.missed_deadlines if m.made_good_at is None] if deal.stage in OPEN else []


@dataclass(frozen=True)
class DeadlineStatus:
    """One line of the deal view's `deadlines`."""

    deadline: str
    due_at: datetime
    status: str  # pending, met or missed
    counted_from: datetime
    # When what was expected happened (met; or after being missed, made good).
    met_at: datetime | None = None
    expected: str = ""
    policy_version: str | None = None  # of a missed deadline: the policy that set it


def statuses(deal: Deal, policy: Deadlines, policy_version: str) -> list[DeadlineStatus]:
    """Every deadline of the deal: those missed (as recorded), those met in time, and those running."""
    found = [
        DeadlineStatus(
            str(m.deadline), m.due_at, "missed", m.counted_from, m.made_good_at, m.expected, m.policy_version
        )
        for m in deal.missed_deadlines
    ]
    missed_kinds = {m.deadline for m in deal.missed_deadlines}
    met = {
        DeadlineKind.TRANSITION_MEETING_WITHIN: (deal.letter_of_intent_at, deal.transition_meeting_at),
        DeadlineKind.CONTRACT_WITHIN: (deal.transition_meeting_at, deal.signed_at),
    }
    for kind, (counted_from, happened_at) in met.items():
        duration = getattr(policy, kind)
        if kind in missed_kinds or duration is None or counted_from is None or happened_at is None:
            continue
        found.append(DeadlineStatus(str(kind), counted_from + duration, "met", counted_from, happened_at, EXPECTED[kind]))
    for kind, counted_from in _running(deal):
        duration = getattr(policy, kind)
        if duration is not None:
            found.append(DeadlineStatus(str(kind), counted_from + duration, "pending", counted_from, None, EXPECTED[kind], policy_version))
    return sorted(found, key=lambda s: s.due_at)


@dataclass(frozen=True)
class Scorecard:
    """After signing, per side: how the value creation standard is being delivered."""

    met: int
    missed: int
    overdue: int  # fell due unmarked, and still unmarked
    pending: int  # agreed, not yet marked, not yet due


def scorecard(expectations: Mapping[str, Expectation]) -> dict[str, Scorecard]:
    """For each side, its agreed expectations counted by outcome."""
    cards = {}
    for side in Side:
        agreed = [e for e in expectations.values() if e.side is side and e.is_agreed]
        cards[str(side)] = Scorecard(
            met=sum(1 for e in agreed if e.outcome == "met"),
            missed=sum(1 for e in agreed if e.outcome == "missed"),
            overdue=sum(1 for e in agreed if e.outcome is None and e.overdue),
            pending=sum(1 for e in agreed if e.outcome is None and not e.overdue),
        )
    return cards
