"""The notifier alerts people when the relay stalls and when it resumes (a real nats-server, the notifier
as its own process, a real HTTP receiver): one alert per stall however often the relay repeats it,
one per resume, one per message between two notifiers, and end to end through a real relay stalled
by an event over max_payload and resumed after the fix."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import pytest

from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats
from dealflow.deal_lifecycle.adapters.relay_status import RESUMED_SUBJECT, STALLED_SUBJECT, Stall
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.model import Attribution
from tests.notifier_support import (
    Notifiers,
    Receiver,
    clean_env,
    notifier_env,
    query,
    signature_is_valid,
    statuses,
    wait_until,
    write_rules,
)
from tests.support import POLICY, POLICY_FILE

RELAY = [sys.executable, "-m", "dealflow.deal_lifecycle", "relay"]
SINCE = datetime(2026, 11, 23, 21, 2, 11, tzinfo=UTC)


def stall(notification_id: int, since: datetime = SINCE) -> Stall:
    return Stall(
        notification_id=notification_id,
        event_id=f"5f0c2b1e:{notification_id}",
        deal_id="5f0c2b1e",
        event_type="SigningRefused",
        size_bytes=1_450_112,
        reason="1450112 bytes is over the NATS server's max_payload of 1048576 bytes",
        since=since,
    )


def send(url: str, *messages: tuple[str, bytes]) -> None:
    """Core NATS, as the relay sends them."""

    async def go() -> None:
        nc = await nats.connect(url)
        try:
            for subject, body in messages:
                await nc.publish(subject, body)
            await nc.flush()
        finally:
            await nc.close()

    asyncio.run(go())


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as http_receiver:
        yield http_receiver


def ops_rules(path: Path, receiver: Receiver) -> Path:
    return write_rules(
        path,
        f"""
[channels.ops_webhook]
type = "webhook"
url = "{receiver.url("/ops")}"

[recipients.ops]
channel = "ops_webhook"

