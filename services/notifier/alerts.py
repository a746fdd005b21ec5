"""What an alert says: the deal, the client, what happened, by whom, and for a condition the
evidence and what to do next. Pure: the event and the deal's context in, text out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dealflow.private_limits import event_concealed
from dealflow.terminal import printable

from .messages import AlertMessage
from .rules import Target

# What the firm can do about each walk-away condition (DOMAIN.md, "Walk-away conditions").
NEXT_STEP = {
    "term_beyond_limit": "revise the term within the private limit, or have an approver waive the condition with a reason",
    "non_negotiable_refused": "get the client to accept the non-negotiable, or have an approver waive the condition",
    "provider_expectation_rejected": "refine the expectation and put it on the table again (withdraw the rejected one)",
    "promise_rejected": "renegotiate the promise with Operations, or withdraw it",
    "concession_imbalance": "win something back before giving more: let them win some, but you must win something",
    "client_disqualified": "check the right-client facts; if they stand, this is not a right client",
}

# The deadlines of the policy's [deadlines] section (DeadlineMissed.deadline): what each asks for
# (with its length), what it is counted from, and what the firm can do once it has passed. Timing
# is everything: the firm's relative power lasts only until the contract is signed.
DEADLINE = {
    "transition_meeting_within": "the transition meeting held within {length} of the letter of intent",
    "contract_within": "the contract signed within {length} of the first transition meeting",
    "stalled_after": "a new fact recorded on the deal at least every {length}",
}
COUNTED_FROM = {
    "transition_meeting_within": "the letter of intent",
    "contract_within": "the first transition meeting",
    "stalled_after": "the last fact recorded on the deal",
}
DEADLINE_NEXT_STEP = {
    "transition_meeting_within": "hold the transition meeting, or walk away while the firm still can",
    "contract_within": "clear the blockers and sign, or walk away",
    "stalled_after": "record what has happened, or walk away: a deal that drifts loses the firm's relative power",
}

# Expectations go both ways (DOMAIN.md): whose expectation it is says who delivers it.
SIDE = {
    "client": "a client expectation: what the client expects of the firm; the firm delivers it",
    "provider": "a provider expectation: what the firm needs from the client to meet the client's expectations; "
    "the client delivers it",
}

HEADLINE = {
    "LetterOfIntentSigned": "Letter of intent signed",
    "TransitionMeetingHeld": "Transition meeting held",
    "ContractSigned": "Contract signed",
    "WalkedAway": "The firm walked away",
    "WalkAwayConditionRaised": "Walk-away condition raised",
    "WalkAwayConditionResolved": "Walk-away condition resolved",
    "WalkAwayConditionWaived": "Walk-away condition waived",
    "SigningRefused": "Signing refused",
    "EscalatedOverCounterpart": "Escalated over the counterpart's head",
    "DeadlineMissed": "Deadline missed",
    "ExpectationDueSoon": "Expectation due soon",
    "ExpectationOverdue": "Expectation overdue",
    "ExpectationMet": "Expectation met",
    "ExpectationMissed": "Expectation missed",
    "RelayStalled": "Relay stalled: deal events no longer reach NATS",
    "RelayResumed": "Relay resumed: deal events reach NATS again",
}

# README, "An event that cannot be published": what fixes each cause.
RELAY_FIX = (
    "run `dealflow relay --status`. Over max_payload: raise the NATS server's max_payload (on every server of a "
    "cluster, then restart or reload it; `dealflow up --nats-max-payload 8388608` for the embedded server). Refused "
    "by the stream's limits (max_msg_size): raise them. The relay retries by itself and resumes once the cause is "
    "fixed, skipping nothing (README, On NATS JetStream)."
)


@dataclass(frozen=True)
class DealContext:
    deal_id: str
    title: str
    client_name: str
    owner: str | None


@dataclass(frozen=True)
class Alert:
    id: str
    event_id: str
    deal_id: str
    event_type: str
    recipient: str
    channel: str
    address: str | None
    urgency: str
    title: str
    text: str
    event: dict[str, Any]

    def message(self) -> AlertMessage:
        return AlertMessage(
            alert_id=self.id,
            event_id=self.event_id,
            deal_id=self.deal_id,
            event_type=self.event_type,
            recipient=self.recipient,
            urgency=self.urgency,  # type: ignore[arg-type]
            title=self.title,
            text=self.text,
            event=self.event,
        )

    def payload(self) -> dict[str, Any]:
        """The JSON a webhook receives."""
        return self.message().model_dump(mode="json")


def compose(event: dict[str, Any], event_id: str, deal: DealContext, target: Target) -> Alert:
    # A private limit's number reaches only recipients who may see it, in the text and in the event it carries.
    event = event if target.sees_private_limits else event_concealed(event)
    title, text = describe(event, deal)
    return _alert(f"{event_id}/{target.recipient}/{target.channel}", event_id, deal.deal_id, event["type"], title, text, event, target)


def compose_relay(kind: str, stall: dict[str, Any], deal: DealContext, target: Target) -> Alert:
    """An alert for the relay's `RelayStalled` or `RelayResumed` message. Its id names the stall (the
    event it is stuck at and since when), so the relay's once-a-minute repeats alert once."""
    title, text = describe_relay(kind, stall, deal)
    alert_id = f"{kind}:{stall['notification_id']}@{stall['since']}/{target.recipient}/{target.channel}"
    return _alert(alert_id, stall["event_id"], stall["deal_id"], kind, title, text, stall, target)


