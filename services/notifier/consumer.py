"""The notifier: a durable JetStream consumer that turns deal events into alerts.

An event is acknowledged only once each of its alerts is delivered or dead-lettered.
Several notifier processes share the durable consumer, so each event goes to one of
them at a time; an alert already delivered (the store knows it by event, recipient and
channel) is never sent again, even when a crash makes JetStream redeliver the event.

It also alerts on the relay's core-NATS `deals.relay.stalled`/`.resumed` messages (queue group
`notifier`, so one notifier takes each), through the same rules, channels and store. No stream
keeps them, but the relay repeats a stall every minute: a notifier that missed one gets the next,
and the alert id (the stall's notification id and since) makes the repeats alert once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections import OrderedDict
from functools import partial
from typing import Any

import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from dealflow.nats_contract import (
    ALERTS_STREAM,
    ALERTS_SUBJECTS,
    DEAD_LETTERS_SUBJECT,
    DUPLICATE_WINDOW_SECONDS,
    EVENTS_STREAM,
    EVENTS_SUBJECTS,
    RELAY_RESUMED_SUBJECT,
    RELAY_STALLED_SUBJECT,
    event_subject,
)
from dealflow.nats_contract import SCHEMA as SCHEMA_HEADER

from .alerts import Alert, DealContext, compose, compose_relay
from .channels import Channel, DeliveryFailed
from .messages import DeadLetterMessage
from .rules import RELAY_EVENTS, Rules
from .schemas import EventSchemas, SchemaViolation
from .store import DEAD, DELIVERED, AlertStore

log = structlog.get_logger("dealflow.notifier")

DURABLE = "notifier"
RELAY_QUEUE = "notifier"
RELAY_SUBJECTS = dict(zip((RELAY_STALLED_SUBJECT, RELAY_RESUMED_SUBJECT), RELAY_EVENTS, strict=True))


class InvalidMessage(Exception):
    pass


class Notifier:
    def __init__(
        self, nc: NATS, rules: Rules, store: AlertStore, channels: dict[str, Channel], schemas: EventSchemas | None = None
    ) -> None:
        self.nc = nc
        self.schemas = schemas or EventSchemas()
        self.js = nc.jetstream()
        self.rules = rules
        self.store = store
        self.channels = channels
        self._deals: OrderedDict[str, DealContext] = OrderedDict()

    async def run(self, stop: asyncio.Event, *, batch: int = 10) -> None:
        # First: a relay stalled before the events stream exists must alert all the same.
        relay = [await self.nc.subscribe(subject, queue=RELAY_QUEUE, cb=self.handle_relay) for subject in RELAY_SUBJECTS]
        log.info("notifier watching the relay", subjects=list(RELAY_SUBJECTS), queue=RELAY_QUEUE)
        try:
            await self._consume(stop, batch)
        finally:
            for subscription in relay:
                with contextlib.suppress(Exception):
                    await subscription.unsubscribe()

    async def _consume(self, stop: asyncio.Event, batch: int) -> None:
        await self._wait_for_streams(stop)
        if stop.is_set():  # stopped while the streams were not there yet: nothing to consume from
            return
        subscription = await self.js.pull_subscribe(
            EVENTS_SUBJECTS,
            durable=DURABLE,
            stream=EVENTS_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30,
                max_deliver=-1,
                deliver_policy=DeliverPolicy.ALL,
            ),
        )
        log.info("notifier consuming", stream=EVENTS_STREAM, durable=DURABLE)
        while not stop.is_set():
            try:
                messages = await subscription.fetch(batch, timeout=1)
            except TimeoutError:
                continue
            except Exception as e:  # noqa: BLE001 - NATS hiccups must not end the notifier
                log.warning("cannot fetch events", error=str(e))
                await asyncio.sleep(0.5)
                continue
            await self.handle_batch(messages)

    async def handle_batch(self, messages: list[Msg]) -> None:
        """A fetched batch: each deal's events one after another, in stream order (a deal's alerts
        arrive in the order its facts happened), different deals' at the same time (a slow
        webhook for one deal holds up only that deal's alerts)."""
        per_deal: dict[str, list[Msg]] = {}
        for msg in messages:
            # deals.events.<deal_id>.<type>: the subject names the deal without parsing the body
            per_deal.setdefault(msg.subject.rsplit(".", 1)[0], []).append(msg)
        # If one fails, the others are cancelled and the failure ends the notifier as before: what is
        # not acknowledged, JetStream redelivers, and what was delivered is not sent again.
        async with asyncio.TaskGroup() as deals:
            for deal_messages in per_deal.values():
                deals.create_task(self._one_after_another(deal_messages))

    async def _one_after_another(self, messages: list[Msg]) -> None:
        for msg in messages:
            await self.handle(msg)

    async def handle(self, msg: Msg) -> None:
        try:
            event, event_id = self._validated(msg)
        except InvalidMessage as invalid:
            await self._dead_letter_message(msg, str(invalid))
            await msg.ack()
            return
        deal = await self._deal(event)
        alerts = [compose(event, event_id, deal, target) for target in self.rules.targets(event["type"], owner=deal.owner)]
        await asyncio.gather(*(self.deliver(alert, msg) for alert in alerts))
        await msg.ack()

    async def handle_relay(self, msg: Msg) -> None:
        """One relay stall or resume: its alerts, each delivered or dead-lettered. nats-py runs a
        subscription's handler one message at a time, so a repeat waits for the first to finish."""
        kind = RELAY_SUBJECTS[msg.subject]
        try:
            try:
                stall = json.loads(msg.data)
                self.schemas.check_relay_stall(stall)
            except (ValueError, SchemaViolation) as e:
                message_id = f"{msg.subject}:{hashlib.sha256(msg.data).hexdigest()}"
                await self._dead_letter_message(msg, f"not a RelayStalled message: {e}", message_id)
                return
            try:
                deal = await self._deal({"deal_id": stall["deal_id"], "type": kind})
            except Exception:  # noqa: BLE001 - the deal's name is a courtesy; the alert is not
                deal = DealContext(stall["deal_id"], f"deal {stall['deal_id']}", "unknown client", None)
            alerts = [compose_relay(kind, stall, deal, target) for target in self.rules.targets(kind, owner=deal.owner)]
            await asyncio.gather(*(self.deliver(alert) for alert in alerts))
        except Exception:  # noqa: BLE001 - the next repeat tries again; the notifier goes on
            log.exception("cannot alert on the relay", subject=msg.subject)

    async def deliver(self, alert: Alert, msg: Msg | None = None) -> None:
        if await asyncio.to_thread(self.store.is_final, alert.id):
            return  # delivered (or dead-lettered) before a crash or redelivery: never twice
        channel = self.channels[alert.channel]
        delivery = self.rules.delivery
        attempt = 0

        async def keep_event_alive(_: RetryCallState) -> None:
            if msg is not None:  # a JetStream event, not a relay message
                await msg.in_progress()  # tells JetStream not to redeliver while we back off

        try:
            async for trial in AsyncRetrying(
                stop=stop_after_attempt(delivery.attempts),
                wait=wait_random_exponential(multiplier=delivery.backoff_seconds, max=delivery.max_backoff_seconds),
                retry=retry_if_exception_type(DeliveryFailed),
                before_sleep=keep_event_alive,
                reraise=True,
            ):
                with trial:
                    attempt = trial.retry_state.attempt_number
                    await self._send(channel, alert, attempt)
        except DeliveryFailed as failed:
            await asyncio.to_thread(self.store.record_outcome, alert, DEAD, attempt, str(failed))
            await self._dead_letter_alert(alert, attempt, str(failed))
            log.warning("alert dead-lettered", alert_id=alert.id, attempts=attempt, error=str(failed))
            return
        await asyncio.to_thread(partial(self.store.record_outcome, alert, DELIVERED, attempt, None, delivered_at_attempt=attempt))

    async def _send(self, channel: Channel, alert: Alert, attempt: int) -> None:
        try:
            await channel.send(alert)
        except DeliveryFailed as e:
            await asyncio.to_thread(self.store.record_attempt, alert.id, attempt, "failed", str(e))
            raise
        except Exception as e:  # noqa: BLE001 - a channel's own bug is a failed delivery, not a crash
            await asyncio.to_thread(self.store.record_attempt, alert.id, attempt, "failed", repr(e))
            raise DeliveryFailed(repr(e)) from e
        # The try that delivered it is recorded with the outcome, in one transaction (deliver).

    def _validated(self, msg: Msg) -> tuple[dict[str, Any], str]:
        """The event, checked against its published schema (the version its header names)."""
        headers = msg.headers or {}
        try:
            event = json.loads(msg.data)
        except ValueError:
            raise InvalidMessage("the body is not JSON") from None
        try:
            self.schemas.check(event, int(headers.get(SCHEMA_HEADER, "1")))
        except (SchemaViolation, ValueError) as e:
            raise InvalidMessage(str(e)) from None
        expected = event_subject(event["deal_id"], event["type"])
        if msg.subject != expected:
            raise InvalidMessage(f"subject {msg.subject} does not match the event (expected {expected})")
        event_id = headers.get("ce-id")
        if not event_id:
            raise InvalidMessage("no ce-id header")
        return event, event_id

    async def _deal(self, event: dict[str, Any]) -> DealContext:
        """The deal's title, client and owner, from its DealOpened event (JetStream direct get, cached)."""
        deal_id = event["deal_id"]
        if event["type"] == "DealOpened":
            data = event["data"]
            return self._remember(DealContext(deal_id, data["title"], data["client_name"], data["owner"]))
        if deal_id in self._deals:
            self._deals.move_to_end(deal_id)
            return self._deals[deal_id]
        try:
            opened = await self.js.get_last_msg(EVENTS_STREAM, event_subject(deal_id, "DealOpened"))
            data = json.loads(opened.data or b"{}")["data"]
            return self._remember(DealContext(deal_id, data["title"], data["client_name"], data["owner"]))
        except (NotFoundError, KeyError, ValueError):
            return DealContext(deal_id, f"deal {deal_id}", "unknown client", None)

    def _remember(self, deal: DealContext) -> DealContext:
        self._deals[deal.deal_id] = deal
        while len(self._deals) > 10_000:
            self._deals.popitem(last=False)
        return deal

    async def _dead_letter_alert(self, alert: Alert, attempts: int, error: str) -> None:
        letter = DeadLetterMessage(kind="alert", error=error, attempts=attempts, alert=alert.message())
        await self._publish_dead(letter, f"{alert.id}/dead")

    async def _dead_letter_message(self, msg: Msg, reason: str, message_id: str | None = None) -> None:
        message_id = message_id or (msg.headers or {}).get("Nats-Msg-Id") or f"{EVENTS_STREAM}:{msg.metadata.sequence.stream}"
        data = msg.data.decode("utf-8", errors="replace")
        await asyncio.to_thread(self.store.record_dead_letter, message_id, msg.subject, reason, data)
        log.warning("invalid event dead-lettered", subject=msg.subject, reason=reason)
        letter = DeadLetterMessage(kind="message", error=reason, subject=msg.subject, data=data)
        await self._publish_dead(letter, f"{message_id}/dead")

    async def _publish_dead(self, letter: DeadLetterMessage, message_id: str) -> None:
        body = letter.model_dump_json(exclude_none=True).encode()
        try:
            await self.js.publish(DEAD_LETTERS_SUBJECT, body, headers={"Nats-Msg-Id": message_id})
        except Exception as e:  # noqa: BLE001 - the store already holds it; the subject is a courtesy copy
            log.warning("cannot publish dead letter", error=str(e))

    async def _wait_for_streams(self, stop: asyncio.Event) -> None:
        """The deal service keeps the streams (the events, and DEALS_ALERTS for dead letters); wait for them.
        The notifier makes none: it may read the events and dead-letter alerts, nothing more."""
        for stream in (EVENTS_STREAM, ALERTS_STREAM):
            while not stop.is_set():
                try:
                    await self.js.stream_info(stream)
                    break
                except Exception:  # noqa: BLE001 - not there yet, or NATS not answering: look again
                    log.info("waiting for a stream the deal service keeps", stream=stream)
                    await asyncio.sleep(1)
