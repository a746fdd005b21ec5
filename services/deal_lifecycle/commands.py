"""The commands other systems send, over HTTP and NATS alike: their shape and content rules.

These models are the single definition of a command's payload. The HTTP adapter lets
Litestar decode them (so they appear in the OpenAPI document); the NATS adapter will
validate the same models, so a bad payload gets the same answer on either road.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from .domain.model import Role, Side


def _exactly(kinds: tuple[type, ...], words: str) -> BeforeValidator:
    # A plain check, because Litestar validates with strict=False, which overrides StrictBool/StrictInt.
    def check(value: object) -> object:
        if type(value) not in kinds:
            raise ValueError(f"must be {words}")  # noqa: TRY004 - pydantic turns ValueError into a field error
        return value

    return BeforeValidator(check)


JsonBool = Annotated[bool, _exactly((bool,), "true or false")]
JsonInt = Annotated[int, _exactly((int,), "a whole number")]
Number = Annotated[int | float, _exactly((int, float), "a number"), Field(allow_inf_nan=False)]

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
    accepted: JsonBool
    reason: Reason | None = None


class RecordExpectation(Command):
    side: Side
    statement: Text
    metric: Name
    target: Name
    due: date
    priority: Annotated[JsonInt, Field(ge=1, le=99, description="1 is the highest priority")]


class DecideExpectation(Command):
    agreed: JsonBool
    reason: Reason | None = None


class Withdraw(Command):
    reason: Reason


class WalkAway(Command):
    reason: Reason
    cited_conditions: Annotated[list[Name], Field(max_length=50, description="ids of the walk-away conditions that caused it")] = []


class RenegotiateSalesPromise(Command):
    statement: Text


PolicyKey = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class ProposeTerm(Command):
    term: PolicyKey
    value: Number
    by: Side = Field(description="client: the client demands it; provider: the firm proposes it")


class AgreeTerm(Command):
    value: Number


class RecordConcession(Command):
    by: Side = Field(description="the side that gave something")
    what: Text


class RefuseNonNegotiable(Command):
    reason: Reason | None = None


class RecordClientFacts(Command):
    annual_value: Annotated[Number, Field(ge=0)] | None = None
    industry: Name | None = None


class DeclareImpasse(Command):
    topic: Text


class ResolveImpasse(Command):
    how: Text


class Escalate(Command):
    impasse_id: Name
    to: Name = Field(description="the counterpart's manager")
    counterpart_consented: JsonBool
    strategies_tried: Annotated[list[Text], Field(min_length=1, max_length=20)]


class WaiveCondition(Command):
    reason: Reason


@dataclass(frozen=True)
class CommandContext:
    """What travels with every command besides its payload (HTTP headers, NATS headers)."""

    actor: str
    correlation_id: str
    idempotency_key: str | None = None
    expected_version: int | None = None
    # The actor's role; only an approver may waive a walk-away condition (a header until authentication lands).
    actor_role: str | None = None
