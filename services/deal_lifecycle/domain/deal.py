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

from . import bounds
from .errors import Blocker, CommandRefused, Forbidden, InvalidCommand, NotFound
from .lifecycle import permit, signing_blockers, signing_is_unblocked
from .model import (
    Attribution,
    Concession,
    ConditionKind,
    ConditionStatus,
    Decision,
    Escalation,
    Expectation,
    Impasse,
    NegotiatedTerm,
    Participant,
    Role,
    SalesPromise,
    Side,
    Stage,
    WalkAwayCondition,
    excerpt,
)
from .policy import Policy, Term

# Stored topics are a contract with history: they must not change when code moves.
TOPIC_PREFIX = "dealflow:Deal"
PROMISE, EXPECTATION = "Sales promise", "expectation"
# Caller text quoted in a condition's evidence or resolution is cut to this length: the whole
# text is in the event that recorded it, and the condition only needs to point at it.
QUOTED = 200
# Walk-away conditions are raised and resolved by the service itself, never by a caller.
SERVICE = "dealflow"
APPROVER = "approver"
Item = TypeVar("Item", SalesPromise, Expectation, WalkAwayCondition, Impasse)


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

    class SalesPromiseRenegotiated(Event):
        TOPIC = f"{TOPIC_PREFIX}.SalesPromiseRenegotiated"
        promise_id: str
        statement: str

    class TermProposed(Event):
        TOPIC = f"{TOPIC_PREFIX}.TermProposed"
        term: str
        value: float
        by: str
        policy_version: str

    class TermAgreed(Event):
        TOPIC = f"{TOPIC_PREFIX}.TermAgreed"
        term: str
        value: float
        policy_version: str

    class ConcessionRecorded(Event):
        TOPIC = f"{TOPIC_PREFIX}.ConcessionRecorded"
        concession_id: str
        by: str
        what: str
        stage: str
        early: bool
        term: str | None

    class ConcessionWithdrawn(Event):
        """A concession no longer stands: its term was agreed again, at another value or at the public position."""

        TOPIC = f"{TOPIC_PREFIX}.ConcessionWithdrawn"
        concession_id: str
        term: str | None
        reason: str

    class NonNegotiableRefused(Event):
        TOPIC = f"{TOPIC_PREFIX}.NonNegotiableRefused"
        name: str
        reason: str | None

    class NonNegotiableAccepted(Event):
        TOPIC = f"{TOPIC_PREFIX}.NonNegotiableAccepted"
        name: str

    class ClientFactsRecorded(Event):
        TOPIC = f"{TOPIC_PREFIX}.ClientFactsRecorded"
        annual_value: float | None
        industry: str | None
        policy_version: str

    class ImpasseDeclared(Event):
        TOPIC = f"{TOPIC_PREFIX}.ImpasseDeclared"
        impasse_id: str
        topic: str

    class ImpasseResolved(Event):
        TOPIC = f"{TOPIC_PREFIX}.ImpasseResolved"
        impasse_id: str
        how: str

    class EscalatedOverCounterpart(Event):
        TOPIC = f"{TOPIC_PREFIX}.EscalatedOverCounterpart"
        escalation_id: str
        impasse_id: str
        to: str
        counterpart_consented: bool
        strategies_tried: list[str]

    class WalkAwayConditionRaised(Event):
        TOPIC = f"{TOPIC_PREFIX}.WalkAwayConditionRaised"
        condition_id: str
        kind: str
        subject: str
        evidence: dict[str, Any]
        policy_version: str

    class WalkAwayConditionResolved(Event):
        TOPIC = f"{TOPIC_PREFIX}.WalkAwayConditionResolved"
        condition_id: str
        resolution: str

    class WalkAwayConditionWaived(Event):
        """v2 names the waived condition (kind, subject, evidence), so whoever reads the waiver alone knows what was let pass."""

        TOPIC = f"{TOPIC_PREFIX}.WalkAwayConditionWaived"
        class_version = 2
        condition_id: str
        reason: str
        kind: str | None
        subject: str | None
        evidence: dict[str, Any] | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # A v1 waiver named only the condition's id: the condition itself is in the deal's earlier events.
            state["kind"] = state["subject"] = state["evidence"] = None

    class ContractSigned(Event):
        TOPIC = f"{TOPIC_PREFIX}.ContractSigned"

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
        self.walk_away_cited: list[str] = []
        self.terms: dict[str, NegotiatedTerm] = {}
        self.concessions: list[Concession] = []
        self.non_negotiables: dict[str, str] = {}  # name -> "refused" | "accepted"
        self.client_facts: dict[str, Any] = {}
        self.impasses: dict[str, Impasse] = {}
        self.escalations: list[Escalation] = []
        self.conditions: dict[str, WalkAwayCondition] = {}

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
        bounds.room_for("participants", len(set(self.participants) | set(attendees)), bounds.MAX_PARTICIPANTS)
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
        bounds.room_for("Sales promises", len(self.sales_promises) + 1, bounds.MAX_PROMISES)
        promise_id = str(uuid4())
        self._sales_promise_recorded(
            promise_id=promise_id, statement=statement, actor=by.actor, correlation_id=by.correlation_id
        )
        return promise_id

    @event(SalesPromiseRecorded)
    def _sales_promise_recorded(self, *, promise_id: str, statement: str, actor: str, correlation_id: str) -> None:
        self.sales_promises[promise_id] = SalesPromise(promise_id, statement)

    def decide_sales_promise(
        self, promise_id: str, *, accepted: bool, reason: str | None, policy: Policy, by: Attribution
    ) -> None:
        """Operations accepts or rejects a Sales promise, in front of the client."""
        promise = self._undecided(self.sales_promises, promise_id, PROMISE)
        permit(self.stage, "decide_sales_promise")
        decided = self._sales_promise_accepted if accepted else self._sales_promise_rejected
        decided(promise_id=promise_id, reason=reason, actor=by.actor, correlation_id=by.correlation_id)
        if not accepted:
            evidence = {"promise_id": promise_id, "statement": excerpt(promise.statement, QUOTED), "reason": _quoted(reason)}
            self._raise(ConditionKind.PROMISE_REJECTED, promise_id, evidence, policy, by)

    def renegotiate_sales_promise(self, promise_id: str, *, statement: str, by: Attribution) -> None:
        """A rejected promise is put back on the table in new words, for Operations to decide again."""
        promise = self._on_table(self.sales_promises, promise_id, PROMISE)
        if promise.decision is not Decision.REJECTED:
            raise CommandRefused(f"{PROMISE} {promise_id} is {promise.decision}; only a rejected one is renegotiated", "not_rejected")
        permit(self.stage, "renegotiate_sales_promise")
        self._sales_promise_renegotiated(
            promise_id=promise_id, statement=statement, actor=by.actor, correlation_id=by.correlation_id
        )
        self._resolve(ConditionKind.PROMISE_REJECTED, promise_id, f"the promise was renegotiated: {excerpt(statement, QUOTED)!r}", by)

    @event(SalesPromiseRenegotiated)
    def _sales_promise_renegotiated(self, *, promise_id: str, statement: str, actor: str, correlation_id: str) -> None:
        self.sales_promises[promise_id] = SalesPromise(promise_id, statement)

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
        self._resolve(ConditionKind.PROMISE_REJECTED, promise_id, "the promise was withdrawn", by)

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
        if priority < bounds.MIN_PRIORITY:
            raise InvalidCommand("priority", f"must be {bounds.MIN_PRIORITY} (highest) or more")
        if priority > bounds.MAX_PRIORITY:
            raise InvalidCommand("priority", f"must be {bounds.MAX_PRIORITY} (lowest) or less")
        permit(self.stage, "record_expectation")
        bounds.room_for("expectations", len(self.expectations) + 1, bounds.MAX_EXPECTATIONS)
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

    def decide_expectation(
        self, expectation_id: str, *, agreed: bool, reason: str | None, policy: Policy, by: Attribution
    ) -> None:
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
            if expectation.side is Side.PROVIDER:
                evidence = {
                    "expectation_id": expectation_id,
                    "statement": excerpt(expectation.statement, QUOTED),
                    "reason": _quoted(reason),
                }
                self._raise(ConditionKind.PROVIDER_EXPECTATION_REJECTED, expectation_id, evidence, policy, by)

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
        self._resolve(ConditionKind.PROVIDER_EXPECTATION_REJECTED, expectation_id, "the expectation was withdrawn", by)

    @event(ExpectationWithdrawn)
    def _expectation_withdrawn(self, *, expectation_id: str, reason: str, actor: str, correlation_id: str) -> None:
        self._decide(self.expectations, expectation_id, Decision.WITHDRAWN, reason)

    # -- Right Terms: terms, concessions, non-negotiables, right-client facts -------------

    def propose_term(self, *, term: str, value: float, side: Side, policy: Policy, by: Attribution) -> None:
        """A side puts a value for a term on the table: the firm proposes, the client demands."""
        rule = policy.term(term)
        rule.check_range(value)
        if side is Side.PROVIDER and rule.beyond_limit(value):
            raise InvalidCommand("value", f"the firm does not propose {term} past its own limit of {rule.limit:g}")
        permit(self.stage, "propose_term")
        self._term_proposed(
            term=term, value=value, by=str(side), policy_version=policy.version, actor=by.actor, correlation_id=by.correlation_id
        )
        if side is Side.CLIENT:
            self._judge_term(rule, value, policy, by)

    @event(TermProposed)
    def _term_proposed(self, *, term: str, value: float, by: str, policy_version: str, actor: str, correlation_id: str) -> None:
        current = self.terms.get(term, NegotiatedTerm(term))
        field = "client_demand" if by == Side.CLIENT else "provider_proposal"
        self.terms[term] = replace(current, **{field: value})

    def agree_term(self, *, term: str, value: float, policy: Policy, by: Attribution) -> None:
        """Both sides settle a term. Worse than the public position is a concession by the firm; better, by the client."""
        rule = policy.term(term)
        rule.check_range(value)
        permit(self.stage, "agree_term")
        conceded = rule.concedes(value) or rule.wins(value)
        # One term is one give: agreeing it again replaces the concession it made before.
        earlier = [c for c in self.concessions if c.term == term]
        if conceded:
            bounds.room_for("concessions", len(self.concessions) - len(earlier) + 1, bounds.MAX_CONCESSIONS)
        self._term_agreed(term=term, value=value, policy_version=policy.version, actor=by.actor, correlation_id=by.correlation_id)
        for concession in earlier:
            self._concession_withdrawn(
                concession_id=concession.id,
                term=term,
                reason=f"{term} agreed again at {value:g}",
                actor=by.actor,
                correlation_id=by.correlation_id,
            )
        if conceded:
            giver = Side.PROVIDER if rule.concedes(value) else Side.CLIENT
            self._concede(giver, f"{term} agreed at {value:g} (public position {rule.public:g})", term, policy, by)
        elif earlier:
            self._judge_balance(policy, by)
        self._judge_term(rule, value, policy, by)

    @event(TermAgreed)
    def _term_agreed(self, *, term: str, value: float, policy_version: str, actor: str, correlation_id: str) -> None:
        self.terms[term] = replace(self.terms.get(term, NegotiatedTerm(term)), agreed=value)

    def record_concession(self, *, side: Side, what: str, policy: Policy, by: Attribution) -> str:
        permit(self.stage, "record_concession")
        bounds.room_for("concessions", len(self.concessions) + 1, bounds.MAX_CONCESSIONS)
        return self._concede(side, what, None, policy, by)

    def _concede(self, side: Side, what: str, term: str | None, policy: Policy, by: Attribution) -> str:
        concession_id = str(uuid4())
        self._concession_recorded(
            concession_id=concession_id,
            by=str(side),
            what=what,
            stage=str(self.stage),
            # The firm should not concede anything while it is still finding out whether this is a fit.
            early=self.stage == Stage.PROSPECT,
            term=term,
            actor=by.actor,
            correlation_id=by.correlation_id,
        )
        self._judge_balance(policy, by)
        return concession_id

    def _judge_balance(self, policy: Policy, by: Attribution) -> None:
        given, received = self.concession_counts()
        verdict = policy.concessions.verdict(given, received)
        evidence = None if verdict is None else {"given": given, "received": received, "rule": verdict}
        self._judge(
            ConditionKind.CONCESSION_IMBALANCE,
            "balance",
            evidence,
            f"concessions back in balance: given {given}, received {received}",
            policy,
            by,
        )

    @event(ConcessionRecorded)
    def _concession_recorded(
        self, *, concession_id: str, by: str, what: str, stage: str, early: bool, term: str | None, actor: str, correlation_id: str
    ) -> None:
        self.concessions = [*self.concessions, Concession(concession_id, Side(by), what, stage, early, term)]

    @event(ConcessionWithdrawn)
    def _concession_withdrawn(self, *, concession_id: str, term: str | None, reason: str, actor: str, correlation_id: str) -> None:
        # The balance counts the concessions that stand; the withdrawn one stays in the history.
        self.concessions = [c for c in self.concessions if c.id != concession_id]

    def concession_counts(self) -> tuple[int, int]:
        """(given by the firm, received from the client)."""
        given = sum(1 for c in self.concessions if c.by is Side.PROVIDER)
        return given, len(self.concessions) - given

    def refuse_non_negotiable(self, *, name: str, reason: str | None, policy: Policy, by: Attribution) -> None:
        description = policy.non_negotiable(name)
        permit(self.stage, "refuse_non_negotiable")
        self._non_negotiable_refused(name=name, reason=reason, actor=by.actor, correlation_id=by.correlation_id)
        evidence = {"non_negotiable": name, "description": description, "reason": _quoted(reason)}
        self._raise(ConditionKind.NON_NEGOTIABLE_REFUSED, name, evidence, policy, by)

    @event(NonNegotiableRefused)
    def _non_negotiable_refused(self, *, name: str, reason: str | None, actor: str, correlation_id: str) -> None:
        self.non_negotiables[name] = "refused"

    def accept_non_negotiable(self, *, name: str, policy: Policy, by: Attribution) -> None:
        policy.non_negotiable(name)
        permit(self.stage, "accept_non_negotiable")
        self._non_negotiable_accepted(name=name, actor=by.actor, correlation_id=by.correlation_id)
        self._resolve(ConditionKind.NON_NEGOTIABLE_REFUSED, name, f"the client accepted {name}", by)

    @event(NonNegotiableAccepted)
    def _non_negotiable_accepted(self, *, name: str, actor: str, correlation_id: str) -> None:
        self.non_negotiables[name] = "accepted"

    def record_client_facts(
        self, *, annual_value: float | None, industry: str | None, policy: Policy, by: Attribution
    ) -> None:
        """Facts about the prospect, judged against the right-client criteria."""
        if annual_value is None and industry is None:
            raise InvalidCommand("annual_value", "give annual_value, industry, or both")
        permit(self.stage, "record_client_facts")
        self._client_facts_recorded(
            annual_value=annual_value,
            industry=industry,
            policy_version=policy.version,
            actor=by.actor,
            correlation_id=by.correlation_id,
        )
        failures = policy.right_client.failures(annual_value=annual_value, industry=industry)
        for criterion in sorted(policy.right_client.judged(annual_value=annual_value, industry=industry)):
            evidence = None if criterion not in failures else {"criterion": criterion, **failures[criterion]}
            self._judge(ConditionKind.CLIENT_DISQUALIFIED, criterion, evidence, f"{criterion} is now met", policy, by)

    @event(ClientFactsRecorded)
    def _client_facts_recorded(
        self, *, annual_value: float | None, industry: str | None, policy_version: str, actor: str, correlation_id: str
    ) -> None:
        given = {"annual_value": annual_value, "industry": industry}
        self.client_facts = {**self.client_facts, **{k: v for k, v in given.items() if v is not None}}

    # -- impasse and escalation ------------------------------------------------------------

    def declare_impasse(self, *, topic: str, by: Attribution) -> str:
        permit(self.stage, "declare_impasse")
        bounds.room_for("impasses", len(self.impasses) + 1, bounds.MAX_IMPASSES)
        impasse_id = str(uuid4())
        self._impasse_declared(impasse_id=impasse_id, topic=topic, actor=by.actor, correlation_id=by.correlation_id)
        return impasse_id

    @event(ImpasseDeclared)
    def _impasse_declared(self, *, impasse_id: str, topic: str, actor: str, correlation_id: str) -> None:
        self.impasses[impasse_id] = Impasse(impasse_id, topic)

    def resolve_impasse(self, impasse_id: str, *, how: str, by: Attribution) -> None:
        self._open_impasse(impasse_id)
        permit(self.stage, "resolve_impasse")
        self._impasse_resolved(impasse_id=impasse_id, how=how, actor=by.actor, correlation_id=by.correlation_id)

    @event(ImpasseResolved)
    def _impasse_resolved(self, *, impasse_id: str, how: str, actor: str, correlation_id: str) -> None:
        self.impasses[impasse_id] = replace(self.impasses[impasse_id], resolution=how)

    def escalate(
        self, *, impasse_id: str, to: str, counterpart_consented: bool, strategies_tried: list[str], by: Attribution
    ) -> str:
        """Over the counterpart's head, as a last resort: only while an impasse is open, after other strategies."""
        self._open_impasse(impasse_id)
        if not strategies_tried:
            raise InvalidCommand("strategies_tried", "name the impasse-breaking strategies tried before escalating")
        if len(strategies_tried) > bounds.MAX_STRATEGIES:
            raise InvalidCommand("strategies_tried", f"name at most {bounds.MAX_STRATEGIES} strategies")
        if sum(map(len, strategies_tried)) > bounds.MAX_STRATEGIES_CHARACTERS:
            raise InvalidCommand(
                "strategies_tried", f"at most {bounds.MAX_STRATEGIES_CHARACTERS} characters in all: name them briefly"
            )
        permit(self.stage, "escalate")
        bounds.room_for("escalations", len(self.escalations) + 1, bounds.MAX_ESCALATIONS)
        escalation_id = str(uuid4())
        self._escalated(
            escalation_id=escalation_id,
            impasse_id=impasse_id,
            to=to,
            counterpart_consented=counterpart_consented,
            strategies_tried=list(strategies_tried),
            actor=by.actor,
            correlation_id=by.correlation_id,
        )
        return escalation_id

    @event(EscalatedOverCounterpart)
    def _escalated(
        self,
        *,
        escalation_id: str,
        impasse_id: str,
        to: str,
        counterpart_consented: bool,
        strategies_tried: list[str],
        actor: str,
        correlation_id: str,
    ) -> None:
        escalation = Escalation(escalation_id, impasse_id, to, counterpart_consented, strategies_tried)
        self.escalations = [*self.escalations, escalation]

    # -- walk-away conditions: raised and resolved by the service, waived by an approver ----

    def waive_condition(self, condition_id: str, *, reason: str, role: str | None, by: Attribution) -> None:
        if role != APPROVER:
            raise Forbidden(f"only an actor with the {APPROVER!r} role may waive a walk-away condition")
        condition = self._on_table(self.conditions, condition_id, "walk-away condition")
        if not condition.is_open:
            raise CommandRefused(f"walk-away condition {condition_id} is already {condition.status}", "already_closed")
        permit(self.stage, "waive_condition")
        self._condition_waived(
            condition_id=condition_id,
            reason=reason,
            kind=str(condition.kind),
            subject=condition.subject,
            evidence=condition.evidence,
            actor=by.actor,
            correlation_id=by.correlation_id,
        )

    @event(WalkAwayConditionWaived)
    def _condition_waived(
        self,
        *,
        condition_id: str,
        reason: str,
        kind: str | None,
        subject: str | None,
        evidence: dict[str, Any] | None,
        actor: str,
        correlation_id: str,
    ) -> None:
        self._close_condition(condition_id, ConditionStatus.WAIVED, reason)

    def _judge(
        self,
        kind: ConditionKind,
        subject: str,
        evidence: dict[str, Any] | None,
        resolution: str,
        policy: Policy,
        by: Attribution,
    ) -> None:
        """Open the condition while the rule is broken (evidence given), resolve it once it holds again."""
        if evidence is None:
            self._resolve(kind, subject, resolution, by)
        else:
            self._raise(kind, subject, evidence, policy, by)

    def _raise(self, kind: ConditionKind, subject: str, evidence: dict[str, Any], policy: Policy, by: Attribution) -> None:
        if self._open_condition(kind, subject) is None:
            # The command that would raise it is refused whole (its events are not saved).
            bounds.room_for("walk-away conditions", len(self.conditions) + 1, bounds.MAX_CONDITIONS)
            self._condition_raised(
                condition_id=str(uuid4()),
                kind=str(kind),
                subject=subject,
                evidence=evidence,
                policy_version=policy.version,
                actor=SERVICE,
                correlation_id=by.correlation_id,
            )

    def _resolve(self, kind: ConditionKind, subject: str, resolution: str, by: Attribution) -> None:
        condition = self._open_condition(kind, subject)
        if condition is not None:
            self._condition_resolved(
                condition_id=condition.id, resolution=resolution, actor=SERVICE, correlation_id=by.correlation_id
            )

    @event(WalkAwayConditionRaised)
    def _condition_raised(
        self,
        *,
        condition_id: str,
        kind: str,
        subject: str,
        evidence: dict[str, Any],
        policy_version: str,
        actor: str,
        correlation_id: str,
    ) -> None:
        self.conditions[condition_id] = WalkAwayCondition(
            condition_id, ConditionKind(kind), subject, evidence, policy_version
        )

    @event(WalkAwayConditionResolved)
    def _condition_resolved(self, *, condition_id: str, resolution: str, actor: str, correlation_id: str) -> None:
        self._close_condition(condition_id, ConditionStatus.RESOLVED, resolution)

    def _close_condition(self, condition_id: str, status: ConditionStatus, because: str) -> None:
        self.conditions[condition_id] = replace(self.conditions[condition_id], status=status, closed_because=because)

    def _open_condition(self, kind: ConditionKind, subject: str) -> WalkAwayCondition | None:
        return next((c for c in self.conditions.values() if c.is_open and c.kind is kind and c.subject == subject), None)

    def _judge_term(self, rule: Term, value: float, policy: Policy, by: Attribution) -> None:
        """The client's latest position on a term (a demand or the agreed value) decides the condition."""
        evidence = None
        if rule.beyond_limit(value):
            evidence = {"term": rule.name, "value": value, "limit": rule.limit, "public": rule.public, "worse": str(rule.worse)}
        resolution = f"{rule.name} revised to {value:g}, within the limit of {rule.limit:g}"
        self._judge(ConditionKind.TERM_BEYOND_LIMIT, rule.name, evidence, resolution, policy, by)

    def _open_impasse(self, impasse_id: str) -> Impasse:
        impasse = self._on_table(self.impasses, impasse_id, "impasse")
        if not impasse.is_open:
            raise CommandRefused(f"impasse {impasse_id} is already resolved: escalation needs an open impasse", "no_open_impasse")
        return impasse

    # -- the end of the window ----------------------------------------------------------

    def sign_contract(self, *, by: Attribution) -> None:
        signing_is_unblocked(self)
        permit(self.stage, "sign_contract")
        self._contract_signed(actor=by.actor, correlation_id=by.correlation_id)

    @event(ContractSigned)
    def _contract_signed(self, *, actor: str, correlation_id: str) -> None:
        self.stage = Stage.CONTRACT_SIGNED

    def walk_away(self, *, reason: str, cited_conditions: Iterable[str] = (), by: Attribution) -> None:
        cited = list(dict.fromkeys(cited_conditions))
        if len(cited) > bounds.MAX_CITED_CONDITIONS:
            raise InvalidCommand("cited_conditions", f"cite at most {bounds.MAX_CITED_CONDITIONS} walk-away conditions")
        for condition_id in cited:
            if condition_id not in self.conditions:
                raise InvalidCommand("cited_conditions", f"{condition_id!r} is not a walk-away condition of this deal")
        permit(self.stage, "walk_away")
        self._walked_away(reason=reason, cited_conditions=cited, actor=by.actor, correlation_id=by.correlation_id)

    @event(WalkedAway)
    def _walked_away(self, *, reason: str, cited_conditions: list[str], actor: str, correlation_id: str) -> None:
        self.stage = Stage.WALKED_AWAY
        self.walk_away_reason = reason
        self.walk_away_cited = cited_conditions

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


def _quoted(text: str | None) -> str | None:
    return None if text is None else excerpt(text, QUOTED)


def event_type(domain_event: Any) -> str:
    """The public name of an event: its class name, e.g. `LetterOfIntentSigned`."""
    return type(domain_event).__name__


def event_topics() -> tuple[str, ...]:
    """The stored topics of the Deal's events (not of its abstract bases)."""
    return tuple(
        value.TOPIC
        for name, value in vars(Deal).items()
        if isinstance(value, type) and issubclass(value, (Deal.Event, Deal.Created)) and name not in ("Event", "Created")
    )
