"""The words of the deal lifecycle (see DOMAIN.md), as plain values.

Everything here is immutable and free of I/O, so the aggregate can hold it in its
state and snapshots can store it as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum


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
    """Who did it and in which conversation: stamped on every event."""

    actor: str
    correlation_id: str


@dataclass(frozen=True)
class Participant:
    name: str
    role: Role

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))


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

    def __post_init__(self) -> None:
        # Snapshots store enums as plain strings; restore them so `is` comparisons hold.
        object.__setattr__(self, "side", Side(self.side))
        object.__setattr__(self, "decision", Decision(self.decision))
