"""Who may do what: the roles a caller's token carries, and what each role may send and read.

The roles a command needs are in its row of the command table (command_table.py); this
module holds the reads' table and the one rule both are judged by. Every door (HTTP, NATS)
asks `authorize` before it reads a body, and DealService asks it again for every command,
so no door can skip it. Who the caller *is* (the token's verification) is the doors' work
(adapters/identity.py); here a caller is already known.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from dealflow.deal_lifecycle.domain.errors import DealflowError


class AccessRole(StrEnum):
    """A role in a token's `roles` claim (not to be confused with who attends the transition meeting)."""

    EMITTER = "emitter"  # systems that send deal commands
    OPS = "ops"  # reads everything, watches the stream, sees alerts
    AUDITOR = "auditor"  # read-only: deals, history, as-of, export, verify
    APPROVER = "approver"  # may waive walk-away conditions
    ADMIN = "admin"  # everything, the private policy included


EVERY_ROLE = frozenset(AccessRole)
# In the order a waiver (or any command) names the role it was made under: the specific role
# first, admin last, so an approver who is also admin waives as approver.
ORDER = (AccessRole.APPROVER, AccessRole.EMITTER, AccessRole.OPS, AccessRole.AUDITOR, AccessRole.ADMIN)

# Who may send a deal command: the command table's default; waive_condition names its own.
SENDS_COMMANDS = frozenset({AccessRole.EMITTER, AccessRole.ADMIN})
WAIVES_CONDITIONS = frozenset({AccessRole.APPROVER, AccessRole.ADMIN})

# The reads, by the name of their route (its operation): every role reads deals, listings,
# history, health and verification; the live stream is for those who watch the pipeline.
READS: dict[str, frozenset[AccessRole]] = {
    "list_deals": EVERY_ROLE,
    "get_deal": EVERY_ROLE,
    "history": EVERY_ROLE,
    "health": EVERY_ROLE,
    "verify_deal": EVERY_ROLE,
    "policy": EVERY_ROLE,
    "stream": frozenset({AccessRole.OPS, AccessRole.AUDITOR, AccessRole.ADMIN}),
    # What the notifier delivered or dead-lettered (its store), with each alert's tries.
    "alerts": frozenset({AccessRole.OPS, AccessRole.AUDITOR, AccessRole.ADMIN}),
}

# "Your private policy should be written in the sand": the firm's private limits are shown to
# these roles only, wherever a number could show (policy, evidence, resolutions, errors, stream).
SEES_PRIVATE_LIMITS = frozenset({AccessRole.APPROVER, AccessRole.ADMIN})


@dataclass(frozen=True)
class Caller:
    """Who is calling, as their verified token says: `sub` is the actor recorded on every event."""

    sub: str
    roles: frozenset[str]
    # When the token stops being valid (its `exp`, seconds since the epoch): a live stream ends then.
    expires_at: float | None = None

    @property
    def sees_private_limits(self) -> bool:
        return not SEES_PRIVATE_LIMITS.isdisjoint(self.roles)


class Unauthenticated(DealflowError):
    """No token, or one that does not verify: the caller is not known."""

    code = "unauthenticated"


class AuthUnavailable(DealflowError):
    """The trusted keys cannot be had (the identity provider's JWKS is unreachable): no token can be checked now."""

    code = "auth_unavailable"


class Verifier(Protocol):
    """What the doors need of identity: a verified caller from a bearer token (adapters/identity.py)."""

    async def verify(self, token: str) -> Caller:  # raises Unauthenticated, or AuthUnavailable
        ...


class Forbidden(DealflowError):
    """The caller is known, but none of its roles may do this."""

    code = "forbidden"

    def __init__(self, message: str, allowed_roles: Iterable[str]) -> None:
        super().__init__(message)
        self.allowed_roles = ordered(allowed_roles)


def ordered(roles: Iterable[str]) -> list[str]:
    """Roles in the one order they are always listed in."""
    known = [str(role) for role in ORDER if role in set(roles)]
    return known + sorted(set(map(str, roles)) - set(known))


def authorize(allowed: frozenset[AccessRole], roles: Iterable[str], what: str) -> str:
    """The role under which the caller may do `what`, or Forbidden naming the roles that may."""
    held = set(roles)
    for role in ORDER:
        if role in allowed and role in held:
            return str(role)
    raise Forbidden(f"{what} needs one of the roles {', '.join(ordered(allowed))}", allowed)
