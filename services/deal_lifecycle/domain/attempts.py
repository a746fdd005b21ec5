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

from .errors import Blocker
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
        TOPIC = f"{TOPIC_PREFIX}.SigningRefused"
        deal_id: str
        deal_version: int
        blockers: list[dict[str, Any]]
        actor: str
        correlation_id: str

    @staticmethod
    def create_id(deal_id: str) -> UUID:
        """One log per deal, found again from the deal's id."""
        return uuid5(NAMESPACE_URL, f"dealflow:signing-attempts:{deal_id}")

    @event(SigningAttemptsStarted)
    def __init__(self, *, deal_id: str) -> None:
        self.deal_id = deal_id
        self.refusals = 0

    def refused(self, *, deal_version: int, blockers: list[Blocker], by: Attribution) -> None:
        self._signing_refused(
            deal_id=self.deal_id,
            deal_version=deal_version,
            blockers=[{"code": b.code, "message": b.message, "subject_id": b.subject_id} for b in blockers],
            actor=by.actor,
            correlation_id=by.correlation_id,
        )

    @event(SigningRefused)
    def _signing_refused(
        self, *, deal_id: str, deal_version: int, blockers: list[dict[str, Any]], actor: str, correlation_id: str
    ) -> None:
        self.refusals += 1


# The events other systems hear about; the log's own creation is bookkeeping.
PUBLISHED_TOPICS = (SigningAttempts.SigningRefused.TOPIC,)
