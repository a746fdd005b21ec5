"""The relay never skips an event and never dies silently (a real relay process and nats-server).

An event that cannot be published stalls the relay at that event: it says so (an ERROR
line, `deals.relay.stalled`, `dealflow relay --status`), publishes nothing after it, and
resumes by itself once the operator fixed the cause, with no event skipped or duplicated.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import psycopg
import pytest

from dealflow.deal_lifecycle.adapters.bus import EVENTS_STREAM, PUBLISHED_TOPICS, ensure_streams, envelope
from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats, free_port
from dealflow.deal_lifecycle.adapters.policy_file import load_policy
from dealflow.deal_lifecycle.adapters.relay_status import STALLED_SUBJECT, Report, report
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.model import Attribution
from tests.nats_support import exactly_once_in_deal_order, stream, wait_for_count
from tests.support import POLICY_FILE
from tests.processes import clean_environment

DEALFLOW = [sys.executable, "-m", "dealflow.deal_lifecycle"]


def env_for(settings: Settings, nats_url: str) -> dict[str, str]:
    env = clean_environment()
    env.update(NATS_URL=nats_url, DEALFLOW_POLICY=str(POLICY_FILE))
    if settings.database_url:
        env["DEALFLOW_DATABASE_URL"] = settings.database_url
    else:
        env["DEALFLOW_SQLITE_PATH"] = str(settings.sqlite_path)
    return env


@pytest.fixture
def relays(settings: Settings, tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Start `dealflow relay` processes (logging to tmp_path/relay.log); all are stopped afterwards."""
    started: list[subprocess.Popen[bytes]] = []

    def start(nats_url: str) -> subprocess.Popen[bytes]:
        with (tmp_path / "relay.log").open("ab") as out:
            process = subprocess.Popen([*DEALFLOW, "relay"], env=env_for(settings, nats_url), stdout=out, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=15)


def store(service: DealService, *, correlation_id: str = "corr-1", title: str = "Acme payroll") -> int:
    """A new deal (one DealOpened event); returns its notification id."""
    service.save(Deal.open(title=title, client_name="Acme Ltd", owner="ann", by=Attribution("ann@firm", correlation_id)))
    return service.recorder.max_notification_id() or 0


def published_ids(url: str) -> list[int]:
    return [int(m.headers["Dealflow-Notification-Id"]) for m in stream(url)]


def status(service: DealService) -> Report:
    return report(service, service.factory.tracking_recorder())


def wait_until(condition: Callable[[], Any], what: str, log: Path, timeout: float = 45.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {timeout:g}s; relay log:\n{log.read_text()[-4000:] if log.exists() else ''}")


def log_lines(log: Path) -> list[dict[str, Any]]:
    lines = []
    for line in log.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def status_cli(settings: Settings, nats_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DEALFLOW, "relay", "--status"], env=env_for(settings, nats_url), capture_output=True, text=True, timeout=60, check=False
    )


async def _first_message(url: str, subject: str, start: Callable[[], object], timeout: float) -> dict[str, Any]:
    nc = await nats.connect(url)
    try:
        subscription = await nc.subscribe(subject)
        await nc.flush()
        start()
        message = await subscription.next_msg(timeout=timeout)
        return json.loads(message.data)
    finally:
        await nc.close()


