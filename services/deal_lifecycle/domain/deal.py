"""The Deal aggregate: commands check, facts record, walk-away conditions follow from the table.

Each public method checks its own content rules and asks the lifecycle (lifecycle.py), then
records its facts (events.py, each of which knows how it changes the deal), then lets the
walk-away table (walk_away.py) judge what those facts mean. Replaying history runs only
the facts, so no guard ever re-runs on an old fact.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import uuid4

from eventsourcing.domain import Aggregate

from . import bounds, deadlines, events
from . import walk_away as walk_away_rules
from .errors import Blocker, CommandRefused, InvalidCommand, NotFound
from .events import attributed
from .lifecycle import permit, signing_blockers, signing_is_unblocked
from .model import (
    Attribution,
    Concession,
    ConditionKind,
    Decision,
    Escalation,
    Expectation,
    Impasse,
    MissedDeadline,
    NegotiatedTerm,
    Participant,
    SalesPromise,
    Side,
    Stage,
    WalkAwayCondition,
    attendance,
)
from .policy import Policy

# Kept importable from here: stored topics are built from it.
TOPIC_PREFIX = events.TOPIC_PREFIX
PROMISE, EXPECTATION = "Sales promise", "expectation"
# Walk-away conditions are raised and resolved by the service itself, never by a caller.
SERVICE = "dealflow"
Item = TypeVar("Item", SalesPromise, Expectation, WalkAwayCondition, Impasse)
Fact = TypeVar("Fact", bound=events.Event)


class Deal(Aggregate):
    TOPIC = TOPIC_PREFIX
    # v2 keeps the concessions as decisions need them (counts, each term's own, the last few), not the
    # whole list: a snapshot no longer grows with the history. Snapshots of v1 are upcast on load.
    # v3 keeps what the deadlines count from (deadlines.py). A v2 snapshot does not know when its letter
    # of intent or meeting happened: the upcast takes the snapshot's own moment (never earlier than the
    # truth) and marks the deal ANCHORS_UNKNOWN, and the service's repository replays such a deal from
    # its events instead, so every view and deadline counts from the moments that really happened.
    class_version = 3
    ANCHORS_UNKNOWN = "_anchors_unknown"
    ANCHORS = ("letter_of_intent_at", "transition_meeting_at", "signed_at", "last_activity_at")

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        moment = state["_modified_on"]
        reached = {Stage.LETTER_OF_INTENT: 1, Stage.TRANSITION_MEETING: 2, Stage.CONTRACT_SIGNED: 3}.get(state["stage"], 0)
        letter, meeting, signed, activity = Deal.ANCHORS
        state[letter] = moment if reached >= 1 else None
        state[meeting] = moment if reached >= 2 else None
        state[signed] = moment if reached >= 3 else None
        state[activity] = moment
        state["missed_deadlines"] = []
        state[Deal.ANCHORS_UNKNOWN] = True

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        concessions = state.pop("concessions")
        counted = {"concession_balance": {}, "early_concessions": 0}
        for concession in concessions:
            events.count_concession(counted, concession, +1)
        state.update(counted)
        state["term_concessions"] = {}
        for concession in concessions:
            if concession.term is not None:
                state["term_concessions"].setdefault(concession.term, []).append(concession)
        state["recent_concessions"] = concessions[-events.RECENT_CONCESSIONS :]

    # The facts of a deal, named as its own: Deal.DealOpened, isinstance(e, Deal.WalkedAway)...
    # In this order: the order of the published schemas.
    Event = events.Event
    Created = events.Created
    DealOpened = events.DealOpened
    LetterOfIntentSigned = events.LetterOfIntentSigned
    TransitionMeetingHeld = events.TransitionMeetingHeld
    SalesPromiseRecorded = events.SalesPromiseRecorded
    SalesPromiseAccepted = events.SalesPromiseAccepted
    SalesPromiseRejected = events.SalesPromiseRejected
    SalesPromiseWithdrawn = events.SalesPromiseWithdrawn
    ExpectationRecorded = events.ExpectationRecorded
    ExpectationAgreed = events.ExpectationAgreed
    ExpectationRejected = events.ExpectationRejected
    ExpectationWithdrawn = events.ExpectationWithdrawn
    SalesPromiseRenegotiated = events.SalesPromiseRenegotiated
    TermProposed = events.TermProposed
    TermAgreed = events.TermAgreed
    ConcessionRecorded = events.ConcessionRecorded
    ConcessionWithdrawn = events.ConcessionWithdrawn
    NonNegotiableRefused = events.NonNegotiableRefused
    NonNegotiableAccepted = events.NonNegotiableAccepted
    ClientFactsRecorded = events.ClientFactsRecorded
    ImpasseDeclared = events.ImpasseDeclared
    ImpasseResolved = events.ImpasseResolved
    EscalatedOverCounterpart = events.EscalatedOverCounterpart
    WalkAwayConditionRaised = events.WalkAwayConditionRaised
    WalkAwayConditionResolved = events.WalkAwayConditionResolved
    WalkAwayConditionWaived = events.WalkAwayConditionWaived
    ContractSigned = events.ContractSigned
    WalkedAway = events.WalkedAway
    DeadlineMissed = events.DeadlineMissed
    ExpectationDueSoon = events.ExpectationDueSoon
    ExpectationOverdue = events.ExpectationOverdue
    ExpectationMet = events.ExpectationMet
    ExpectationMissed = events.ExpectationMissed

    if TYPE_CHECKING:
        # What a deal holds, set by its facts (DealOpened first): this is also its snapshot.
        title: str
        client_name: str
        owner: str
        stage: str
        participants: list[Participant]
        sales_promises: dict[str, SalesPromise]
        expectations: dict[str, Expectation]
        walk_away_reason: str | None
        walk_away_cited: list[str]
        terms: dict[str, NegotiatedTerm]
        concession_balance: dict[str, dict[str, int]]
        early_concessions: int
        term_concessions: dict[str, list[Concession]]
        recent_concessions: list[Concession]
        non_negotiables: dict[str, str]
        client_facts: dict[str, Any]
        impasses: dict[str, Impasse]
        escalations: list[Escalation]
        conditions: dict[str, WalkAwayCondition]
        letter_of_intent_at: datetime | None
        transition_meeting_at: datetime | None
        signed_at: datetime | None
        last_activity_at: datetime
        missed_deadlines: list[MissedDeadline]

    def __deepcopy__(self, memo: dict[int, Any]) -> Deal:
        """The copy a command (or a read) works on, handed out by the aggregate cache.

        Two levels of containers are copied and the values in them shared: the values are frozen
        (model.py), and a fact only adds to, replaces in or removes from the deal's dicts and lists,
        and the lists and counts kept in them (events.py). So the copy can be changed without touching
        the kept deal, at a fraction of what copy.deepcopy costs walking every value."""
        copied = object.__new__(type(self))
        copied.__dict__.update({name: _copied(value) for name, value in self.__dict__.items()})
        return copied

    @classmethod
    def open(cls, *, title: str, client_name: str, owner: str, by: Attribution) -> Deal:
        return cls._create(cls.DealOpened, title=title, client_name=client_name, owner=owner, **attributed(by))

    # -- the way to the transition meeting --------------------------------------------

    def sign_letter_of_intent(self, *, by: Attribution) -> None:
        permit(self.stage, "sign_letter_of_intent")
        self._record(self.LetterOfIntentSigned, by)

    def hold_transition_meeting(self, *, participants: Iterable[Participant], by: Attribution) -> None:
        attendees = attendance([], participants)
        if not attendees:
            raise InvalidCommand("participants", "at least one participant attends the meeting")
        bounds.room_for("participants", len(attendance(self.participants, attendees)), bounds.MAX_PARTICIPANTS)
        permit(self.stage, "hold_transition_meeting")
        self._record(self.TransitionMeetingHeld, by, participants=[{"name": p.name, "role": str(p.role)} for p in attendees])

    # -- Sales promises ------------------------------------------------------------

    def record_sales_promise(self, *, statement: str, by: Attribution) -> str:
        permit(self.stage, "record_sales_promise")
        bounds.room_for("Sales promises", len(self.sales_promises) + 1, bounds.MAX_PROMISES)
        return self._record(self.SalesPromiseRecorded, by, promise_id=str(uuid4()), statement=statement).promise_id

    def decide_sales_promise(
        self, promise_id: str, *, accepted: bool, reason: str | None, policy: Policy, by: Attribution
    ) -> None:
        """Operations accepts or rejects a Sales promise, in front of the client."""
        self._undecided(self.sales_promises, promise_id, PROMISE)
        permit(self.stage, "decide_sales_promise")
        decision = self.SalesPromiseAccepted if accepted else self.SalesPromiseRejected
        decided = self._record(decision, by, promise_id=promise_id, reason=reason)
        self._judge_conditions(decided, policy=policy, by=by)

    def renegotiate_sales_promise(self, promise_id: str, *, statement: str, by: Attribution) -> None:
        """A rejected promise is put back on the table in new words, for Operations to decide again."""
        promise = self._on_table(self.sales_promises, promise_id, PROMISE)
        if promise.decision is not Decision.REJECTED:
            raise CommandRefused(f"{PROMISE} {promise_id} is {promise.decision}; only a rejected one is renegotiated", "not_rejected")
        permit(self.stage, "renegotiate_sales_promise")
        renegotiated = self._record(self.SalesPromiseRenegotiated, by, promise_id=promise_id, statement=statement)
        self._judge_conditions(renegotiated, by=by)

    def withdraw_sales_promise(self, promise_id: str, *, reason: str, by: Attribution) -> None:
        """Sales takes a promise back (it is no longer on the table, so no longer blocks signing)."""
        self._not_withdrawn(self.sales_promises, promise_id, PROMISE)
        permit(self.stage, "withdraw_sales_promise")
        withdrawn = self._record(self.SalesPromiseWithdrawn, by, promise_id=promise_id, reason=reason)
        self._judge_conditions(withdrawn, by=by)

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
        if due.year > today.year + bounds.MAX_YEARS_AHEAD:
            raise InvalidCommand("due", f"must be within {bounds.MAX_YEARS_AHEAD} years (by {today.year + bounds.MAX_YEARS_AHEAD}-12-31)")
        if priority < bounds.MIN_PRIORITY:
            raise InvalidCommand("priority", f"must be {bounds.MIN_PRIORITY} (highest) or more")
        if priority > bounds.MAX_PRIORITY:
            raise InvalidCommand("priority", f"must be {bounds.MAX_PRIORITY} (lowest) or less")
        permit(self.stage, "record_expectation")
        bounds.room_for("expectations", len(self.expectations) + 1, bounds.MAX_EXPECTATIONS)
        recorded = self._record(
            self.ExpectationRecorded,
            by,
            expectation_id=str(uuid4()),
            side=str(side),
            statement=statement,
            metric=metric,
            target=target,
            due=due,
            priority=priority,
        )
        return recorded.expectation_id

    def decide_expectation(
        self, expectation_id: str, *, agreed: bool, reason: str | None, policy: Policy, by: Attribution
    ) -> None:
        """The *other* side agrees to, or rejects, an expectation."""
        expectation = self._undecided(self.expectations, expectation_id, EXPECTATION)
        permit(self.stage, "decide_expectation")
        other_side = str(expectation.side.other)
        if agreed:
            decided = self._record(self.ExpectationAgreed, by, expectation_id=expectation_id, agreed_by=other_side, reason=reason)
        else:
            decided = self._record(
                self.ExpectationRejected, by, expectation_id=expectation_id, rejected_by=other_side, reason=reason
            )
        self._judge_conditions(decided, policy=policy, by=by)

    def withdraw_expectation(self, expectation_id: str, *, reason: str, by: Attribution) -> None:
        """An expectation is taken off the table, typically to be refined into a new one."""
        self._not_withdrawn(self.expectations, expectation_id, EXPECTATION)
        permit(self.stage, "withdraw_expectation")
        withdrawn = self._record(self.ExpectationWithdrawn, by, expectation_id=expectation_id, reason=reason)
        self._judge_conditions(withdrawn, by=by)

    # -- Right Terms: terms, concessions, non-negotiables, right-client facts -------------

    def propose_term(self, *, term: str, value: float, side: Side, policy: Policy, by: Attribution) -> None:
        """A side puts a value for a term on the table: the firm proposes, the client demands."""
        rule = policy.term(term)
        rule.check_range(value)
        if side is Side.PROVIDER and rule.beyond_limit(value):
            # Not the number: a limit is shown only to those who may see it (errors reach every caller).
            raise InvalidCommand("value", f"the firm does not propose {term} past its limit")
        permit(self.stage, "propose_term")
        proposed = self._record(self.TermProposed, by, term=term, value=value, by=str(side), policy_version=policy.version)
        self._judge_conditions(proposed, policy=policy, by=by)

    def agree_term(self, *, term: str, value: float, policy: Policy, by: Attribution) -> None:
        """Both sides settle a term. Worse than the public position is a concession by the firm; better, by the client."""
        rule = policy.term(term)
        rule.check_range(value)
        permit(self.stage, "agree_term")
        conceded = rule.concedes(value) or rule.wins(value)
        # One term is one give: agreeing it again replaces the concession it made before.
        earlier = list(self.term_concessions.get(term, []))
        if conceded:
            bounds.room_for("concessions", self.standing_concessions() - len(earlier) + 1, bounds.MAX_CONCESSIONS)
        facts: list[events.Event] = [self._record(self.TermAgreed, by, term=term, value=value, policy_version=policy.version)]
        for concession in earlier:
            reason = f"{term} agreed again at {value:g}"
            facts.append(self._record(self.ConcessionWithdrawn, by, concession_id=concession.id, term=term, reason=reason))
        if conceded:
            giver = Side.PROVIDER if rule.concedes(value) else Side.CLIENT
            facts.append(self._concede(giver, f"{term} agreed at {value:g} (public position {rule.public:g})", term, by))
        self._judge_conditions(*facts, policy=policy, by=by)

    def record_concession(self, *, side: Side, what: str, policy: Policy, by: Attribution) -> str:
        permit(self.stage, "record_concession")
        bounds.room_for("concessions", self.standing_concessions() + 1, bounds.MAX_CONCESSIONS)
        conceded = self._concede(side, what, None, by)
        self._judge_conditions(conceded, policy=policy, by=by)
        return conceded.concession_id

    def _concede(self, side: Side, what: str, term: str | None, by: Attribution) -> events.ConcessionRecorded:
        # The firm should not concede anything while it is still finding out whether this is a fit.
        early = self.stage == Stage.PROSPECT
        return self._record(
            self.ConcessionRecorded,
            by,
            concession_id=str(uuid4()),
            by=str(side),
            what=what,
            stage=str(self.stage),
            early=early,
            term=term,
        )

    def concession_counts(self) -> tuple[int, int]:
        """(given by the firm, received from the client), of the concessions that stand."""
        return (
            sum(counts["given"] for counts in self.concession_balance.values()),
            sum(counts["received"] for counts in self.concession_balance.values()),
        )

    def standing_concessions(self) -> int:
        return sum(self.concession_counts())

    def refuse_non_negotiable(self, *, name: str, reason: str | None, policy: Policy, by: Attribution) -> None:
        policy.non_negotiable(name)
        permit(self.stage, "refuse_non_negotiable")
        refused = self._record(self.NonNegotiableRefused, by, name=name, reason=reason)
        self._judge_conditions(refused, policy=policy, by=by)

    def accept_non_negotiable(self, *, name: str, policy: Policy, by: Attribution) -> None:
        policy.non_negotiable(name)
        permit(self.stage, "accept_non_negotiable")
        accepted = self._record(self.NonNegotiableAccepted, by, name=name)
        self._judge_conditions(accepted, policy=policy, by=by)

    def record_client_facts(
        self, *, annual_value: float | None, industry: str | None, policy: Policy, by: Attribution
    ) -> None:
        """Facts about the prospect, judged against the right-client criteria."""
        if annual_value is None and industry is None:
            raise InvalidCommand("annual_value", "give annual_value, industry, or both")
        permit(self.stage, "record_client_facts")
        recorded = self._record(
            self.ClientFactsRecorded, by, annual_value=annual_value, industry=industry, policy_version=policy.version
        )
        self._judge_conditions(recorded, policy=policy, by=by)

    # -- impasse and escalation ------------------------------------------------------------

    def declare_impasse(self, *, topic: str, by: Attribution) -> str:
        permit(self.stage, "declare_impasse")
        bounds.room_for("impasses", len(self.impasses) + 1, bounds.MAX_IMPASSES)
        return self._record(self.ImpasseDeclared, by, impasse_id=str(uuid4()), topic=topic).impasse_id

    def resolve_impasse(self, impasse_id: str, *, how: str, by: Attribution) -> None:
        self._open_impasse(impasse_id)
        permit(self.stage, "resolve_impasse")
        self._record(self.ImpasseResolved, by, impasse_id=impasse_id, how=how)

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
        escalated = self._record(
            self.EscalatedOverCounterpart,
            by,
            escalation_id=str(uuid4()),
            impasse_id=impasse_id,
            to=to,
            counterpart_consented=counterpart_consented,
            strategies_tried=list(strategies_tried),
        )
        return escalated.escalation_id

    def _open_impasse(self, impasse_id: str) -> Impasse:
        impasse = self._on_table(self.impasses, impasse_id, "impasse")
        if not impasse.is_open:
            raise CommandRefused(f"impasse {impasse_id} is already resolved: escalation needs an open impasse", "no_open_impasse")
        return impasse

    # -- walk-away conditions: judged by the service from the table, waived by an approver ----

    def waive_condition(self, condition_id: str, *, reason: str, role: str, by: Attribution) -> None:
        """Someone with the authority to waive lets a condition pass, with a reason. Who has that
        authority is the command table's to say (the roles that may send waive_condition); the
        waiver records the role it was made under."""
        condition = self._on_table(self.conditions, condition_id, "walk-away condition")
        if not condition.is_open:
            raise CommandRefused(f"walk-away condition {condition_id} is already {condition.status}", "already_closed")
        permit(self.stage, "waive_condition")
        self._record(
            self.WalkAwayConditionWaived,
            by,
            condition_id=condition_id,
            reason=reason,
            kind=str(condition.kind),
            subject=condition.subject,
            evidence=condition.evidence,
            role=role,
        )

    def _judge_conditions(self, *facts: events.Event, policy: Policy | None = None, by: Attribution) -> None:
        """After all of a command's facts: open the conditions the walk-away table finds broken, resolve those it finds kept."""
        service = Attribution(SERVICE, by.correlation_id)
        for verdict in walk_away_rules.judge(self, facts, policy):
            condition = self._open_condition(verdict.kind, verdict.subject)
            if verdict.evidence is not None and condition is None:
                assert policy is not None, "a condition is raised under the policy that judged it"
                # The command that would raise it is refused whole (its events are not saved).
                bounds.room_for("walk-away conditions", len(self.conditions) + 1, bounds.MAX_CONDITIONS)
                self._record(
                    self.WalkAwayConditionRaised,
                    service,
                    condition_id=str(uuid4()),
                    kind=str(verdict.kind),
                    subject=verdict.subject,
                    evidence=verdict.evidence,
                    policy_version=policy.version,
                )
            elif verdict.evidence is None and condition is not None:
                self._record(self.WalkAwayConditionResolved, service, condition_id=condition.id, resolution=verdict.resolution)

    def _open_condition(self, kind: ConditionKind, subject: str) -> WalkAwayCondition | None:
        return next((c for c in self.conditions.values() if c.is_open and c.kind is kind and c.subject == subject), None)

    # -- the end of the window ----------------------------------------------------------

    def sign_contract(self, *, by: Attribution) -> None:
        # Every blocker at once, the stage's among them, before the lifecycle is asked: one refusal names them all.
        signing_is_unblocked(self)
        permit(self.stage, "sign_contract")
        self._record(self.ContractSigned, by)

    def walk_away(self, *, reason: str, cited_conditions: Iterable[str] = (), by: Attribution) -> None:
        cited = list(dict.fromkeys(cited_conditions))
        if len(cited) > bounds.MAX_CITED_CONDITIONS:
            raise InvalidCommand("cited_conditions", f"cite at most {bounds.MAX_CITED_CONDITIONS} walk-away conditions")
        for condition_id in cited:
            if condition_id not in self.conditions:
                raise InvalidCommand("cited_conditions", f"{condition_id!r} is not a walk-away condition of this deal")
        permit(self.stage, "walk_away")
        self._record(self.WalkedAway, by, reason=reason, cited_conditions=cited)

    # -- after signing: did we deliver? -----------------------------------------------------

    def record_expectation_outcome(self, expectation_id: str, *, met: bool, evidence: str, by: Attribution) -> None:
        """An agreed expectation (either side's) is judged delivered or not: the value creation standard."""
        expectation = self._on_table(self.expectations, expectation_id, EXPECTATION)
        permit(self.stage, "record_expectation_outcome")
        if not expectation.is_agreed:
            raise CommandRefused(
                f"{EXPECTATION} {expectation_id} is {expectation.decision}; only an agreed one is judged", "not_agreed"
            )
        if expectation.outcome is not None:
            raise CommandRefused(f"{EXPECTATION} {expectation_id} is already marked {expectation.outcome}", "already_marked")
        outcome = self.ExpectationMet if met else self.ExpectationMissed
        self._record(outcome, by, expectation_id=expectation_id, side=str(expectation.side), evidence=evidence)

    # -- time ---------------------------------------------------------------------------

    def keep_time(self, *, now: datetime, policy: Policy, correlation_id: str) -> int:
        """Record what the passing of time has made true by `now`: each deadline missed, and after signing
        each agreed expectation due soon or overdue. Each is recorded once (the deal remembers it), so
        running this again, from any process, records nothing new. Returns how many facts it recorded."""
        service = Attribution(SERVICE, correlation_id)
        recorded = 0
        for missed in deadlines.passed(self, policy.deadlines, now):
            permit(self.stage, "record_missed_deadline")
            self._record(
                self.DeadlineMissed,
                service,
                deadline=str(missed.deadline),
                due_at=missed.due_at,
                expected=missed.expected,
                policy_version=policy.version,
                counted_from=missed.counted_from,
            )
            recorded += 1
        due_soon, overdue = deadlines.falling_due(self, policy.deadlines, now)
        for expectation in due_soon:
            permit(self.stage, "record_expectation_due_soon")
            self._record(self.ExpectationDueSoon, service, **_described(expectation), policy_version=policy.version)
        for expectation in overdue:
            permit(self.stage, "record_expectation_overdue")
            self._record(self.ExpectationOverdue, service, **_described(expectation))
        return recorded + len(due_soon) + len(overdue)

    # -- reading -----------------------------------------------------------------------

    @property
    def blockers(self) -> list[Blocker]:
        """What stops signing right now (empty once signed: there is nothing left to sign)."""
        if self.stage == Stage.CONTRACT_SIGNED:
            return []
        return signing_blockers(self)

    # -- recording ---------------------------------------------------------------------

    def _record(self, fact: type[Fact], by: Attribution, /, **fields: Any) -> Fact:
        """Record one fact, attributed: it changes the deal (its `apply`) and waits to be saved."""
        self.trigger_event(fact, **fields, **attributed(by))
        recorded = self.pending_events[-1]
        assert isinstance(recorded, fact)
        return recorded

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


def _described(expectation: Any) -> dict[str, Any]:
    """An expectation as a time fact names it: whoever reads the fact alone knows what is due."""
    return {
        "expectation_id": expectation.id,
        "side": str(expectation.side),
        "statement": expectation.statement,
        "metric": expectation.metric,
        "target": expectation.target,
        "due": expectation.due,
    }


def _copied(value: Any) -> Any:
    """A container and the containers in it, copied; anything else (frozen, or a scalar) as it is."""
    if isinstance(value, dict):
        return {key: item.copy() if isinstance(item, (dict, list)) else item for key, item in value.items()}
    if isinstance(value, list):
        return [item.copy() if isinstance(item, (dict, list)) else item for item in value]
    return value


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