[[rules]]
name = "relay"
events = ["RelayStalled", "RelayResumed"]
notify = ["ops"]
urgency = "urgent"
""",
    )


def start_notifier(notifiers: Notifiers, url: str, rules: Path, db: Path) -> None:
    process = notifiers.start(notifier_env(url, rules, db))
    log = notifiers.logs[-1]
    wait_until(lambda: process.poll() is None and "notifier watching the relay" in log.read_text(), what="the notifier", logs=[log])


def test_a_stall_alerts_once_however_often_the_relay_repeats_it_and_its_resume_once(
    nats_server: EmbeddedNats, receiver: Receiver, tmp_path: Path
) -> None:
    with Notifiers(tmp_path) as notifiers:
        db = tmp_path / "notifier.sqlite3"
        start_notifier(notifiers, nats_server.url, ops_rules(tmp_path / "rules.toml", receiver), db)
        # Not what the relay sends: dead-lettered with the reason, and the next message is handled.
        send(nats_server.url, (STALLED_SUBJECT, b'{"notification_id": "x"}'), (STALLED_SUBJECT, stall(1203).message(1202)))
        [first] = wait_until(lambda: receiver.on("/ops"), what="the stall alert", logs=notifiers.logs)
        [(subject, reason)] = query(db, "SELECT subject, reason FROM notifier_dead_letters")
        assert subject == STALLED_SUBJECT and reason.startswith("not a RelayStalled message: body: 'event_id' is a required property")
        alert = first.json()
        assert signature_is_valid(first)
        assert (alert["event_type"], alert["event_id"], alert["deal_id"], alert["urgency"]) == (
            "RelayStalled", "5f0c2b1e:1203", "5f0c2b1e", "urgent",
        )
        assert alert["title"].startswith("URGENT: Relay stalled")
        for expected in ("SigningRefused 5f0c2b1e:1203 (notification 1203)", "1450112 bytes", "max_payload of 1048576",
                         "Since: 2026-11-23T21:02:11Z", "dealflow relay --status"):
            assert expected in alert["text"], expected

        # The relay's once-a-minute repeats, then another stall: handled in order, so once the
        # other stall's alert is in, the repeats were seen and sent nothing.
        later = stall(1300, SINCE + timedelta(hours=1))
        send(nats_server.url, (STALLED_SUBJECT, stall(1203).message(1202)), (STALLED_SUBJECT, stall(1203).message(1202)),
             (STALLED_SUBJECT, later.message(1299)))
        wait_until(lambda: len(receiver.on("/ops")) == 2, what="the other stall's alert", logs=notifiers.logs)

        send(nats_server.url, (RESUMED_SUBJECT, stall(1203).message(1203)), (RESUMED_SUBJECT, stall(1203).message(1203)),
             (RESUMED_SUBJECT, later.message(1300)))
        wait_until(lambda: len(receiver.on("/ops")) == 4, what="the resume alerts", logs=notifiers.logs)
        alerts = [r.json() for r in receiver.on("/ops")]
        assert [a["event_type"] for a in alerts] == ["RelayStalled", "RelayStalled", "RelayResumed", "RelayResumed"]
        assert [a["event_id"] for a in alerts] == ["5f0c2b1e:1203", "5f0c2b1e:1300", "5f0c2b1e:1203", "5f0c2b1e:1300"]
        assert "published SigningRefused 5f0c2b1e:1203" in alerts[2]["text"]
        assert len(set(receiver.keys("/ops"))) == 4


def test_two_notifiers_share_the_relay_messages_so_each_alerts_once(
    nats_server: EmbeddedNats, receiver: Receiver, tmp_path: Path
) -> None:
    rules = ops_rules(tmp_path / "rules.toml", receiver)
    stores = [tmp_path / "notifier-a.sqlite3", tmp_path / "notifier-b.sqlite3"]  # separate: no dedup between them
    with Notifiers(tmp_path) as notifiers:
        for db in stores:
            start_notifier(notifiers, nats_server.url, rules, db)
        stalls = [stall(n, SINCE + timedelta(minutes=n)) for n in range(1, 21)]
        send(nats_server.url, *((STALLED_SUBJECT, s.message(s.notification_id - 1)) for s in stalls))
        delivered = [set(), set()]

        def every_stall_delivered() -> bool:
            delivered[:] = [set(statuses(db)) for db in stores]
            return len(delivered[0] | delivered[1]) == len(stalls)

        wait_until(every_stall_delivered, what="every stall's alert", logs=notifiers.logs)
        # A queue group: each message went to one of them, not to both.
        assert not delivered[0] & delivered[1]
        assert len(receiver.on("/ops")) == len(stalls)


def test_a_real_relay_stalled_by_an_event_over_max_payload_alerts_ops_and_again_when_it_resumes(
    receiver: Receiver, tmp_path: Path
) -> None:
    settings = Settings(sqlite_path=tmp_path / "deals.sqlite3")
    deals = DealService(env=settings.eventsourcing_env(), policy=POLICY)
    try:
        deal = Deal.open(title="Acme payroll", client_name="Acme Ltd", owner="ann", by=Attribution("ann@firm", "c" * 6000))
        deals.save(deal)
        poison = deals.recorder.max_notification_id()
    finally:
        deals.close()
    logs = tmp_path / "relay.log"
    server = EmbeddedNats(tmp_path / "nats", max_payload=4096).__enter__()
    try:
        with Notifiers(tmp_path) as notifiers:
            start_notifier(notifiers, server.url, ops_rules(tmp_path / "rules.toml", receiver), tmp_path / "notifier.sqlite3")
            env = clean_env(NATS_URL=server.url, DEALFLOW_SQLITE_PATH=str(settings.sqlite_path), DEALFLOW_POLICY=str(POLICY_FILE))
            with logs.open("wb") as out:
                relay = subprocess.Popen(RELAY, env=env, stdout=out, stderr=subprocess.STDOUT)
            try:
                [request] = wait_until(lambda: receiver.on("/ops"), what="the stall alert", timeout=45, logs=[*notifiers.logs, logs])
                alert = request.json()
                assert alert["event_type"] == "RelayStalled" and alert["deal_id"] == str(deal.id)
                assert f"DealOpened {deal.id}:1 (notification {poison})" in alert["text"]
                assert "max_payload of 4096" in alert["text"]

                # The operator's fix: the same server, restarted with its default max_payload (1 MB).
                server.stop()
                server = EmbeddedNats(tmp_path / "nats", port=server.port).__enter__()
                wait_until(lambda: len(receiver.on("/ops")) == 2, what="the resume alert", timeout=60, logs=[*notifiers.logs, logs])
            finally:
                relay.terminate()
                relay.wait(timeout=15)
        resumed = receiver.on("/ops")[1].json()
        assert resumed["event_type"] == "RelayResumed" and f"published DealOpened {deal.id}:1" in resumed["text"]
        assert len(receiver.on("/ops")) == 2
    finally:
        server.stop()