def _alert(
    alert_id: str, event_id: str, deal_id: str, event_type: str, title: str, text: str, event: dict[str, Any], target: Target
) -> Alert:
    return Alert(
        id=alert_id,
        event_id=event_id,
        deal_id=deal_id,
        event_type=event_type,
        recipient=target.recipient,
        channel=target.channel,
        address=target.address,
        urgency=target.urgency,
        title=f"URGENT: {title}" if target.urgency == "urgent" else title,
        text=text,
        event=event,
    )


def describe_relay(kind: str, stall: dict[str, Any], deal: DealContext) -> tuple[str, str]:
    at = f"{stall['event_type']} {stall['event_id']} (notification {stall['notification_id']})"
    title = f"{HEADLINE[kind]} at notification {stall['notification_id']}"
    deal_line = f"Deal: {deal.title} for {deal.client_name} (owner {deal.owner or 'unknown'}, id {deal.deal_id})"
    if kind == "RelayStalled":
        lines = [
            f"What happened: the relay cannot publish {at}; nothing stored after it is published until it is",
            deal_line,
            f"Size: {stall['size_bytes']} bytes on the wire, headers included",
            f"Why: {stall['reason']}",
            f"Since: {stall['since']} (last published notification {stall['position']})",
            f"What to do next: {RELAY_FIX}",
        ]
    else:
        lines = [
            f"What happened: the relay published {at}, where it was stalled since {stall['since']}; "
            "the events behind it follow in order",
            deal_line,
            f"Last published notification: {stall['position']}",
            "What to do next: nothing; `dealflow relay --status` shows the lag left.",
        ]
    return printable(title), "\n".join(printable(line) for line in lines)


