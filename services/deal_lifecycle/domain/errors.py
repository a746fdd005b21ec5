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


class Forbidden(DealflowError):
    """The actor lacks the authority the command needs (e.g. only an approver may waive)."""

    code = "forbidden"


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


class SigningRefused(CommandRefused):
    code = "signing_refused"

    def __init__(self, blockers: list[Blocker]) -> None:
        super().__init__("the contract cannot be signed: " + "; ".join(b.message for b in blockers))
        self.blockers = blockers
