"""Refused attempts to sign a deal's contract, kept apart from the Deal.

A refused command changes nothing about the deal (its version does not move), yet a
refused signing is a fact ops want to hear about and auditors want to see. So each
deal has a log of its refused signing attempts, an aggregate of its own whose events
travel on the deal's subject like the deal's own.
"""

from __future__ import annotations

from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from .errors import MAX_BLOCKERS_SHOWN, Blocker
from .model import Attribution

TOPIC_PREFIX = "dealflow:SigningAttempts"


class SigningAttempts(Aggregate):
    TOPIC = TOPIC_PREFIX

    class Event(Aggregate.Event):
        TOPIC = f"{TOPIC_PREFIX}.Event"

    class Created(Aggregate.Created):
        TOPIC = f"{TOPIC_PREFIX}.Created"

    class SigningAttemptsStarted(Created):
        TOPIC = f"{TOPIC_PREFIX}.SigningAttemptsStarted"
        deal_id: str

    class SigningRefused(Event):
        """v2 names at most MAX_BLOCKERS_SHOWN blockers and counts them all (`blockers_total`),
        so the event stays small however large the deal has grown."""

        TOPIC = f"{TOPIC_PREFIX}.SigningRefused"
        class_version = 2
        deal_id: str
        deal_version: int
        blockers: list[dict[str, Any]]
        blockers_total: int
        actor: str
        correlation_id: str
        # Who a system said it acted for; refusals stored before it existed have none.
        on_behalf_of: str | None = None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # A v1 refusal listed every blocker.
            state["blockers_total"] = len(state["blockers"])

    @staticmethod
    def create_id(deal_id: str) -> UUID:
        """One log per deal, found again from the deal's id."""
        return uuid5(NAMESPACE_URL, f"dealflow:signing-attempts:{deal_id}")

    @event(SigningAttemptsStarted)
    def __init__(self, *, deal_id: str) -> None:
        self.deal_id = deal_id
        self.refusals = 0

    def refused(
        self, *, deal_version: int, blockers: list[Blocker], by: Attribution, blockers_total: int | None = None
    ) -> None:
        """`blockers_total`: how many there were, when `blockers` is already the shortened list a refusal shows."""
        self._signing_refused(
            deal_id=self.deal_id,
            deal_version=deal_version,
            blockers=[
                {"code": b.code, "message": b.message, "subject_id": b.subject_id} for b in blockers[:MAX_BLOCKERS_SHOWN]
            ],
            blockers_total=max(len(blockers), blockers_total or 0),
            actor=by.actor,
            correlation_id=by.correlation_id,
            on_behalf_of=by.on_behalf_of,
        )

    @event(SigningRefused)
    def _signing_refused(
        self,
        *,
        deal_id: str,
        deal_version: int,
        blockers: list[dict[str, Any]],
        blockers_total: int,
        actor: str,
        correlation_id: str,
        on_behalf_of: str | None = None,  # refusals stored before it existed are replayed without it
    ) -> None:
        self.refusals += 1


# The events other systems hear about; the log's own creation is bookkeeping.
PUBLISHED_TOPICS = (SigningAttempts.SigningRefused.TOPIC,)
