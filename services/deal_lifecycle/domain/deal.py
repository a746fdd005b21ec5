"""The Deal aggregate: commands check, events record.

Each public method asks the lifecycle (and checks its own content rules) and then
triggers one past-tense event through a private `@event` method. Replaying history
runs only the private methods, so no guard ever re-runs on an old fact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import date
from typing import Any, TypeVar
from uuid import uuid4

from eventsourcing.domain import Aggregate, event

from .blockers import signing_blockers
from .errors import Blocker, CommandRefused, InvalidCommand, NotFound, SigningRefused
from .lifecycle import NotAllowedAtStage, permit
from .model import Attribution, Decision, Expectation, Participant, Role, SalesPromise, Side, Stage

# Stored topics are a contract with history: they must not change when code moves.
TOPIC_PREFIX = "dealflow:Deal"
PROMISE, EXPECTATION = "Sales promise", "expectation"
Item = TypeVar("Item", SalesPromise, Expectation)


class Deal(Aggregate):
    TOPIC = TOPIC_PREFIX

    class Event(Aggregate.Event):
        TOPIC = f"{TOPIC_PREFIX}.Event"
        actor: str
        correlation_id: str

    class Created(Aggregate.Created):
        TOPIC = f"{TOPIC_PREFIX}.Created"

    class DealOpened(Created):
        TOPIC = f"{TOPIC_PREFIX}.DealOpened"
        title: str
        client_name: str
        owner: str
        actor: str
        correlation_id: str

    class LetterOfIntentSigned(Event):
        TOPIC = f"{TOPIC_PREFIX}.LetterOfIntentSigned"

    class TransitionMeetingHeld(Event):
        TOPIC = f"{TOPIC_PREFIX}.TransitionMeetingHeld"
        participants: list[dict[str, str]]

    class SalesPromiseRecorded(Event):
        TOPIC = f"{TOPIC_PREFIX}.SalesPromiseRecorded"
        promise_id: str
        statement: str

    class SalesPromiseAccepted(Event):
        TOPIC = f"{TOPIC_PREFIX}.SalesPromiseAccepted"
        promise_id: str
        reason: str | None

    class SalesPromiseRejected(Event):
        TOPIC = f"{TOPIC_PREFIX}.SalesPromiseRejected"
        promise_id: str
        reason: str | None

    class SalesPromiseWithdrawn(Event):
        TOPIC = f"{TOPIC_PREFIX}.SalesPromiseWithdrawn"
        promise_id: str
        reason: str

    class ExpectationRecorded(Event):
        TOPIC = f"{TOPIC_PREFIX}.ExpectationRecorded"
        expectation_id: str
        side: str
        statement: str
        metric: str
        target: str
        due: date
        priority: int

    class ExpectationAgreed(Event):
        TOPIC = f"{TOPIC_PREFIX}.ExpectationAgreed"
        expectation_id: str
        agreed_by: str
        reason: str | None

    class ExpectationRejected(Event):
        TOPIC = f"{TOPIC_PREFIX}.ExpectationRejected"
        expectation_id: str
        rejected_by: str
        reason: str | None

    class ExpectationWithdrawn(Event):
        TOPIC = f"{TOPIC_PREFIX}.ExpectationWithdrawn"
        expectation_id: str
        reason: str

    class ContractSigned(Event):
        TOPIC = f"{TOPIC_PREFIX}.ContractSigned"

    class WalkedAway(Event):
        TOPIC = f"{TOPIC_PREFIX}.WalkedAway"
        reason: str

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(cls, *, title: str, client_name: str, owner: str, by: Attribution) -> Deal:
        return cls(
            title=title,
            client_name=client_name,
            owner=owner,
            actor=by.actor,
            correlation_id=by.correlation_id,
        )

    @event(DealOpened)
    def __init__(self, *, title: str, client_name: str, owner: str, actor: str, correlation_id: str) -> None:
        self.title = title
        self.client_name = client_name
        self.owner = owner
        self.stage: str = Stage.PROSPECT
        self.participants: list[Participant] = []
        self.sales_promises: dict[str, SalesPromise] = {}
        self.expectations: dict[str, Expectation] = {}
        self.walk_away_reason: str | None = None

    # -- the way to the transition meeting --------------------------------------------

    def sign_letter_of_intent(self, *, by: Attribution) -> None:
        permit(self.stage, "sign_letter_of_intent")
        self._letter_of_intent_signed(actor=by.actor, correlation_id=by.correlation_id)

    @event(LetterOfIntentSigned)
    def _letter_of_intent_signed(self, *, actor: str, correlation_id: str) -> None:
        self.stage = Stage.LETTER_OF_INTENT

    def hold_transition_meeting(self, *, participants: Iterable[Participant], by: Attribution) -> None:
        attendees = list(dict.fromkeys(participants))
        if not attendees:
            raise InvalidCommand("participants", "at least one participant attends the meeting")
        permit(self.stage, "hold_transition_meeting")
        self._transition_meeting_held(
            participants=[{"name": p.name, "role": str(p.role)} for p in attendees],
            actor=by.actor,
            correlation_id=by.correlation_id,
        )

    @event(TransitionMeetingHeld)
    def _transition_meeting_held(self, *, participants: list[dict[str, str]], actor: str, correlation_id: str) -> None:
        self.stage = Stage.TRANSITION_MEETING
        held = [Participant(p["name"], Role(p["role"])) for p in participants]
        self.participants = list(dict.fromkeys([*self.participants, *held]))

    # -- Sales promises ------------------------------------------------------------

    def record_sales_promise(self, *, statement: str, by: Attribution) -> str:
        permit(self.stage, "record_sales_promise")
        promise_id = str(uuid4())
        self._sales_promise_recorded(
            promise_id=promise_id, statement=statement, actor=by.actor, correlation_id=by.correlation_id
        )
        return promise_id

    @event(SalesPromiseRecorded)
    def _sales_promise_recorded(self, *, promise_id: str, statement: str, actor: str, correlation_id: str) -> None:
        self.sales_promises[promise_id] = SalesPromise(promise_id, statement)

    def decide_sales_promise(self, promise_id: str, *, accepted: bool, reason: str | None, by: Attribution) -> None:
        """Operations accepts or rejects a Sales promise, in front of the client."""
        self._undecided(self.sales_promises, promise_id, PROMISE)
        permit(self.stage, "decide_sales_promise")
        decided = self._sales_promise_accepted if accepted else self._sales_promise_rejected
        decided(promise_id=promise_id, reason=reason, actor=by.actor, correlation_id=by.correlation_id)

    @event(SalesPromiseAccepted)
    def _sales_promise_accepted(self, *, promise_id: str, reason: str | None, actor: str, correlation_id: str) -> None:
        self._decide(self.sales_promises, promise_id, Decision.ACCEPTED, reason)

    @event(SalesPromiseRejected)
    def _sales_promise_rejected(self, *, promise_id: str, reason: str | None, actor: str, correlation_id: str) -> None:
        self._decide(self.sales_promises, promise_id, Decision.REJECTED, reason)

    def withdraw_sales_promise(self, promise_id: str, *, reason: str, by: Attribution) -> None:
        """Sales takes a promise back (it is no longer on the table, so no longer blocks signing)."""
        self._not_withdrawn(self.sales_promises, promise_id, PROMISE)
        permit(self.stage, "withdraw_sales_promise")
        self._sales_promise_withdrawn(
            promise_id=promise_id, reason=reason, actor=by.actor, correlation_id=by.correlation_id
        )

    @event(SalesPromiseWithdrawn)
    def _sales_promise_withdrawn(self, *, promise_id: str, reason: str, actor: str, correlation_id: str) -> None:
        self._decide(self.sales_promises, promise_id, Decision.WITHDRAWN, reason)

    # -- expectations, both ways ------------------------------------------------------

    def record_expectation(
        self,
        *,
        side: Side,
        statement: str,
        metric: str,
        target: str,
        due: date,
        priority: int,
        today: date,
        by: Attribution,
    ) -> str:
        if due < today:
            raise InvalidCommand("due", f"must not be in the past (today is {today.isoformat()})")
        if priority < 1:
            raise InvalidCommand("priority", "must be 1 (highest) or more")
        permit(self.stage, "record_expectation")
        expectation_id = str(uuid4())
        self._expectation_recorded(
            expectation_id=expectation_id,
            side=str(side),
            statement=statement,
            metric=metric,
            target=target,
            due=due,
            priority=priority,
            actor=by.actor,
            correlation_id=by.correlation_id,
        )
        return expectation_id

    @event(ExpectationRecorded)
    def _expectation_recorded(
        self,
        *,
        expectation_id: str,
        side: str,
        statement: str,
        metric: str,
        target: str,
        due: date,
        priority: int,
        actor: str,
        correlation_id: str,
    ) -> None:
        self.expectations[expectation_id] = Expectation(
            expectation_id, Side(side), statement, metric, target, due, priority
        )

    def decide_expectation(self, expectation_id: str, *, agreed: bool, reason: str | None, by: Attribution) -> None:
        """The *other* side agrees to, or rejects, an expectation."""
        expectation = self._undecided(self.expectations, expectation_id, EXPECTATION)
        permit(self.stage, "decide_expectation")
        other_side = str(expectation.side.other)
        if agreed:
            self._expectation_agreed(
                expectation_id=expectation_id,
                agreed_by=other_side,
                reason=reason,
                actor=by.actor,
                correlation_id=by.correlation_id,
            )
        else:
            self._expectation_rejected(
                expectation_id=expectation_id,
                rejected_by=other_side,
                reason=reason,
                actor=by.actor,
                correlation_id=by.correlation_id,
            )

    @event(ExpectationAgreed)
    def _expectation_agreed(
        self, *, expectation_id: str, agreed_by: str, reason: str | None, actor: str, correlation_id: str
    ) -> None:
        self._decide(self.expectations, expectation_id, Decision.ACCEPTED, reason)

    @event(ExpectationRejected)
    def _expectation_rejected(
        self, *, expectation_id: str, rejected_by: str, reason: str | None, actor: str, correlation_id: str
    ) -> None:
        self._decide(self.expectations, expectation_id, Decision.REJECTED, reason)

    def withdraw_expectation(self, expectation_id: str, *, reason: str, by: Attribution) -> None:
        """An expectation is taken off the table, typically to be refined into a new one."""
        self._not_withdrawn(self.expectations, expectation_id, EXPECTATION)
        permit(self.stage, "withdraw_expectation")
        self._expectation_withdrawn(
            expectation_id=expectation_id, reason=reason, actor=by.actor, correlation_id=by.correlation_id
        )

    @event(ExpectationWithdrawn)
    def _expectation_withdrawn(self, *, expectation_id: str, reason: str, actor: str, correlation_id: str) -> None:
        self._decide(self.expectations, expectation_id, Decision.WITHDRAWN, reason)

    # -- the end of the window ----------------------------------------------------------

    def sign_contract(self, *, by: Attribution) -> None:
        try:
            permit(self.stage, "sign_contract", deal=self)
        except NotAllowedAtStage:
            # Name every blocker, not only the stage: the caller fixes them all in one go.
            raise SigningRefused(signing_blockers(self)) from None
        self._contract_signed(actor=by.actor, correlation_id=by.correlation_id)

    @event(ContractSigned)
    def _contract_signed(self, *, actor: str, correlation_id: str) -> None:
        self.stage = Stage.CONTRACT_SIGNED

    def walk_away(self, *, reason: str, by: Attribution) -> None:
        permit(self.stage, "walk_away")
        self._walked_away(reason=reason, actor=by.actor, correlation_id=by.correlation_id)

    @event(WalkedAway)
    def _walked_away(self, *, reason: str, actor: str, correlation_id: str) -> None:
        self.stage = Stage.WALKED_AWAY
        self.walk_away_reason = reason

    # -- reading -----------------------------------------------------------------------

    @property
    def blockers(self) -> list[Blocker]:
        """What stops signing right now (empty once signed: there is nothing left to sign)."""
        if self.stage == Stage.CONTRACT_SIGNED:
            return []
        return signing_blockers(self)

    def _on_table(self, items: dict[str, Item], item_id: str, what: str) -> Item:
        try:
            return items[item_id]
        except KeyError:
            raise NotFound(f"deal {self.id} has no {what} {item_id}") from None

    def _undecided(self, items: dict[str, Item], item_id: str, what: str) -> Item:
        item = self._on_table(items, item_id, what)
        if item.decision is not Decision.PENDING:
            raise CommandRefused(f"{what} {item_id} is already {item.decision}", "already_decided")
        return item

    def _not_withdrawn(self, items: dict[str, Item], item_id: str, what: str) -> Item:
        item = self._on_table(items, item_id, what)
        if item.decision is Decision.WITHDRAWN:
            raise CommandRefused(f"{what} {item_id} is already withdrawn", "already_withdrawn")
        return item

    @staticmethod
    def _decide(items: dict[str, Item], item_id: str, decision: Decision, reason: str | None) -> None:
        items[item_id] = replace(items[item_id], decision=decision, reason=reason)


def event_type(domain_event: Any) -> str:
    """The public name of an event: its class name, e.g. `LetterOfIntentSigned`."""
    return type(domain_event).__name__
