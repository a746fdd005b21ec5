"""The words of the deal lifecycle (see DOMAIN.md), as plain values.

Everything here is immutable and free of I/O, so the aggregate can hold it in its
state and snapshots can store it as JSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any


def excerpt(text: str, limit: int = 80) -> str:
    """The start of a caller's text, for quoting it in a message or evidence: the whole text stays in
    the event that recorded it, and what quotes it stays small however long the text is."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


class Stage(StrEnum):
    PROSPECT = "prospect"
    LETTER_OF_INTENT = "letter_of_intent"
    TRANSITION_MEETING = "transition_meeting"
    CONTRACT_SIGNED = "contract_signed"
    WALKED_AWAY = "walked_away"


class Role(StrEnum):
    """Who attends the transition meeting."""

    SALES = "sales"
    OPERATIONS = "operations"
    CLIENT = "client"


class Side(StrEnum):
    """Whose expectation it is: the client's of the firm, or the firm's (provider's) of the client."""

    CLIENT = "client"
    PROVIDER = "provider"

    @property
    def other(self) -> Side:
        return Side.PROVIDER if self is Side.CLIENT else Side.CLIENT


class Decision(StrEnum):
    """Where a Sales promise or an expectation stands with the side that must accept it."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True)
class Attribution:
    """Who did it, for whom, and in which conversation: stamped on every event.

    `actor` is who was authenticated (a system or a person); `on_behalf_of` the person a system
    says it acts for, when it says so (recorded as said: the system answers for it).
    """

    actor: str
    correlation_id: str
    on_behalf_of: str | None = None


@dataclass(frozen=True)
class Participant:
    name: str
    role: Role

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))


def attendance(attended: Iterable[Participant], arriving: Iterable[Participant]) -> list[Participant]:
    """Everyone who has attended the transition meeting, over its sessions so far: each once, in order of arrival."""
    return list(dict.fromkeys([*attended, *arriving]))


@dataclass(frozen=True)
class SalesPromise:
    """A promise or representation Sales made, put on the table for Operations to accept."""

    id: str
    statement: str
    decision: Decision = Decision.PENDING
    reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "decision", Decision(self.decision))


@dataclass(frozen=True)
class Expectation:
    """A specific, measurable expectation of one side, agreed (or not) by the other side."""

    id: str
    side: Side
    statement: str
    metric: str
    target: str
    due: date
    priority: int
    decision: Decision = Decision.PENDING
    reason: str | None = None
    # After signing: was it delivered (met or missed, with the evidence), and what time has said.
    outcome: Outcome | None = None
    evidence: str | None = None
    due_soon: bool = False  # its owner side was reminded (ExpectationDueSoon)
    overdue: bool = False  # its due date passed unmarked (ExpectationOverdue)

    def __post_init__(self) -> None:
        # Snapshots store enums as plain strings; restore them so `is` comparisons hold.
        object.__setattr__(self, "side", Side(self.side))
        object.__setattr__(self, "decision", Decision(self.decision))
        if self.outcome is not None:
            object.__setattr__(self, "outcome", Outcome(self.outcome))

    @property
    def due_at(self) -> datetime:
        """The moment it falls due: the end of its due date (UTC), since "by the due date" includes the day."""
        # The last date there is (accepted before due dates were bounded) ends at the end of time.
        if self.due == date.max:
            return datetime.max.replace(tzinfo=UTC)
        return datetime.combine(self.due + timedelta(days=1), time(), tzinfo=UTC)

    @property
    def is_agreed(self) -> bool:
        return self.decision is Decision.ACCEPTED

    @property
    def awaits_outcome(self) -> bool:
        """Agreed and not yet marked met or missed: after signing, one of the value creation standard still to judge."""
        return self.is_agreed and self.outcome is None


class Outcome(StrEnum):
    """Whether an agreed expectation was delivered, judged after signing."""

    MET = "met"
    MISSED = "missed"


class DeadlineKind(StrEnum):
    """The deadlines of the policy's [deadlines] section that a deal can miss (DeadlineMissed.deadline)."""

    TRANSITION_MEETING_WITHIN = "transition_meeting_within"
    CONTRACT_WITHIN = "contract_within"
    STALLED_AFTER = "stalled_after"


@dataclass(frozen=True)
class MissedDeadline:
    """A deadline that passed (DeadlineMissed), and when what was expected by then happened after all."""

    deadline: DeadlineKind
    due_at: datetime
    expected: str
    policy_version: str
    counted_from: datetime  # the moment the deadline ran from (the letter of intent, the meeting, the last fact)
    made_good_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "deadline", DeadlineKind(self.deadline))


class ConditionKind(StrEnum):
    """Why the firm might walk away (DOMAIN.md, "Walk-away conditions")."""

    TERM_BEYOND_LIMIT = "term_beyond_limit"
    NON_NEGOTIABLE_REFUSED = "non_negotiable_refused"
    PROVIDER_EXPECTATION_REJECTED = "provider_expectation_rejected"
    PROMISE_REJECTED = "promise_rejected"
    CONCESSION_IMBALANCE = "concession_imbalance"
    CLIENT_DISQUALIFIED = "client_disqualified"


class ConditionStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"
    WAIVED = "waived"


@dataclass(frozen=True)
class WalkAwayCondition:
    """Raised by the service from a fact and the policy; open until resolved or waived."""

    id: str
    kind: ConditionKind
    # What the condition is about (a term, a criterion, an expectation id...): at most one is open per subject.
    subject: str
    evidence: dict[str, Any]
    policy_version: str
    status: ConditionStatus = ConditionStatus.OPEN
    closed_because: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ConditionKind(self.kind))
        object.__setattr__(self, "status", ConditionStatus(self.status))

    @property
    def is_open(self) -> bool:
        return self.status is ConditionStatus.OPEN


@dataclass(frozen=True)
class Concession:
    """Something one side gave the other; `early` when given while the deal was still a prospect."""

    id: str
    by: Side
    what: str
    stage: str
    early: bool
    term: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "by", Side(self.by))


@dataclass(frozen=True)
class NegotiatedTerm:
    """Where a term of the Right Terms policy stands in this deal."""

    name: str
    provider_proposal: float | None = None
    client_demand: float | None = None
    agreed: float | None = None


@dataclass(frozen=True)
class Impasse:
    id: str
    topic: str
    resolution: str | None = None

    @property
    def is_open(self) -> bool:
        return self.resolution is None


@dataclass(frozen=True)
class Escalation:
    """Going over the counterpart's head, a last resort while an impasse is open."""

    id: str
    impasse_id: str
    to: str
    counterpart_consented: bool
    strategies_tried: list[str]
