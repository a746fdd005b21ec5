"""The commands other systems send, over HTTP and NATS alike: their shape.

These models are the single definition of a command's payload. The HTTP adapter lets
Litestar decode them (so they appear in the OpenAPI document); the NATS adapter validates
the same models, so a bad payload gets the same answer on either road. Text is bounded
and checked here; counts and ranges that belong to the deal (how many participants or
strategies, an expectation's priority) are the domain's, stated once in `domain.bounds`
and taken from there, so the schema, this early refusal and the aggregate's own check
can never disagree.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from dealflow.deal_lifecycle.domain import bounds
from dealflow.deal_lifecycle.domain.model import Role, Side


def _exactly(kinds: tuple[type, ...], words: str) -> BeforeValidator:
    # A plain check, because Litestar validates with strict=False, which overrides StrictBool/StrictInt.
    def check(value: object) -> object:
        if type(value) not in kinds:
            raise ValueError(f"must be {words}")  # noqa: TRY004 - pydantic turns ValueError into a field error
        return value

    return BeforeValidator(check)


def _visible(*, multiline: bool) -> AfterValidator:
    """Text a person can read: no control characters (long text may keep newlines and tabs),
    and something left once zero-width and control characters are set aside."""
    allowed = "\n\t" if multiline else ""
    words = "control characters other than newline and tab" if multiline else "control characters"

    def check(value: str) -> str:
        if any(unicodedata.category(ch) in ("Cc", "Cs") and ch not in allowed for ch in value):
            raise ValueError(f"must not contain {words}")
        if all(ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf") for ch in value):
            raise ValueError("must contain visible text, not only spaces, control or zero-width characters")
        return value

    return AfterValidator(check)


def _iso_date(value: object) -> object:
    # Only "YYYY-MM-DD" (or a date, from Python): pydantic would also take an integer (as epoch
    # seconds) or a datetime string.
    if type(value) is date:
        return value
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("must be a valid date as YYYY-MM-DD")  # noqa: TRY004
    return value


# Numbers callers send are bounded: beyond this no deal term makes sense, and larger
# integers cannot be held as floats (10^400 would overflow on the way to the store).
MAX_NUMBER = 10**15


def _number(low: int) -> tuple[BeforeValidator, Any]:
    # Checked before pydantic's own number parsing, with the range stated in the schema as
    # minimum/maximum (pydantic would write ge/le on a union, which JSON Schema ignores).
    def check(value: object) -> object:
        if type(value) not in (int, float):
            raise ValueError("must be a number")  # noqa: TRY004
        if not low <= value <= MAX_NUMBER:  # type: ignore[operator]
            raise ValueError(f"must be between {low} and {MAX_NUMBER}")
        return value

    return BeforeValidator(check), Field(allow_inf_nan=False, json_schema_extra={"minimum": low, "maximum": MAX_NUMBER})


JsonBool = Annotated[bool, _exactly((bool,), "true or false")]
JsonInt = Annotated[int, _exactly((int,), "a whole number")]
Number = Annotated[int | float, *_number(-MAX_NUMBER)]
NonNegativeNumber = Annotated[int | float, *_number(0)]
IsoDate = Annotated[date, BeforeValidator(_iso_date)]

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), _visible(multiline=True)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), _visible(multiline=False)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), _visible(multiline=True)]


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
    participants: Annotated[list[ParticipantIn], Field(min_length=1, max_length=bounds.MAX_PARTICIPANTS)]


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
    due: IsoDate
    priority: Annotated[JsonInt, Field(ge=bounds.MIN_PRIORITY, le=bounds.MAX_PRIORITY, description="1 is the highest priority")]


class DecideExpectation(Command):
    agreed: JsonBool
    reason: Reason | None = None


class Withdraw(Command):
    reason: Reason


class RecordExpectationOutcome(Command):
    """After signing: was an agreed expectation delivered? The evidence says how it is known."""

    met: JsonBool
    evidence: Text


class WalkAway(Command):
    reason: Reason
    cited_conditions: Annotated[list[Name], Field(max_length=bounds.MAX_CITED_CONDITIONS, description="ids of the walk-away conditions that caused it")] = []


class RenegotiateSalesPromise(Command):
    statement: Text


PolicyKey = Annotated[str, StringConstraints(min_length=1, max_length=100), _visible(multiline=False)]


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
    annual_value: NonNegativeNumber | None = None
    industry: Name | None = None


class DeclareImpasse(Command):
    topic: Text


class ResolveImpasse(Command):
    how: Text


class Escalate(Command):
    impasse_id: Name
    to: Name = Field(description="the counterpart's manager")
    counterpart_consented: JsonBool
    strategies_tried: Annotated[list[Text], Field(min_length=1, max_length=bounds.MAX_STRATEGIES)]


class WaiveCondition(Command):
    reason: Reason


@dataclass(frozen=True)
class CommandContext:
    """What travels with every command besides its payload (HTTP headers, NATS headers).

    `actor` and `roles` are the caller's verified token's (`sub`, `roles`), never a header;
    `on_behalf_of` is who a system says it acts for (the X-On-Behalf-Of header).
    """

    actor: str
    correlation_id: str
    idempotency_key: str | None = None
    expected_version: int | None = None
    roles: frozenset[str] = frozenset()
    on_behalf_of: str | None = None
