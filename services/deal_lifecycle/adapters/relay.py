"""The relay: every stored event reaches JetStream, in order, exactly once in effect.

The event store is the outbox. The relay follows the application's notification log
from its tracked position and publishes each event (bus.envelope) with its id as
`Nats-Msg-Id`. The position is saved only after JetStream acknowledged, so a crash
republishes at most the unacknowledged tail, which the stream's duplicate window drops;
and on every (re)start the position is first moved past the events the stream already
holds, so even a restart after that window publishes nothing twice.

Never past an event the stream does not hold. Events are pipelined, each expecting the
stream's last sequence to be the one before it (`Nats-Expected-Last-Sequence`), so when
JetStream refuses one, it refuses every later one too and the stream stays a gap-free
prefix of the store. Start-up adopts the stream's position only over events it verifiably
holds (checked against the store by notification id and event id).

An event that cannot be published (over the server's max_payload, refused by JetStream)
stalls the relay at that event: it is not skipped, later events wait behind it, the
relay logs an ERROR and publishes `deals.relay.stalled` (at most once a minute), records
it for `dealflow relay --status`, and retries by itself, so that an operator's fix (a
larger max_payload, say) lets it resume. Failures that go away (NATS unreachable,
timeouts) are retried with back-off.

Only one relay publishes at a time (`leadership.py`); the others wait to take over.
It is woken as soon as this process stores events, by PostgreSQL NOTIFY when another
process does, and otherwise looks again every `poll_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace

import nats.errors
import structlog
from eventsourcing.persistence import Notification, Tracking
from nats.aio.client import Client as NATS
from nats.js.errors import APIError, NotFoundError

from dealflow.deal_lifecycle.adapters.bus import EVENTS_STREAM, NOTIFICATION_ID, PUBLISHED_TOPICS, Envelope, ensure_streams, envelope
from dealflow.deal_lifecycle.adapters.leadership import Leadership
from dealflow.deal_lifecycle.adapters.relay_status import (
    HEARTBEAT_SECONDS,
    RELAY_NAME,
    RELAYING,
    RESTARTING,
    RESUMED_SUBJECT,
    STALLED,
    STALLED_SUBJECT,
    STOPPED,
    WAITING,
    RelayState,
    Stall,
    StatusTable,
    now,
)
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.event_loop import first_of

log = structlog.get_logger("dealflow.relay")

TRACKING_NAME = RELAY_NAME
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
# JetStream's answer when the expected last sequence does not match: the chain was broken
# by an earlier failure or another publisher; reconciling and publishing again mends it.
WRONG_LAST_SEQUENCE = 10071
# While busy, the relay writes its position to the store at most this often (see EventRelay.__init__).
POSITION_SAVE_SECONDS = 0.25


class PublishFailed(Exception):
    """A failure that goes away by itself (NATS unreachable, a timeout): retried with back-off."""


class Unpublishable(Exception):
    """Publishing these same bytes again will not help: the relay stalls at this event."""

    def __init__(self, stall: Stall) -> None:
        super().__init__(stall.reason)
        self.stall = stall


@dataclass(frozen=True)
class _Outgoing:
    notification: Notification
    message: Envelope
    deal_id: str
    event_type: str

    @property
    def size(self) -> int:
        return wire_size(self.message)

    def stall(self, reason: str) -> Stall:
        return Stall(
            notification_id=self.notification.id,
            event_id=self.message.headers["Nats-Msg-Id"],
            deal_id=self.deal_id,
            event_type=self.event_type,
            size_bytes=self.size,
            reason=reason,
            since=now(),
        )


class EventRelay:
    def __init__(
        self,
        deals: DealService,
        nc: NATS,
        *,
        batch_size: int = 500,
        ack_timeout: float = 5.0,
        poll_seconds: float = 1.0,
        stalled_retry_seconds: float = 30.0,
        stalled_log_seconds: float = 60.0,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.deals = deals
        self.nc = nc
        self.js = nc.jetstream(timeout=ack_timeout)
        self.tracking = deals.factory.tracking_recorder()
        self.status_table = StatusTable(deals.recorder)
        self.batch_size = batch_size
        self.ack_timeout = ack_timeout
        self.poll_seconds = poll_seconds
        self.stalled_retry_seconds = stalled_retry_seconds
        self.stalled_log_seconds = stalled_log_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.position = 0
        # The position last written to the store, and when: under a steady trickle of commands the
        # relay publishes many small batches, and writing the position after each would queue a
        # write with the commands for the store's writer every few events. It is written at most
        # every POSITION_SAVE_SECONDS while busy, and whenever the relay goes idle or stops; a crash
        # in between loses nothing, since start-up adopts what the stream verifiably holds (_reconcile).
        self._saved_position = 0
        self._position_saved_at = -float("inf")
        # The stream's last sequence as this relay knows it: the next message expects it.
        self.stream_seq = 0
        self.stall: Stall | None = None
        self.status = RelayState(state=STOPPED, holder=f"{socket.gethostname()}:{os.getpid()}", position=0, updated_at=now())
        self._stall_said_at: float | None = None
        self._wake = asyncio.Event()
        self._retry = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """Called from any thread (a command's worker) right after events were stored."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def retry_now(self) -> None:
        """Called when NATS reconnects: a stalled relay tries again at once, the server may have been fixed."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._retry.set)
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event, leadership: Leadership) -> None:
        """Relay while leading; stand by while another process leads."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.status_table.create)
        while await leadership.acquire(stop):
            try:
                try:
                    await self._relay(stop, leadership)
                finally:
                    with contextlib.suppress(Exception):  # the store may be what failed: start-up reconciles
                        await self._save_position()
            except Exception as e:
                await self._report(RESTARTING, last_error=f"{type(e).__name__}: {e}")
                raise
            else:
                if stop.is_set():
                    # Said while still leading, so no relay that takes over after us is overwritten.
                    await self._report(STOPPED, last_error=None)
            finally:
                await leadership.release()

    async def _relay(self, stop: asyncio.Event, leadership: Leadership) -> None:
        await self._reconcile_when_reachable(stop)
        log.info("relay leading", position=self.position)
        await self._report(RELAYING)
        transient_pause = 0.5
        while not stop.is_set():
            if not await leadership.still_leading():
                log.warning("relay lost leadership", position=self.position)
                return
            try:
                published = await self.publish_backlog()
            except Unpublishable as e:
                await self._stalled(e.stall)
                # Not woken by new events (they wait behind it anyway): by time, or a reconnection,
                # which is often the operator's fix.
                self._retry.clear()
                await first_of(stop.wait(), self._retry.wait(), timeout=self.stalled_retry_seconds)
                await self._reconcile_quietly()
                continue
            except PublishFailed as e:
                log.warning("relay waiting for JetStream", error=str(e), position=self.position)
                await self._report(WAITING, last_error=str(e))
                await _sleep_or(stop, transient_pause)
                transient_pause = min(transient_pause * 2, 5.0)
                await self._reconcile_quietly()
                continue
            transient_pause = 0.5
            if self.stall is not None and self.position >= self.stall.notification_id:
                await self._resumed()
            if self.status.state != RELAYING or self._heartbeat_due():
                await self._report(RELAYING)
            if not published:
                await self._save_position()  # idle: the store says how far the stream is
                self._wake.clear()
                await first_of(stop.wait(), self._wake.wait(), timeout=self.poll_seconds)

    async def publish_backlog(self) -> int:
        """Publish everything stored after the position; returns how many were published."""
        total = 0
        while True:
            notifications = await asyncio.to_thread(
                self.deals.recorder.select_notifications,
                start=self.position,
                limit=self.batch_size,
                topics=PUBLISHED_TOPICS,
                inclusive_of_start=False,
            )
            if not notifications:
                return total
            total += await self._publish(notifications)

    async def _publish(self, notifications: Sequence[Notification]) -> int:
        outgoing, unpublishable = self._prepare(notifications)
        if self.stall is not None and outgoing and outgoing[0].notification.id == self.stall.notification_id:
            # Stalled at this one: try it alone first, rather than a whole batch behind it.
            await self._publish_one(outgoing[0])
            return 1
        published = await self._pipeline(outgoing)
        if unpublishable is not None:
            raise Unpublishable(unpublishable)
        return published

    def _prepare(self, notifications: Sequence[Notification]) -> tuple[list[_Outgoing], Stall | None]:
        """The envelopes up to the first that cannot be sent as it is, and why that one cannot."""
        outgoing = []
        for notification in notifications:
            try:
                event = self.deals.mapper.to_domain_event(notification)
                message = envelope(event, notification.id)
            except Exception as e:  # noqa: BLE001 - an event that cannot be read is stalled at, not skipped
                return outgoing, _unreadable(notification, e)
            headers = message.headers
            item = _Outgoing(notification, message, headers["ce-subject"], headers["ce-type"].rsplit(".", 1)[-1])
            # Over max_payload the server would drop the whole connection: never send it.
            if item.size > self.nc.max_payload:
                return outgoing, item.stall(
                    f"{item.size} bytes is over the NATS server's max_payload of {self.nc.max_payload} bytes"
                )
            outgoing.append(item)
        return outgoing, None

    async def _pipeline(self, outgoing: Sequence[_Outgoing]) -> int:
        # Pipelined on one connection, so JetStream stores them in this order; each expects the
        # one before it, so nothing after a refused message is stored. The position advances
        # over the acknowledged prefix only.
        sent: list[tuple[_Outgoing, asyncio.Future[object]]] = []
        failure: tuple[_Outgoing, Exception] | None = None
        for item in outgoing:
            try:
                ack = await self.js.publish_async(
                    item.message.subject, item.message.body, headers=self._chained(item, self.stream_seq + len(sent))
                )
            except Exception as e:  # noqa: BLE001 - not sent: stop here, the ones sent are still awaited
                failure = (item, e)
                break
            sent.append((item, ack))
        acknowledged = None
        for item, ack in sent:
            try:
                puback = await asyncio.wait_for(ack, self.ack_timeout)
            except Exception as e:  # noqa: BLE001 - any failure stops the prefix here
                failure = (item, e)
                break
            acknowledged = item.notification.id
            self.stream_seq = puback.seq  # type: ignore[attr-defined]
        for _, ack in sent:
            ack.cancel()
        published = 0 if acknowledged is None else sum(1 for item, _ in sent if item.notification.id <= acknowledged)
        if acknowledged is not None:
            await self._advance(acknowledged)
        if failure is not None:
            # publish_async cannot tell a refusal from a lost acknowledgement; one request/reply can.
            await self._publish_one(failure[0], failure[1])
            published += 1
        return published

    async def _publish_one(self, item: _Outgoing, earlier: Exception | None = None) -> None:
        """Publish one message and wait for its answer; raise Unpublishable or PublishFailed if it fails."""
        try:
            puback = await self.js.publish(
                item.message.subject, item.message.body, timeout=self.ack_timeout, headers=self._chained(item, self.stream_seq)
            )
        except nats.errors.MaxPayloadError:
            raise Unpublishable(item.stall(f"{item.size} bytes is over the NATS server's max_payload")) from None
        except APIError as e:
            if e.err_code == WRONG_LAST_SEQUENCE or (e.code or 0) >= 500:
                raise PublishFailed(f"{type(e).__name__}: {e.description}") from e
            raise Unpublishable(item.stall(f"JetStream refused it: {e.description} (err_code {e.err_code})")) from None
        except Exception as e:  # noqa: BLE001 - timeouts, no responders, disconnected: they pass
            raise PublishFailed(f"{type(earlier or e).__name__}: {earlier or e}") from e
        self.stream_seq = puback.seq
        await self._advance(item.notification.id)

    @staticmethod
    def _chained(item: _Outgoing, expected_last: int) -> dict[str, str]:
        return {**item.message.headers, EXPECTED_LAST_SEQUENCE: str(expected_last)}

    async def _advance(self, notification_id: int, *, save: bool = False) -> None:
        """Acknowledged up to `notification_id`: the position moves; it is saved now if asked, or if it was
        last saved more than POSITION_SAVE_SECONDS ago."""
        self.position = notification_id
        if save or asyncio.get_running_loop().time() - self._position_saved_at >= POSITION_SAVE_SECONDS:
            await self._save_position()

    async def _save_position(self) -> None:
        if self.position > self._saved_position:
            position = self.position
            await asyncio.to_thread(self.tracking.insert_tracking, Tracking(TRACKING_NAME, position))
            self._saved_position = position
        self._position_saved_at = asyncio.get_running_loop().time()

    # -- stalled and resumed ---------------------------------------------------------------

    async def _stalled(self, stall: Stall) -> None:
        if self.stall is not None and self.stall.notification_id == stall.notification_id:
            stall = replace(stall, since=self.stall.since)
        else:
            self._stall_said_at = None
        self.stall = stall
        await self._report(STALLED, stall=stall, last_error=stall.reason)
        moment = asyncio.get_running_loop().time()
        if self._stall_said_at is not None and moment - self._stall_said_at < self.stalled_log_seconds:
            return  # said recently: loud, not flooding
        self._stall_said_at = moment
        log.error(
            "relay stalled: an event cannot be published; nothing after it is published until it is",
            notification_id=stall.notification_id,
            event_id=stall.event_id,
            deal_id=stall.deal_id,
            event_type=stall.event_type,
            size_bytes=stall.size_bytes,
            reason=stall.reason,
            stalled_since=stall.since.isoformat(),
            position=self.position,
        )
        with contextlib.suppress(Exception):  # the alert is best effort: the log line and the status are not
            await self.nc.publish(STALLED_SUBJECT, stall.message(self.position))

    async def _resumed(self) -> None:
        stall, self.stall = self.stall, None
        assert stall is not None
        log.warning(
            "relay resumed: the event it was stalled at is published",
            notification_id=stall.notification_id,
            event_id=stall.event_id,
            stalled_since=stall.since.isoformat(),
            position=self.position,
        )
        await self._report(RELAYING, stall=None, last_error=None)
        with contextlib.suppress(Exception):
            await self.nc.publish(RESUMED_SUBJECT, stall.message(self.position))

    def _heartbeat_due(self) -> bool:
        return (now() - self.status.updated_at).total_seconds() >= self.heartbeat_seconds

    async def _report(self, state: str, **changes: object) -> None:
        """Record what the relay is doing where `dealflow relay --status` reads it; never fatal."""
        changes.setdefault("stall", self.stall)
        before = self.status
        after = before.but(state=state, position=self.position, **changes)
        if (after.state, after.stall, after.last_error) == (before.state, before.stall, before.last_error) and not self._heartbeat_due():
            return
        self.status = after
        try:
            await asyncio.to_thread(self.status_table.write, self.status)
        except Exception as e:  # noqa: BLE001 - the store may be busy; the next report writes it
            log.warning("cannot record the relay's status", error=str(e))

    # -- where to start ------------------------------------------------------------------------

    async def _reconcile(self) -> None:
        """Start after the saved position, or after the events the stream verifiably holds beyond it."""
        saved = await asyncio.to_thread(self.tracking.max_tracking_id, TRACKING_NAME) or 0
        held = await self._held_after(max(saved, self.position))
        verified = await asyncio.to_thread(self._verified_prefix, max(saved, self.position), held)
        self._saved_position = saved
        self.position = max(saved, self.position, verified)
        if self.position > saved:
            await self._advance(self.position, save=True)

    async def _held_after(self, position: int) -> dict[int, str]:
        """Event id by notification id, of the stream's messages after the position (read from its end)."""
        info = await self.js.stream_info(EVENTS_STREAM)
        self.stream_seq = info.state.last_seq
        held: dict[int, str] = {}
        seq = info.state.last_seq
        while seq >= max(info.state.first_seq, 1):
            try:
                msg = await self.js.get_msg(EVENTS_STREAM, seq)
            except NotFoundError:
                seq -= 1
                continue
            headers = msg.headers or {}
            notification_id = int(headers.get(NOTIFICATION_ID, 0))
            if 0 < notification_id <= position:
                break
            if notification_id:
                held[notification_id] = headers.get("Nats-Msg-Id", "")
            seq -= 1
        return held

    def _verified_prefix(self, position: int, held: dict[int, str]) -> int:
        """The furthest notification up to which every published event after the position is held."""
        verified = position
        while held and verified < max(held):
            notifications = self.deals.recorder.select_notifications(
                start=verified, limit=self.batch_size, topics=PUBLISHED_TOPICS, inclusive_of_start=False
            )
            for n in notifications:
                if held.get(n.id) != f"{n.originator_id}:{n.originator_version}":
                    if n.id <= max(held):
                        log.warning(
                            "the stream lacks an event it should hold before later ones; publishing from it",
                            notification_id=n.id,
                            position=verified,
                        )
                    return verified
                verified = n.id
            if not notifications:
                break
        return verified

    async def _reconcile_quietly(self) -> None:
        try:
            await self._reconcile()
        except Exception as e:  # noqa: BLE001 - NATS may still be down; the next round tries again
            log.debug("relay could not reconcile yet", error=str(e))

    async def _reconcile_when_reachable(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await ensure_streams(self.js)
                await self._reconcile()
                return
            except Exception as e:  # noqa: BLE001 - JetStream not reachable yet: keep the position, try again
                log.warning("relay waiting for JetStream", error=f"{type(e).__name__}: {e}")
                await self._report(WAITING, last_error=f"{type(e).__name__}: {e}")
                await _sleep_or(stop, 0.5)


def wire_size(message: Envelope) -> int:
    """Bytes of the message as NATS carries it (headers block and body), which max_payload bounds."""
    headers = sum(len(k.encode()) + len(v.encode()) + 4 for k, v in message.headers.items())
    # "NATS/1.0\r\n" + each "key: value\r\n" + "\r\n", with room for the chaining header the relay adds.
    return 10 + headers + 2 + len(EXPECTED_LAST_SEQUENCE) + 24 + len(message.body)


def _unreadable(notification: Notification, error: Exception) -> Stall:
    return Stall(
        notification_id=notification.id,
        event_id=f"{notification.originator_id}:{notification.originator_version}",
        deal_id=str(notification.originator_id),
        event_type=notification.topic.rsplit(".", 1)[-1],
        size_bytes=len(notification.state),
        reason=f"cannot be read from the store: {type(error).__name__}: {error}",
        since=now(),
    )


async def _sleep_or(stop: asyncio.Event, seconds: float) -> None:
    await first_of(stop.wait(), timeout=seconds)