def test_an_event_over_max_payload_stalls_the_relay_there_loudly_and_it_resumes_after_the_fix_skipping_nothing(
    service: DealService, settings: Settings, relays: Callable[[str], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = tmp_path / "relay.log"
    server = EmbeddedNats(tmp_path / "nats", max_payload=4096).__enter__()
    try:
        before = [store(service), store(service)]
        # Its correlation id travels in full in the body (its header copy is cut): over 5 KB on the wire.
        poison = store(service, correlation_id="c" * 5000)
        poison_deal = str(service.recorder.select_notifications(poison, 1)[0].originator_id)

        alert = asyncio.run(_first_message(server.url, STALLED_SUBJECT, lambda: relays(server.url), timeout=45))
        assert (alert["notification_id"], alert["deal_id"], alert["event_type"]) == (poison, poison_deal, "DealOpened")
        assert alert["size_bytes"] > 4096 and "max_payload" in alert["reason"]

        stalled = wait_until(lambda: status(service).stalled and status(service), "a stalled status", log)
        assert stalled.position == before[-1] and stalled.relay.stall.notification_id == poison
        after = store(service)  # stored behind the stalled event: must wait for it
        assert published_ids(server.url) == before

        error = [line for line in log_lines(log) if line.get("level") == "error" and "stalled" in line["event"]]
        assert error, log.read_text()[-3000:]
        assert {k: error[0][k] for k in ("notification_id", "deal_id", "event_type")} == {
            "notification_id": poison, "deal_id": poison_deal, "event_type": "DealOpened"
        }
        assert error[0]["size_bytes"] > 4096 and "max_payload of 4096" in error[0]["reason"]

        shown = status_cli(settings, server.url)
        assert shown.returncode == 1, shown.stdout + shown.stderr
        assert f"STALLED at notification {poison}" in shown.stdout
        assert poison_deal in shown.stdout and "DealOpened" in shown.stdout and "max_payload" in shown.stdout
        assert f"position:    {before[-1]}" in shown.stdout and "lag:         2 event(s)" in shown.stdout

        time.sleep(1.5)  # it keeps retrying meanwhile, and still publishes nothing past the stalled event
        assert published_ids(server.url) == before

        # The operator's fix: the same server, restarted with a larger max_payload (its default, 1 MB).
        server.stop()
        server = EmbeddedNats(tmp_path / "nats", port=server.port).__enter__()
        assert wait_for_count(server.url, 4, timeout=45) == 4, log.read_text()[-3000:]
        time.sleep(0.5)
        assert published_ids(server.url) == [*before, poison, after]
        exactly_once_in_deal_order(stream(server.url))
        wait_until(lambda: not status(service).stalled, "the status clearing", log)
        assert any("resumed" in line["event"] for line in log_lines(log))
        resumed = status_cli(settings, server.url)
        assert resumed.returncode == 0 and "STALLED" not in resumed.stdout and "lag:         0 event(s)" in resumed.stdout
    finally:
        server.stop()


def test_an_event_jetstream_refuses_stalls_the_pipelined_batch_there_and_a_restart_does_not_move_past_it(
    service: DealService, settings: Settings, nats_server: EmbeddedNats, relays: Callable[[str], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = tmp_path / "relay.log"
    # All stored before the relay starts, so they go out in one pipelined batch; the third is
    # over the server's max_payload (1 MB). (Headers over JetStream's 64 KB, which JetStream
    # itself refused, can no longer be made: bus.header_copy bounds them.)
    before = [store(service), store(service)]
    refused = store(service, correlation_id="h" * 1_100_000)
    behind = [store(service), store(service)]

    first = relays(nats_server.url)
    wait_until(lambda: status(service).stalled, "a stalled status", log)
    shown = status(service)
    assert shown.relay is not None and shown.relay.stall is not None
    assert shown.relay.stall.notification_id == refused and "max_payload" in shown.relay.stall.reason
    assert published_ids(nats_server.url) == before  # none of the events behind it

    # A restart reconciles with the stream: it must not adopt anything past the refused event.
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    second = relays(nats_server.url)
    wait_until(
        lambda: status(service).stalled and status(service).relay.holder.endswith(f":{second.pid}"), "the new relay stalled", log
    )
    assert published_ids(nats_server.url) == before
    assert status(service).position == before[-1] and status(service).lag == 1 + len(behind)


def test_a_gap_in_the_stream_is_filled_not_adopted(
    service: DealService, settings: Settings, nats_server: EmbeddedNats, relays: Callable[[str], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """A stream an older relay left with N missing and N+1 held: the relay publishes N, it does not start after N+1."""
    ids = [store(service) for _ in range(5)]
    missing = ids[2]

    async def publish_all_but_the_missing_one() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            await ensure_streams(js)
            for n in service.recorder.select_notifications(0, 10, topics=PUBLISHED_TOPICS):
                if n.id in ids[:4] and n.id != missing:
                    message = envelope(service.mapper.to_domain_event(n), n.id)
                    await js.publish(message.subject, message.body, headers=message.headers, stream=EVENTS_STREAM)
        finally:
            await nc.close()

    asyncio.run(publish_all_but_the_missing_one())
    assert published_ids(nats_server.url) == [ids[0], ids[1], ids[3]]

    relays(nats_server.url)
    assert wait_for_count(nats_server.url, 5, timeout=45) == 5, (tmp_path / "relay.log").read_text()[-3000:]
    time.sleep(0.5)
    held = published_ids(nats_server.url)
    assert sorted(held) == ids and len(held) == len(set(held))  # the missing event is there, and nothing twice


def _rename_events_table(service: DealService, settings: Settings, old: str, new: str) -> None:
    if settings.database_url:
        schema = service.recorder.datastore.schema  # type: ignore[attr-defined]
        with psycopg.connect(settings.database_url.split("?")[0], autocommit=True) as conn:
            conn.execute(f'ALTER TABLE "{schema}"."{old}" RENAME TO "{new}"')
    else:
        import sqlite3  # noqa: PLC0415

        with sqlite3.connect(settings.sqlite_path) as conn:
            conn.execute(f'ALTER TABLE "{old}" RENAME TO "{new}"')


def test_a_relay_that_dies_of_an_unexpected_error_says_so_and_is_restarted(
    service: DealService, settings: Settings, nats_server: EmbeddedNats, relays: Callable[[str], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = tmp_path / "relay.log"
    store(service)
    relay = relays(nats_server.url)
    assert wait_for_count(nats_server.url, 1, timeout=45) == 1

    # The store's events table goes away under the running relay (a botched migration, say).
    table = service.recorder.events_table_name  # type: ignore[attr-defined]
    _rename_events_table(service, settings, table, f"{table}_away")
    try:
        died = wait_until(lambda: [line for line in log_lines(log) if line["event"] == "relay died; restarting it"], "a restart", log)
    finally:
        _rename_events_table(service, settings, f"{table}_away", table)
    assert died[0]["level"] == "error" and died[0]["error"] and "Traceback" in died[0].get("exception", "")
    assert relay.poll() is None

    store(service)
    assert wait_for_count(nats_server.url, 2, timeout=60) == 2, log.read_text()[-3000:]


def test_dealflow_up_says_loudly_when_its_relay_is_stalled(tmp_path: Path) -> None:
    settings = Settings(sqlite_path=tmp_path / "var" / "deals.sqlite3")
    deals = DealService(env=settings.eventsourcing_env(), policy=load_policy(POLICY_FILE))
    try:
        store(deals)
        refused = store(deals, correlation_id="h" * 1_100_000)  # over the embedded server's 1 MB max_payload
    finally:
        deals.close()
    env = clean_environment()
    env.update(DEALFLOW_SQLITE_PATH=str(settings.sqlite_path), DEALFLOW_POLICY=str(POLICY_FILE))
    log = tmp_path / "up.log"
    with log.open("w") as out:
        up = subprocess.Popen(
            [*DEALFLOW, "up", "--port", str(free_port()), "--nats-port", str(free_port())],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        line = wait_until(
            lambda: [x for x in log.read_text(errors="replace").splitlines() if x.startswith("dealflow: RELAY STALLED")],
            "the stalled line", log, timeout=60,
        )[0]
        assert f"at notification {refused} (DealOpened" in line and "max_payload" in line and "dealflow relay --status" in line
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=30)