def describe(event: dict[str, Any], deal: DealContext) -> tuple[str, str]:
    """The title and the text people read. Each line is made printable on its own: the lines are
    ours, but callers wrote the values in them, and a newline or escape in a value must not forge
    a line of the alert nor drive the terminal, mail reader or chat that shows it."""
    kind = event["type"]
    data = event.get("data", {})
    title = f"{HEADLINE.get(kind, kind)}: {deal.title} ({deal.client_name})"
    lines = [
        f"Deal: {deal.title} for {deal.client_name} (owner {deal.owner or 'unknown'}, id {deal.deal_id})",
        f"What happened: {HEADLINE.get(kind, kind)} at {event['timestamp']}",
        f"By: {event['actor']}" + (f" for {event['on_behalf_of']}" if event.get("on_behalf_of") else ""),
    ]
    if kind == "WalkAwayConditionRaised":
        lines += [
            f"Condition: {data.get('kind')} on {data.get('subject')}",
            "Evidence: " + ", ".join(f"{k}={v}" for k, v in (data.get("evidence") or {}).items()),
            f"Judged by policy {data.get('policy_version')}",
            f"What to do next: {NEXT_STEP.get(str(data.get('kind')), 'resolve or waive the condition, or walk away')}. "
            "Signing is blocked while it is open.",
        ]
    elif kind == "WalkAwayConditionWaived":
        # v1 waivers named only the condition's id; v2 names the condition itself.
        if data.get("kind"):
            lines += [
                f"Condition: {data.get('kind')} on {data.get('subject')} (id {data.get('condition_id')})",
                "Evidence: " + ", ".join(f"{k}={v}" for k, v in (data.get("evidence") or {}).items()),
            ]
        else:
            lines.append(f"Condition: {data.get('condition_id')}")
        lines += [
            # v3 names the role the waiver was made under, as the waiver's verified token carried it.
            f"Waived by: {event['actor']}" + (f" (as {data['role']})" if data.get("role") else ""),
            f"Reason: {data.get('reason')}",
            "What to do next: nothing; the condition no longer blocks signing. The waiver is on the deal's record.",
        ]
    elif kind == "WalkAwayConditionResolved":
        lines.append(f"Because: {data.get('resolution')}")
    elif kind == "SigningRefused":
        lines.append("Blockers: " + "; ".join(b.get("message", b.get("code", "")) for b in data.get("blockers", [])))
        # A signed or walked-away deal is refused on its stage alone (domain/blockers.py): nothing can be cleared.
        if [b.get("code") for b in data.get("blockers", [])] == ["stage"]:
            lines.append("What to do next: nothing to clear; the deal is closed, so no signing can succeed.")
        else:
            lines.append("What to do next: clear every blocker above, then sign again.")
    elif kind == "WalkedAway":
        lines.append(f"Reason: {data.get('reason')}")
    elif kind == "EscalatedOverCounterpart":
        consent = "with" if data.get("counterpart_consented") else "WITHOUT"
        lines.append(f"Escalated to {data.get('to')}, {consent} the counterpart's consent")
        lines.append("Strategies tried first: " + ", ".join(data.get("strategies_tried", [])))
    elif kind == "DeadlineMissed":
        lines += _deadline_missed(event, data)
    elif kind in ("ExpectationDueSoon", "ExpectationOverdue", "ExpectationMet", "ExpectationMissed"):
        lines += _expectation(kind, event, data, deal)
    return printable(title), "\n".join(printable(line) for line in lines)


def _deadline_missed(event: dict[str, Any], data: dict[str, Any]) -> list[str]:
    """Which deadline, counted from what, due when, how late, what was expected and what to do now.
    The event is recorded when the service sees the deadline pass: at once, or when it catches up
    at start-up after being down, so how late it is counts to the moment it was recorded."""
    deadline = str(data.get("deadline"))
    due_at, counted_from = str(data.get("due_at")), str(data.get("counted_from"))
    length = _span(counted_from, due_at)
    asks = DEADLINE[deadline].format(length=duration_words(length)) if deadline in DEADLINE and length else None
    return [
        f"Deadline: {deadline}" + (f" ({asks})" if asks else ""),
        f"Counted from: {COUNTED_FROM[deadline] + ', at ' if deadline in COUNTED_FROM else ''}{counted_from}",
        f"Due: {due_at}",
        f"How late: {how_late(due_at, str(event['timestamp']))} when recorded",
        f"Expected by then: {data.get('expected')}",
        f"Judged by policy {data.get('policy_version')}",
        f"What to do next: {DEADLINE_NEXT_STEP.get(deadline, 'do what was expected, or walk away while the firm still can')}.",
    ]


