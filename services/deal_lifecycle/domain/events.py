"""The facts of a deal: what each event records, and how it changes the deal.

Each event's `apply` is the only code replaying history runs, so no guard ever re-runs
on an old fact. An event states the stage it leads to itself, rather than asking the
lifecycle: history replays as it was recorded, whatever the lifecycle says today.

Stored topics, field names and class versions are a contract with history: they must not
change when code moves. The Deal names every event as its own (`Deal.DealOpened`...).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from eventsourcing.domain import Aggregate, datetime_now_with_tzinfo

from .model import (
    Attribution,
    Concession,
    ConditionKind,
    DeadlineKind,
    ConditionStatus,
    Decision,
    Escalation,
    Expectation,
    Impasse,
    MissedDeadline,
    NegotiatedTerm,
    Outcome,
    Participant,
    Role,
    SalesPromise,
    Side,
    Stage,
    WalkAwayCondition,
    attendance,
)

if TYPE_CHECKING:
    from .deal import Deal

TOPIC_PREFIX = "dealflow:Deal"
# How many of the latest standing concessions the deal keeps whole (a one-sided run longer than this
# reads as this long; a command's answer shows fewer).
RECENT_CONCESSIONS = 50
Decided = TypeVar("Decided", SalesPromise, Expectation)


def attributed(by: Attribution) -> dict[str, str | None]:
    """Who did it, for whom, and in which conversation, as every event carries it: the one place it is put on an event."""
    return {"actor": by.actor, "correlation_id": by.correlation_id, "on_behalf_of": by.on_behalf_of}


# The moment the facts being recorded happen, when the application's clock says so (`recorded_at`).
_moment: ContextVar[datetime | None] = ContextVar("dealflow_moment", default=None)


@contextmanager
def recorded_at(moment: datetime) -> Iterator[None]:
    """Facts recorded inside happen at `moment`: one clock for a command's facts and the deadlines
    they start (the application's, which tests can move), instead of each fact reading the time."""
    token = _moment.set(moment)
    try:
        yield
    finally:
        _moment.reset(token)


class Event(Aggregate.Event):
    TOPIC = f"{TOPIC_PREFIX}.Event"
    actor: str
    correlation_id: str
    on_behalf_of: str | None
    # Someone did something: a stalled deal is moving again. The passing of time is no activity.
    is_activity: ClassVar[bool] = True

    @staticmethod
    def create_timestamp() -> datetime:
        return _moment.get() or datetime_now_with_tzinfo()

    def mutate(self, aggregate: Any) -> Any:
        deal = super().mutate(aggregate)
        if self.is_activity:
            deal.last_activity_at = self.timestamp
            _make_good(deal, DeadlineKind.STALLED_AFTER, self.timestamp)
        return deal


# Events stored before `on_behalf_of` existed do not carry it; replayed (without __init__) they
# read it from here. A class attribute, not a dataclass default: every new event is given it.
Event.on_behalf_of = None  # type: ignore[misc]


class Created(Aggregate.Created, Event):
    TOPIC = f"{TOPIC_PREFIX}.Created"


# -- the way to the transition meeting ----------------------------------------------------


class DealOpened(Created):
    TOPIC = f"{TOPIC_PREFIX}.DealOpened"
    title: str
    client_name: str
    owner: str

    def apply(self, deal: Deal) -> None:
        # These are the deal's state, and so its snapshot: names, types and order are stored.
        deal.title = self.title
        deal.client_name = self.client_name
        deal.owner = self.owner
        deal.stage = Stage.PROSPECT
        deal.participants = []
        deal.sales_promises = {}
        deal.expectations = {}
        deal.walk_away_reason = None
        deal.walk_away_cited = []
        deal.terms = {}
        # The concessions that stand, kept as decisions need them: counted by stage and side, each
        # agreed term's own (to withdraw when it is agreed again), and the last few (how one-sided the
        # run is; a command's answer). The whole list is the history's (views.standing_concessions).
        deal.concession_balance = {}  # stage -> {"given": n, "received": n}
        deal.early_concessions = 0
        deal.term_concessions = {}  # term -> its standing concessions
        deal.recent_concessions = []  # the last RECENT_CONCESSIONS standing, oldest first
        deal.non_negotiables = {}  # name -> "refused" | "accepted"
        deal.client_facts = {}
        deal.impasses = {}
        deal.escalations = []
        deal.conditions = {}
        # What the deadlines count from (deadlines.py), and those missed.
        deal.letter_of_intent_at = None
        deal.transition_meeting_at = None  # the first session of the meeting
        deal.signed_at = None
        deal.last_activity_at = self.timestamp
        deal.missed_deadlines = []


class LetterOfIntentSigned(Event):
    TOPIC = f"{TOPIC_PREFIX}.LetterOfIntentSigned"

    def apply(self, deal: Deal) -> None:
        deal.stage = Stage.LETTER_OF_INTENT
        deal.letter_of_intent_at = self.timestamp


class TransitionMeetingHeld(Event):
    TOPIC = f"{TOPIC_PREFIX}.TransitionMeetingHeld"
    participants: list[dict[str, str]]

    def apply(self, deal: Deal) -> None:
        deal.stage = Stage.TRANSITION_MEETING
        if deal.transition_meeting_at is None:
            deal.transition_meeting_at = self.timestamp
            _make_good(deal, DeadlineKind.TRANSITION_MEETING_WITHIN, self.timestamp)
        deal.participants = attendance(deal.participants, [Participant(p["name"], Role(p["role"])) for p in self.participants])


# -- Sales promises and expectations -----------------------------------------------------------


class SalesPromiseRecorded(Event):
    TOPIC = f"{TOPIC_PREFIX}.SalesPromiseRecorded"
    promise_id: str
    statement: str

    def apply(self, deal: Deal) -> None:
        deal.sales_promises[self.promise_id] = SalesPromise(self.promise_id, self.statement)


class SalesPromiseAccepted(Event):
    TOPIC = f"{TOPIC_PREFIX}.SalesPromiseAccepted"
    promise_id: str
    reason: str | None

    def apply(self, deal: Deal) -> None:
        _decide(deal.sales_promises, self.promise_id, Decision.ACCEPTED, self.reason)


class SalesPromiseRejected(Event):
    TOPIC = f"{TOPIC_PREFIX}.SalesPromiseRejected"
    promise_id: str
    reason: str | None

    def apply(self, deal: Deal) -> None:
        _decide(deal.sales_promises, self.promise_id, Decision.REJECTED, self.reason)


class SalesPromiseWithdrawn(Event):
    TOPIC = f"{TOPIC_PREFIX}.SalesPromiseWithdrawn"
    promise_id: str
    reason: str

    def apply(self, deal: Deal) -> None:
        _decide(deal.sales_promises, self.promise_id, Decision.WITHDRAWN, self.reason)


class ExpectationRecorded(Event):
    TOPIC = f"{TOPIC_PREFIX}.ExpectationRecorded"
    expectation_id: str
    side: str
    statement: str
    metric: str
    target: str
    due: date
    priority: int

    def apply(self, deal: Deal) -> None:
        deal.expectations[self.expectation_id] = Expectation(
            self.expectation_id, Side(self.side), self.statement, self.metric, self.target, self.due, self.priority
        )


class ExpectationAgreed(Event):
    TOPIC = f"{TOPIC_PREFIX}.ExpectationAgreed"
    expectation_id: str
    agreed_by: str
    reason: str | None

    def apply(self, deal: Deal) -> None:
        _decide(deal.expectations, self.expectation_id, Decision.ACCEPTED, self.reason)


class ExpectationRejected(Event):
    TOPIC = f"{TOPIC_PREFIX}.ExpectationRejected"
    expectation_id: str
    rejected_by: str
    reason: str | None

    def apply(self, deal: Deal) -> None:
        _decide(deal.expectations, self.expectation_id, Decision.REJECTED, self.reason)


class ExpectationWithdrawn(Event):
    TOPIC = f"{TOPIC_PREFIX}.ExpectationWithdrawn"
    expectation_id: str
    reason: str

    def apply(self, deal: Deal) -> None:
        _decide(deal.expectations, self.expectation_id, Decision.WITHDRAWN, self.reason)


class SalesPromiseRenegotiated(Event):
    """A rejected promise back on the table in new words, undecided again."""

    TOPIC = f"{TOPIC_PREFIX}.SalesPromiseRenegotiated"
    promise_id: str
    statement: str

    def apply(self, deal: Deal) -> None:
        deal.sales_promises[self.promise_id] = SalesPromise(self.promise_id, self.statement)


# -- Right Terms: terms, concessions, non-negotiables, right-client facts -------------------------


class TermProposed(Event):
    TOPIC = f"{TOPIC_PREFIX}.TermProposed"
    term: str
    value: float
    by: str
    policy_version: str

    def apply(self, deal: Deal) -> None:
        position = "client_demand" if self.by == Side.CLIENT else "provider_proposal"
        deal.terms[self.term] = replace(deal.terms.get(self.term, NegotiatedTerm(self.term)), **{position: self.value})


class TermAgreed(Event):
    TOPIC = f"{TOPIC_PREFIX}.TermAgreed"
    term: str
    value: float
    policy_version: str

    def apply(self, deal: Deal) -> None:
        deal.terms[self.term] = replace(deal.terms.get(self.term, NegotiatedTerm(self.term)), agreed=self.value)


class ConcessionRecorded(Event):
    TOPIC = f"{TOPIC_PREFIX}.ConcessionRecorded"
    concession_id: str
    by: str
    what: str
    stage: str
    early: bool
    term: str | None

    def apply(self, deal: Deal) -> None:
        concession = Concession(self.concession_id, Side(self.by), self.what, self.stage, self.early, self.term)
        _count(deal, concession, +1)
        if self.term is not None:
            deal.term_concessions.setdefault(self.term, []).append(concession)
        deal.recent_concessions.append(concession)
        del deal.recent_concessions[:-RECENT_CONCESSIONS]


class ConcessionWithdrawn(Event):
    """A concession no longer stands: its term was agreed again, at another value or at the public position."""

    TOPIC = f"{TOPIC_PREFIX}.ConcessionWithdrawn"
    concession_id: str
    term: str | None
    reason: str

    def apply(self, deal: Deal) -> None:
        # The balance counts the concessions that stand; the withdrawn one stays in the history.
        standing = deal.term_concessions.get(self.term or "", [])
        withdrawn = next((c for c in standing if c.id == self.concession_id), None)
        if withdrawn is None:
            return  # only a term's concession is withdrawn (its term agreed again)
        standing.remove(withdrawn)
        if not standing:
            del deal.term_concessions[withdrawn.term or ""]
        _count(deal, withdrawn, -1)
        if withdrawn in deal.recent_concessions:
            deal.recent_concessions.remove(withdrawn)


class NonNegotiableRefused(Event):
    TOPIC = f"{TOPIC_PREFIX}.NonNegotiableRefused"
    name: str
    reason: str | None

    def apply(self, deal: Deal) -> None:
        deal.non_negotiables[self.name] = "refused"


class NonNegotiableAccepted(Event):
    TOPIC = f"{TOPIC_PREFIX}.NonNegotiableAccepted"
    name: str

    def apply(self, deal: Deal) -> None:
        deal.non_negotiables[self.name] = "accepted"


class ClientFactsRecorded(Event):
    TOPIC = f"{TOPIC_PREFIX}.ClientFactsRecorded"
    annual_value: float | None
    industry: str | None
    policy_version: str

    def apply(self, deal: Deal) -> None:
        given = {"annual_value": self.annual_value, "industry": self.industry}
        deal.client_facts = {**deal.client_facts, **{k: v for k, v in given.items() if v is not None}}


# -- impasse and escalation -----------------------------------------------------------------------


class ImpasseDeclared(Event):
    TOPIC = f"{TOPIC_PREFIX}.ImpasseDeclared"
    impasse_id: str
    topic: str

    def apply(self, deal: Deal) -> None:
        deal.impasses[self.impasse_id] = Impasse(self.impasse_id, self.topic)


class ImpasseResolved(Event):
    TOPIC = f"{TOPIC_PREFIX}.ImpasseResolved"
    impasse_id: str
    how: str

    def apply(self, deal: Deal) -> None:
        deal.impasses[self.impasse_id] = replace(deal.impasses[self.impasse_id], resolution=self.how)


class EscalatedOverCounterpart(Event):
    TOPIC = f"{TOPIC_PREFIX}.EscalatedOverCounterpart"
    escalation_id: str
    impasse_id: str
    to: str
    counterpart_consented: bool
    strategies_tried: list[str]

    def apply(self, deal: Deal) -> None:
        escalation = Escalation(self.escalation_id, self.impasse_id, self.to, self.counterpart_consented, self.strategies_tried)
        deal.escalations = [*deal.escalations, escalation]


# -- walk-away conditions -------------------------------------------------------------------------


class WalkAwayConditionRaised(Event):
    TOPIC = f"{TOPIC_PREFIX}.WalkAwayConditionRaised"
    condition_id: str
    kind: str
    subject: str
    evidence: dict[str, Any]
    policy_version: str

    def apply(self, deal: Deal) -> None:
        deal.conditions[self.condition_id] = WalkAwayCondition(
            self.condition_id, ConditionKind(self.kind), self.subject, self.evidence, self.policy_version
        )


class WalkAwayConditionResolved(Event):
    TOPIC = f"{TOPIC_PREFIX}.WalkAwayConditionResolved"
    condition_id: str
    resolution: str

    def apply(self, deal: Deal) -> None:
        _close(deal, self.condition_id, ConditionStatus.RESOLVED, self.resolution)


class WalkAwayConditionWaived(Event):
    """v2 names the waived condition (kind, subject, evidence), so whoever reads the waiver alone knows what was let pass;
    v3 the role the waiver was made under (approver or admin), as the waiver's verified token carried it."""

    TOPIC = f"{TOPIC_PREFIX}.WalkAwayConditionWaived"
    class_version = 3
    condition_id: str
    reason: str
    kind: str | None
    subject: str | None
    evidence: dict[str, Any] | None
    role: str | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        # A v1 waiver named only the condition's id: the condition itself is in the deal's earlier events.
        state["kind"] = state["subject"] = state["evidence"] = None

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        # Before v3 a waiver's role was what the caller claimed (a header), never verified: none is recorded.
        state["role"] = None

    def apply(self, deal: Deal) -> None:
        _close(deal, self.condition_id, ConditionStatus.WAIVED, self.reason)


# -- the end of the window ------------------------------------------------------------------------


class ContractSigned(Event):
    TOPIC = f"{TOPIC_PREFIX}.ContractSigned"

    def apply(self, deal: Deal) -> None:
        deal.stage = Stage.CONTRACT_SIGNED
        deal.signed_at = self.timestamp
        _make_good(deal, DeadlineKind.CONTRACT_WITHIN, self.timestamp)


class WalkedAway(Event):
    """v2 cites the walk-away conditions that caused it (DOMAIN.md: "usually cites")."""

    TOPIC = f"{TOPIC_PREFIX}.WalkedAway"
    class_version = 2
    reason: str
    cited_conditions: list[str]

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        # A v1 walk-away cited nothing: the service did not record conditions then.
        state["cited_conditions"] = []

    def apply(self, deal: Deal) -> None:
        deal.stage = Stage.WALKED_AWAY
        deal.walk_away_reason = self.reason
        deal.walk_away_cited = self.cited_conditions


# -- time: deadlines, and after signing, delivery ------------------------------------------------------


class DeadlineMissed(Event):
    """A deadline of the policy passed before what was expected by then happened. Recorded by the
    service (actor `dealflow`), once per deadline; a warning, not a walk-away condition."""

    TOPIC = f"{TOPIC_PREFIX}.DeadlineMissed"
    is_activity = False
    deadline: str  # the policy key: transition_meeting_within, contract_within or stalled_after
    due_at: datetime
    expected: str
    policy_version: str
    counted_from: datetime  # the letter of intent, the first meeting, or the last fact recorded

    def apply(self, deal: Deal) -> None:
        missed = MissedDeadline(self.deadline, self.due_at, self.expected, self.policy_version, self.counted_from)
        deal.missed_deadlines = [*deal.missed_deadlines, missed]


class ExpectationDueSoon(Event):
    """After signing: an agreed expectation falls due within the policy's `expectation_reminder`."""

    TOPIC = f"{TOPIC_PREFIX}.ExpectationDueSoon"
    is_activity = False
    expectation_id: str
    side: str
    statement: str
    metric: str
    target: str
    due: date
    policy_version: str

    def apply(self, deal: Deal) -> None:
        deal.expectations[self.expectation_id] = replace(deal.expectations[self.expectation_id], due_soon=True)


class ExpectationOverdue(Event):
    """After signing: an agreed expectation's due date passed and nobody marked it met or missed."""

    TOPIC = f"{TOPIC_PREFIX}.ExpectationOverdue"
    is_activity = False
    expectation_id: str
    side: str
    statement: str
    metric: str
    target: str
    due: date

    def apply(self, deal: Deal) -> None:
        deal.expectations[self.expectation_id] = replace(deal.expectations[self.expectation_id], overdue=True)


class ExpectationMet(Event):
    """After signing: an agreed expectation was delivered, with the evidence."""

    TOPIC = f"{TOPIC_PREFIX}.ExpectationMet"
    expectation_id: str
    side: str
    evidence: str

    def apply(self, deal: Deal) -> None:
        _judge_delivery(deal, self.expectation_id, Outcome.MET, self.evidence)


class ExpectationMissed(Event):
    """After signing: an agreed expectation was not delivered, with the evidence."""

    TOPIC = f"{TOPIC_PREFIX}.ExpectationMissed"
    expectation_id: str
    side: str
    evidence: str

    def apply(self, deal: Deal) -> None:
        _judge_delivery(deal, self.expectation_id, Outcome.MISSED, self.evidence)


def _judge_delivery(deal: Deal, expectation_id: str, outcome: Outcome, evidence: str) -> None:
    deal.expectations[expectation_id] = replace(deal.expectations[expectation_id], outcome=outcome, evidence=evidence)


def _make_good(deal: Deal, kind: DeadlineKind, moment: datetime) -> None:
    """What a missed deadline expected happened: it stays missed, and is no longer open."""
    if any(m.deadline is kind and m.made_good_at is None for m in deal.missed_deadlines):
        deal.missed_deadlines = [
            replace(m, made_good_at=moment) if m.deadline is kind and m.made_good_at is None else m for m in deal.missed_deadlines
        ]


def _count(deal: Deal, concession: Concession, change: int) -> None:
    count_concession(vars(deal), concession, change)


def count_concession(state: dict[str, Any], concession: Concession, change: int) -> None:
    """Count a concession in (or, -1, out of) a deal's balance: by its stage, by who gave it, early or not."""
    counts = state["concession_balance"].setdefault(str(concession.stage), {"given": 0, "received": 0})
    counts["given" if concession.by is Side.PROVIDER else "received"] += change
    if concession.early:
        state["early_concessions"] += change


def _decide(items: dict[str, Decided], item_id: str, decision: Decision, reason: str | None) -> None:
    items[item_id] = replace(items[item_id], decision=decision, reason=reason)


def _close(deal: Deal, condition_id: str, status: ConditionStatus, because: str) -> None:
    deal.conditions[condition_id] = replace(deal.conditions[condition_id], status=status, closed_because=because)
