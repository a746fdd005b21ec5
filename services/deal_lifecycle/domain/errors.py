"""Why a command was not carried out, in the domain's words.

Adapters map each class to their own answer (an HTTP status, a NATS error reply);
the `code` is stable so other systems can act on it without parsing prose.
"""

from __future__ import annotations

from dataclasses import dataclass


class DealflowError(Exception):
    """Base of every refusal the service gives; nothing was recorded."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidCommand(DealflowError):
    """The command breaks a rule about its own content (a field and the rule it broke)."""

    code = "invalid_command"

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


class NotFound(DealflowError):
    code = "not_found"


class CommandRefused(DealflowError):
    """The command is well formed but the deal, as it stands, does not allow it."""

    code = "command_refused"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


@dataclass(frozen=True)
class Blocker:
    """One reason the contract cannot be signed yet."""

    code: str
    message: str
    subject_id: str | None = None


class DealLimitReached(CommandRefused):
    """The deal holds as many of something as a deal may: the command would grow it past its bound."""

    code = "deal_limit_reached"

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"the deal already holds the most {what} a deal may have ({limit})")
        self.what = what
        self.limit = limit


# A refused signing names at most this many blockers (and how many there are in all), so
# the refusal and the event that records it stay small however large the deal has grown.
MAX_BLOCKERS_SHOWN = 50
_BLOCKERS_IN_MESSAGE = 10


class SigningRefused(CommandRefused):
    code = "signing_refused"

    def __init__(self, blockers: list[Blocker]) -> None:
        shown = "; ".join(b.message for b in blockers[:_BLOCKERS_IN_MESSAGE])
        more = len(blockers) - _BLOCKERS_IN_MESSAGE
        super().__init__("the contract cannot be signed: " + shown + (f"; and {more} more" if more > 0 else ""))
        self.blockers = blockers[:MAX_BLOCKERS_SHOWN]
        self.blockers_total = len(blockers)