def _expectation(kind: str, event: dict[str, Any], data: dict[str, Any], deal: DealContext) -> list[str]:
    """After signing, an agreed expectation of the value creation standard: due soon, overdue, met or missed."""
    side = str(data.get("side"))
    expectation_id = data.get("expectation_id")
    outcome = f'POST /deals/{deal.deal_id}/expectations/{expectation_id}/outcome with {{"met": true or false, "evidence": ...}}'
    if kind in ("ExpectationMet", "ExpectationMissed"):
        lines = [
            f"Expectation: {expectation_id}",
            f"Side: {side}" + (f" ({SIDE[side]})" if side in SIDE else ""),
            f"Evidence: {data.get('evidence')}",
        ]
        if kind == "ExpectationMet":
            return [*lines, "What to do next: nothing; it is on the deal's record as met."]
        if side == "provider":
            step = "talk to the client about it: the firm needs it from them to meet their expectations"
        else:
            step = "talk to the client about it: what the firm did not deliver, and how it will make it good"
        return [*lines, f"What to do next: {step}."]
    due = str(data.get("due"))
    due_at = _end_of_day(due)
    lines = [
        f"Expectation: {data.get('statement')} (id {expectation_id})",
        f"Side: {side}" + (f" ({SIDE[side]})" if side in SIDE else ""),
        f"Measured by: {data.get('metric')}, target {data.get('target')}",
    ]
    if kind == "ExpectationDueSoon":
        left = _span(str(event["timestamp"]), due_at) if due_at else None
        lines += [
            f"Due: by the end of {due} (UTC)" + (f"; {duration_words(left)} left when reminded" if left and left > timedelta(0) else ""),
            f"Reminded under policy {data.get('policy_version')}",
        ]
        deliver = "deliver it" if side != "provider" else "make sure the client delivers it"
        return [*lines, f"What to do next: {deliver}, and mark it met or missed ({outcome})."]
    return [
        *lines,
        f"Due: by the end of {due} (UTC)",
        f"How late: {how_late(due_at, str(event['timestamp'])) if due_at else 'unknown'}; nobody marked it met or missed by then",
        f"What to do next: mark it met or missed with the evidence ({outcome}), "
        "and talk to the client about it if it was missed.",
    ]


# -- time, in words --------------------------------------------------------------------------

_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def duration_words(span: timedelta) -> str:
    """A length of time as people say it: its largest unit and the next one down, when that is not
    zero, the rest left out ("3 days 4 hours", "2 seconds", "1 day")."""
    seconds = abs(span) // timedelta(seconds=1)
    if seconds == 0:
        return "less than a second"
    counts = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        counts.append((count, unit))
    first = next(i for i, (count, _) in enumerate(counts) if count)
    shown = [f"{count} {unit}{'' if count == 1 else 's'}" for count, unit in counts[first : first + 2] if count]
    return " ".join(shown)


def how_late(due_at: str, at: str) -> str:
    """How late the moment `at` is after `due_at` (both ISO-8601), in words: "3 days 4 hours late"."""
    late = _span(due_at, at)
    if late is None:
        return "unknown"
    if late < timedelta(0):
        return f"not late: {duration_words(late)} before it was due"
    return f"{duration_words(late)} late"


def _span(start: str, end: str) -> timedelta | None:
    """`end` minus `start` (ISO-8601 datetimes; one without a time zone is read as UTC), or None if either is not one."""
    try:
        return _moment(end) - _moment(start)
    except (TypeError, ValueError, OverflowError):
        return None


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _end_of_day(day: str) -> str | None:
    """The moment a date ends in UTC: an expectation due on a date is due by the end of it."""
    try:
        return datetime.combine(date.fromisoformat(day) + timedelta(days=1), datetime.min.time(), tzinfo=UTC).isoformat()
    except (TypeError, ValueError):
        return None
