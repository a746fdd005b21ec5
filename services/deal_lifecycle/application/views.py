"""How a deal and its events look from outside: the JSON other systems and auditors read.

The firm's private limits are shown only where `limits` is true: to callers whose role may see
them (access.SEES_PRIVATE_LIMITS), and to the store's own readers (the CLI, the relay). For
every other caller a limit's number is left out wherever it could show: a term's `limit` in the
policy, a condition's evidence, a resolution's words. The events keep it (see README).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import date, datetime
from typing import Any, TypedDict, TypeVar
from uuid import UUID

from dealflow.deal_lifecycle.application.read_model import DealSummary
from dealflow.deal_lifecycle.domain import deadlines
from dealflow.deal_lifecycle.domain.deal import Deal, event_type
from dealflow.deal_lifecycle.domain.health import assess
from dealflow.deal_lifecycle.domain.model import Concession, Side, Stage, WalkAwayCondition
from dealflow.deal_lifecycle.domain.policy import Policy
from dealflow.durations import format_duration
from dealflow.private_limits import event_concealed, limit_unsaid, without_limit

# Fields every stored event has that are not part of its business data.
_ENVELOPE = {"originator_id", "originator_version", "timestamp", "originator_topic", "actor", "correlation_id", "on_behalf_of", "deal_id"}


class BlockerView(TypedDict):
    code: str
    message: str
    subject_id: str | None


class DealSummaryView(TypedDict):
    id: str
    title: str
    client_name: str
    owner: str
    stage: str
    version: int
    opened_at: str
    updated_at: str
    overdue: bool  # a deadline missed and not made good, or after signing an expectation overdue and unmarked


class DeadlineView(TypedDict):
    deadline: str  # the policy key: transition_meeting_within, contract_within, stalled_after
    due_at: str
    status: str  # pending, met or missed
    counted_from: str
    met_at: str | None  # when what was expected happened (for a missed deadline: when it was made good)
    expected: str
    policy_version: str | None


class ConditionsView(TypedDict):
    open: list[dict[str, Any]]
    closed: list[dict[str, Any]]


class HealthView(TypedDict):
    deal_id: str
    stage: str
    concessions: dict[str, Any]
    early_concessions: list[dict[str, Any]]
    open_conditions: list[dict[str, Any]]
    impasses: list[dict[str, Any]]
    escalations: list[dict[str, Any]]
    warning_signs: list[str]
    verdict: str


class DealView(DealSummaryView):
    # When the deal entered its current stage: opened, the letter of intent, the (first) transition
    # meeting, signing; for a walk-away, the deal's last fact (nothing is recorded after it).
    stage_entered_at: str
    participants: list[dict[str, str]]
    promises: list[dict[str, Any]]
    expectations: list[dict[str, Any]]
    walk_away_reason: str | None
    walk_away_cited: list[str]
    terms: list[dict[str, Any]]
    concessions: list[dict[str, Any]]
    non_negotiables: dict[str, str]
    client_facts: dict[str, Any]
    impasses: list[dict[str, Any]]
    escalations: list[dict[str, Any]]
    conditions: ConditionsView
    blockers: list[BlockerView]
    deadlines: list[DeadlineView]
    # After signing, per side (client, provider): agreed expectations met, missed, overdue, pending.
    scorecard: dict[str, dict[str, int]]


class CommandDealView(DealView):
    """A command's answer: the deal, with each list cut to its last items once the deal has grown
    (blockers: the first ones). `counts` has every list's full length; `full_view` is where the whole deal is."""

    truncated: bool
    counts: dict[str, int]
    full_view: str


class EventView(TypedDict):
    deal_id: str
    version: int
    type: str
    timestamp: str
    actor: str
    on_behalf_of: str | None
    correlation_id: str
    data: dict[str, Any]


class StreamEventView(EventView, total=False):
    attempt: int  # a refused signing's number in its deal's log


EventViewT = TypeVar("EventViewT", EventView, StreamEventView)


class RefusedSigningView(TypedDict):
    """One entry of a deal's log of refused signings: numbered on its own (attempt 1, 2...), beside the deal's versions."""

    attempt: int
    deal_version: int
    timestamp: str
    actor: str
    on_behalf_of: str | None
    correlation_id: str
    blockers: list[dict[str, Any]]
    blockers_total: int


