"""What an alert says: the deal, the client, what happened, by whom, and for a condition the
evidence and what to do next. Pure: the event and the deal's context in, text out."""

from __future__ import annotations

from dataclasses import dataclass
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
    return printable(title), "\n".join(printable(line) for line in lines)
