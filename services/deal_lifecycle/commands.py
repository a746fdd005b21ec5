"""The commands other systems send, over HTTP and NATS alike: their shape and content rules.

These models are the single definition of a command's payload. The HTTP adapter lets
Litestar decode them (so they appear in the OpenAPI document); the NATS adapter will
validate the same models, so a bad payload gets the same answer on either road.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

from .domain.model import Role, Side

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


class Command(BaseModel):
    # Unknown fields are refused: a typo in another system must not be silently dropped.
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpenDeal(Command):
    title: Name
    client_name: Name
    owner: Name


class ParticipantIn(Command):
    name: Name
    role: Role


class HoldTransitionMeeting(Command):
    participants: Annotated[list[ParticipantIn], Field(min_length=1, max_length=50)]


class RecordSalesPromise(Command):
    statement: Text


class DecideSalesPromise(Command):
    accepted: StrictBool
    reason: Reason | None = None


class RecordExpectation(Command):
    side: Side
    statement: Text
    metric: Name
    target: Name
    due: date
    priority: Annotated[StrictInt, Field(ge=1, le=99, description="1 is the highest priority")]


class DecideExpectation(Command):
    agreed: StrictBool
    reason: Reason | None = None


class Withdraw(Command):
    reason: Reason


class WalkAway(Command):
    reason: Reason


@dataclass(frozen=True)
class CommandContext:
    """What travels with every command besides its payload (HTTP headers, NATS headers)."""

    actor: str
    correlation_id: str
    idempotency_key: str | None = None
    expected_version: int | None = None