def _json(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        # Term values and limits are floats in events and the policy: 60.0 is shown as 60 in every
        # view (JSON and terminal alike). Only the view changes; stored events keep their bytes.
        return int(value)
    return value


def _condition_view(condition: WalkAwayCondition, *, limits: bool) -> dict[str, Any]:
    shown = _json(asdict(condition))
    if not limits:
        shown["evidence"] = without_limit(shown["evidence"])
        shown["closed_because"] = limit_unsaid(shown["closed_because"])
    return shown


def deal_view(deal: Deal, *, concessions: Sequence[Concession], limits: bool, policy: Policy) -> DealView:
    """The whole deal; its concessions, which the deal keeps only as counts, from its history (standing_concessions).
    Its deadlines as `policy` sets them: those recorded missed, those met, and those still running."""
    return _deal_view(deal, None, concessions=concessions, limits=limits, policy=policy)


def standing_concessions(history: Iterable[Any]) -> list[Concession]:
    """The concessions that stand after these events (a deal's history, up to some version), oldest first."""
    standing: dict[str, Concession] = {}
    for fact in history:
        if isinstance(fact, Deal.ConcessionRecorded):
            standing[fact.concession_id] = Concession(fact.concession_id, Side(fact.by), fact.what, fact.stage, fact.early, fact.term)
        elif isinstance(fact, Deal.ConcessionWithdrawn):
            standing.pop(fact.concession_id, None)
    return list(standing.values())


# A command's answer shows this many items of each list: enough to see what the command did
# (the newest item is last), while the answer stays small however large the deal grows.
COMMAND_VIEW_ITEMS = 10
_Shown = TypeVar("_Shown")


def command_view(deal: Deal, items: int = COMMAND_VIEW_ITEMS, *, limits: bool, policy: Policy) -> CommandDealView:
    """The deal as a command's response shows it; `GET /deals/{id}` shows all of it."""
    open_conditions = sum(1 for c in deal.conditions.values() if c.is_open)
    blockers = deal.blockers
    counts = {
        "participants": len(deal.participants),
        "promises": len(deal.sales_promises),
        "expectations": len(deal.expectations),
        "walk_away_cited": len(getattr(deal, "walk_away_cited", [])),
        "terms": len(deal.terms),
        "concessions": deal.standing_concessions(),
        "impasses": len(deal.impasses),
        "escalations": len(deal.escalations),
        "conditions_open": open_conditions,
        "conditions_closed": len(deal.conditions) - open_conditions,
        "blockers": len(blockers),
    }
    return {
        **_deal_view(deal, items, blockers, concessions=deal.recent_concessions, limits=limits, policy=policy),
        "truncated": any(count > items for count in counts.values()),
        "counts": counts,
        "full_view": f"/deals/{deal.id}",
    }


def _deal_view(
    deal: Deal,
    items: int | None,
    blockers: list[Any] | None = None,
    *,
    concessions: Sequence[Concession],
    limits: bool,
    policy: Policy,
) -> DealView:
    def last(values: Iterable[_Shown]) -> list[_Shown]:
        shown = list(values)
        return shown if items is None else shown[-items:]

    def first(values: Sequence[_Shown]) -> list[_Shown]:
        return list(values) if items is None else list(values[:items])

    return {
        "id": str(deal.id),
        "title": deal.title,
        "client_name": deal.client_name,
        "owner": deal.owner,
        "stage": str(deal.stage),
        "version": deal.version,
        "opened_at": deal.created_on.isoformat(),
        "updated_at": deal.modified_on.isoformat(),
        "overdue": deadlines.is_overdue(deal),
        "stage_entered_at": stage_entered_at(deal).isoformat(),
        "participants": [{"name": p.name, "role": str(p.role)} for p in last(deal.participants)],
        "promises": [_json(asdict(p)) for p in last(deal.sales_promises.values())],
        "expectations": [_expectation_view(e) for e in last(deal.expectations.values())],
        "walk_away_reason": deal.walk_away_reason,
        # Deals snapshotted before v2 of WalkedAway have no citations.
        "walk_away_cited": last(getattr(deal, "walk_away_cited", [])),
        "terms": [_json(asdict(t)) for t in last(deal.terms.values())],
        "concessions": [_json(asdict(c)) for c in last(concessions)],
        "non_negotiables": dict(deal.non_negotiables),
        "client_facts": dict(deal.client_facts),
        "impasses": [{**_json(asdict(i)), "open": i.is_open} for i in last(deal.impasses.values())],
        "escalations": [_json(asdict(e)) for e in last(deal.escalations)],
        "conditions": {
            "open": [_condition_view(c, limits=limits) for c in last(c for c in deal.conditions.values() if c.is_open)],
            "closed": [_condition_view(c, limits=limits) for c in last(c for c in deal.conditions.values() if not c.is_open)],
        },
        "blockers": [
            {"code": b.code, "message": b.message, "subject_id": b.subject_id}
            for b in first(deal.blockers if blockers is None else blockers)
        ],
        "deadlines": [_json(asdict(s)) for s in deadlines.statuses(deal, policy.deadlines, policy.version)],
        "scorecard": {side: asdict(card) for side, card in deadlines.scorecard(deal.expectations).items()},
    }


def stage_entered_at(deal: Deal) -> datetime:
    """The moment the deal entered its current stage (the anchors the deadlines count from)."""
    entered = {
        Stage.PROSPECT: deal.created_on,
        Stage.LETTER_OF_INTENT: deal.letter_of_intent_at,
        Stage.TRANSITION_MEETING: deal.transition_meeting_at,
        Stage.CONTRACT_SIGNED: deal.signed_at,
    }.get(Stage(deal.stage))
    # Walked away: the deal keeps no moment of its own for it, and records nothing after it.
    return entered if entered is not None else deal.modified_on


def _expectation_view(expectation: Any) -> dict[str, Any]:
    # An expectation is agreed (POST .../decision {"agreed": true}), a promise accepted: each reads back in its own words.
    shown = _json(asdict(expectation))
    if shown["decision"] == "accepted":
        shown["decision"] = "agreed"
    return shown


def health_view(deal: Deal, *, concessions: Sequence[Concession], limits: bool) -> HealthView:
    """Health, judged on the deal's state; the early concessions listed from its history (standing_concessions)."""
    health = assess(deal)
    return {
        "deal_id": str(deal.id),
        "stage": str(deal.stage),
        "concessions": {"given": health.given, "received": health.received, "by_stage": health.by_stage},
        "early_concessions": [_json(asdict(c)) for c in concessions if c.early],
        "open_conditions": [_condition_view(c, limits=limits) for c in health.open_conditions],
        "impasses": [{**_json(asdict(i)), "open": i.is_open} for i in health.impasses],
        "escalations": [_json(asdict(e)) for e in health.escalations],
        "warning_signs": health.warning_signs,
        "verdict": health.verdict,
    }


def policy_view(policy: Policy, *, limits: bool) -> dict[str, Any]:
    """The policy: public positions for everyone, private limits only where `limits`."""
    return {
        "version": policy.version,
        "label": policy.label,
        "terms": {name: _json(asdict(term) if limits else without_limit(asdict(term))) for name, term in policy.terms.items()},
        "non_negotiables": policy.non_negotiables,
        "nice_to_haves": policy.nice_to_haves,
        "right_client": {
            "min_annual_value": policy.right_client.min_annual_value,
            "excluded_industries": sorted(policy.right_client.excluded_industries),
        },
        "concessions": asdict(policy.concessions),
        # Each duration written as in the policy file (`14d`); null: no such deadline.
        "deadlines": {name: None if value is None else format_duration(value) for name, value in asdict(policy.deadlines).items()},
    }


def limits_concealed(view: EventViewT) -> EventViewT:
    """The event as shown to a caller who may not see private limits (private_limits.event_concealed)."""
    return event_concealed(view)


def event_view(domain_event: Any, *, limits: bool) -> EventView:
    view = _event_view(domain_event)
    return view if limits else limits_concealed(view)


def _event_view(domain_event: Any) -> EventView:
    state = vars(domain_event)
    data = {k: _json(v) for k, v in state.items() if k not in _ENVELOPE}
    return {
        # A deal's own events come from the deal; its refused signing attempts name it.
        "deal_id": str(state.get("deal_id", domain_event.originator_id)),
        "version": domain_event.originator_version,
        "type": event_type(domain_event),
        "timestamp": domain_event.timestamp.isoformat(),
        # A log of refused signings is opened by the service itself (its first event names no one).
        "actor": state.get("actor", "dealflow"),
        # Who a system said it acted for; None when it said nothing (or the event predates X-On-Behalf-Of).
        "on_behalf_of": state.get("on_behalf_of"),
        "correlation_id": state.get("correlation_id", ""),
        "data": data,
    }


def summary_view(summary: DealSummary) -> DealSummaryView:
    return {
        "id": summary.deal_id,
        "title": summary.title,
        "client_name": summary.client_name,
        "owner": summary.owner,
        "stage": summary.stage,
        "version": summary.version,
        "opened_at": summary.opened_at.isoformat(),
        "updated_at": summary.updated_at.isoformat(),
        "overdue": bool(summary.overdue),
    }


def attempt_number(domain_event: Any) -> int:
    """A refused signing's number in its deal's log: the log opens at version 1, so its first refusal is attempt 1."""
    return int(domain_event.originator_version) - 1


def refused_signing_view(domain_event: Any) -> RefusedSigningView:
    state = vars(domain_event)
    return {
        "attempt": attempt_number(domain_event),
        "deal_version": state["deal_version"],
        "timestamp": domain_event.timestamp.isoformat(),
        "actor": state["actor"],
        "on_behalf_of": state.get("on_behalf_of"),
        "correlation_id": state["correlation_id"],
        "blockers": _json(state["blockers"]),
        "blockers_total": state["blockers_total"],
    }


def stream_view(domain_event: Any, *, limits: bool) -> StreamEventView:
    """An event as published (NATS body, SSE data): a refused signing's `version` is the deal version it
    was judged at, so it reads in order with the deal's own events; its place in the log is `attempt`."""
    view = StreamEventView(**event_view(domain_event, limits=limits))
    if view["type"] == "SigningRefused":
        view["version"] = view["data"]["deal_version"]
        view["attempt"] = attempt_number(domain_event)
    return view
