"""What the deal service and its subscribers agree on over NATS: subjects, streams and headers.

A public contract (other systems code against these names), shared by the deal service and
the notifier, so that neither restates the other's subjects and the notifier needs nothing
else of the deal service.

  deals.events.<deal_id>.<EventType>   every stored deal event, in order, once (stream DEALS_EVENTS)
  deals.commands.<command>             commands, request/reply (queue group deal-lifecycle)
  deals.alerts.dead                    alerts and events the notifier dead-lettered (stream DEALS_ALERTS)
  deals.relay.stalled / .resumed       core NATS: the relay stalled at an event it cannot publish / resumed
  deals.relay.wake                     core NATS, no body: a process stored events; the leading relay looks now
  deals.checkpoints.<store id>         the store's signed checkpoints (stream DEALS_CHECKPOINTS)
"""

from __future__ import annotations

EVENTS_STREAM = "DEALS_EVENTS"
EVENTS_SUBJECTS = "deals.events.>"
COMMANDS_PREFIX = "deals.commands"
ALERTS_STREAM = "DEALS_ALERTS"
ALERTS_SUBJECTS = "deals.alerts.>"
DEAD_LETTERS_SUBJECT = "deals.alerts.dead"
# Core NATS, no stream: the relay's alarm and its all-clear; the notifier alerts on both.
RELAY_STALLED_SUBJECT = "deals.relay.stalled"
RELAY_RESUMED_SUBJECT = "deals.relay.resumed"
# Core NATS, no body: a deal service process stored events. The leading relay, perhaps in another
# process (`serve --workers N`, `serve --no-relay` beside `dealflow relay`), looks at once instead of
# at its next poll. Only a hint: a lost one costs a poll's wait, never an event.
RELAY_WAKE_SUBJECT = "deals.relay.wake"
# JetStream drops a second message with the same id within this window (the relay's and the
# notifier's safety net for a message whose acknowledgement was lost).
DUPLICATE_WINDOW_SECONDS = 15 * 60

# CloudEvents (binary mode: attributes as ce-* headers) and our own headers beside them.
CE_SOURCE = "urn:dealflow:deal-lifecycle"
DEAL_VERSION = "Dealflow-Deal-Version"
CORRELATION_ID = "Dealflow-Correlation-Id"
SCHEMA = "Dealflow-Schema-Version"
NOTIFICATION_ID = "Dealflow-Notification-Id"
ACTOR = "Dealflow-Actor"


def event_subject(deal_id: str, event_type: str) -> str:
    return f"deals.events.{deal_id}.{event_type}"


def command_subject(command: str) -> str:
    return f"{COMMANDS_PREFIX}.{command}"
