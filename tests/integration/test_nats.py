"""The deal service on a real NATS JetStream: relay, commands over NATS, outages and crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from uuid import UUID

import pytest
from litestar.testing import TestClient

from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.bootstrap import service_app
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.model import Side
from tests.nats_support import count, exactly_once_in_deal_order, request, stream, wait_for_count
from tests.support import TEST_KEYS, bearer, signed_in, BY, POLICY, POLICY_FILE, ctx, open_deal
from tests.processes import clean_environment

DEALFLOW = [sys.executable, "-m", "dealflow.deal_lifecycle"]


@pytest.fixture
def client(service: DealService, settings: Settings, nats_server: EmbeddedNats) -> Iterator[TestClient]:
    with signed_in(TestClient(service_app(replace(settings, nats_url=nats_server.url), service=service, keys=TEST_KEYS))) as test_client:
        yield test_client


def stored_versions(service: DealService, deal_id: str | UUID) -> list[int]:
    return [e.originator_version for e in service.history(UUID(str(deal_id)))]


def test_commands_over_http_and_nats_reach_jetstream_with_subject_and_cloudevents_headers(
    client: TestClient, nats_server: EmbeddedNats
) -> None:
    opened = client.post("/deals", json={"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"}, headers=bearer(sub="ann@firm"))
    deal_id = opened.json()["id"]
    headers, reply = request(
        nats_server.url, "sign_letter_of_intent", {"deal_id": deal_id}, {**bearer(sub="crm"), "X-Correlation-ID": "crm-7"}
    )
    assert "Nats-Service-Error-Code" not in headers
    assert (reply["deal"]["stage"], reply["deal"]["version"]) == ("letter_of_intent", 2)

    assert wait_for_count(nats_server.url, 2) == 2
    first, second = stream(nats_server.url)
    assert first.subject == f"deals.events.{deal_id}.DealOpened"
    assert second.subject == f"deals.events.{deal_id}.LetterOfIntentSigned"
    assert {k: v for k, v in second.headers.items() if k != "ce-time"} == {
        "Nats-Msg-Id": f"{deal_id}:2",
        "ce-specversion": "1.0",
        "ce-id": f"{deal_id}:2",
        "ce-source": "urn:dealflow:deal-lifecycle",
        "ce-type": "dealflow.deal.LetterOfIntentSigned",
        "ce-subject": deal_id,
        "ce-datacontenttype": "application/json",
        "Content-Type": "application/json",
        "Dealflow-Deal-Version": "2",
        "Dealflow-Correlation-Id": "crm-7",
        "Dealflow-Actor": "crm",
        "Dealflow-Schema-Version": "1",
        "Dealflow-Notification-Id": second.headers["Dealflow-Notification-Id"],
        # The relay chains its messages: JetStream stores none after one it refused.
        "Nats-Expected-Last-Sequence": "1",
    }
    assert second.headers["ce-time"] == second.event["timestamp"]
    assert first.headers["Dealflow-Actor"] == "ann@firm"
    assert second.event == client.get(f"/deals/{deal_id}/events").json()["events"][1]


def test_opening_a_deal_over_nats_replies_with_its_id_as_http_does(client: TestClient, nats_server: EmbeddedNats) -> None:
    headers, reply = request(nats_server.url, "open_deal", {"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"})
    assert "Nats-Service-Error-Code" not in headers
    assert reply["id"] is not None
    assert client.get(f"/deals/{reply['id']}").json()["title"] == "Acme payroll"


def test_a_duplicate_command_over_nats_records_one_event(client: TestClient, service: DealService, nats_server: EmbeddedNats) -> None:
    deal_id = client.post("/deals", json={"title": "T", "client_name": "C", "owner": "o"}).json()["id"]
    key = {"Idempotency-Key": "crm-loi-1"}
    _, first = request(nats_server.url, "sign_letter_of_intent", {"deal_id": deal_id}, key)
    _, again = request(nats_server.url, "sign_letter_of_intent", {"deal_id": deal_id}, key)
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert again["deal"] == first["deal"]
    assert stored_versions(service, deal_id) == [1, 2]
    assert wait_for_count(nats_server.url, 2) == 2
    time.sleep(0.3)
    assert count(nats_server.url) == 2


@pytest.mark.parametrize(
    ("command", "payload", "code", "status"),
    [
        ("sign_letter_of_intent", b'{"deal_id": ', "malformed_request", "400"),
        ("promote_to_vip", {"deal_id": "x"}, "unknown_command", "404"),
        ("walk_away", {"deal_id": "not-a-uuid", "reason": "x"}, "invalid_command", "422"),
        ("walk_away", {"deal_id": "{deal}"}, "invalid_command", "422"),
        ("record_expectation", {"deal_id": "{deal}", "side": "client"}, "invalid_command", "422"),
        ("open_deal", {"title": "", "client_name": "C", "owner": "o"}, "invalid_command", "422"),
        ("record_sales_promise", {"deal_id": "{deal}", "statement": "too early"}, "not_allowed_at_stage", "409"),
        ("sign_contract", {"deal_id": "{deal}"}, "signing_refused", "409"),
        ("sign_letter_of_intent", {"deal_id": "00000000-0000-0000-0000-000000000000"}, "not_found", "404"),
    ],
)
def test_invalid_nats_commands_get_error_replies_and_store_nothing(
    client: TestClient, service: DealService, nats_server: EmbeddedNats, command: str, payload: object, code: str, status: str
) -> None:
    deal_id = client.post("/deals", json={"title": "T", "client_name": "C", "owner": "o"}).json()["id"]
    if isinstance(payload, dict):
        payload = {k: (v.replace("{deal}", deal_id) if isinstance(v, str) else v) for k, v in payload.items()}
    headers, reply = request(nats_server.url, command, payload)  # type: ignore[arg-type]
    assert (headers["Nats-Service-Error-Code"], reply["code"]) == (status, code)
    assert reply["message"]
    if code == "invalid_command":
        assert reply["errors"] and all({"field", "rule"} <= set(e) for e in reply["errors"])
    assert stored_versions(service, deal_id) == [1]
    assert len(service.list_deals(stage=None, owner=None, limit=10, cursor=None).items) == 1


def test_commands_are_accepted_while_nats_is_down_and_published_once_it_is_back(
    client: TestClient, nats_server: EmbeddedNats
) -> None:
    deal_id = client.post("/deals", json={"title": "T", "client_name": "C", "owner": "o"}).json()["id"]
    assert wait_for_count(nats_server.url, 1) == 1

    nats_server.stop()
    assert client.post(f"/deals/{deal_id}/letter-of-intent").status_code == 200
    for n in range(3):
        assert client.post(f"/deals/{deal_id}/concessions", json={"by": "client", "what": f"gift {n}"}).status_code == 201
    other = client.post("/deals", json={"title": "Other", "client_name": "C", "owner": "o"}).json()["id"]
    # Longer than the relay's acknowledgement timeout: its publishes fail and are retried, and the
    # ones the client buffered meanwhile reach the server too, so only Nats-Msg-Id keeps them single.
    time.sleep(6)

    nats_server.start()
    assert wait_for_count(nats_server.url, 6, timeout=60) == 6
    time.sleep(1)
    per_deal = exactly_once_in_deal_order(stream(nats_server.url))
    assert per_deal == {deal_id: [1, 2, 3, 4, 5], other: [1]}


# -- the relay as its own process -------------------------------------------------------------


def backlog(service: DealService, deals: int, events_per_deal: int) -> int:
    """Stored events, many per transaction so the backlog is quick to build."""
    for n in range(deals):
        deal = Deal.open(title=f"deal {n}", client_name="Acme Ltd", owner="ann", by=BY)
        for k in range(events_per_deal - 1):
            deal.record_concession(side=Side.CLIENT if k % 2 else Side.PROVIDER, what=f"give {k}", policy=POLICY, by=BY)
        service.save(deal)
    return service.recorder.max_notification_id() or 0


def relay_process(settings: Settings, nats_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = clean_environment()
    env.update(NATS_URL=nats_url, DEALFLOW_POLICY=str(POLICY_FILE), DEALFLOW_RELAY_BATCH="100")
    if settings.database_url:
        env["DEALFLOW_DATABASE_URL"] = settings.database_url
    else:
        env["DEALFLOW_SQLITE_PATH"] = str(settings.sqlite_path)
    with log.open("ab") as out:
        return subprocess.Popen([*DEALFLOW, "relay"], env=env, stdout=out, stderr=subprocess.STDOUT)


def kill_when_partly_published(process: subprocess.Popen[bytes], url: str, total: int) -> int:
    """SIGKILL the relay once some, but not all, of the backlog is in the stream."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        published = count(url)
        if 0 < published < total:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return published
        assert published < total, "the relay published the whole backlog before it could be killed"
        time.sleep(0.005)
    pytest.fail("the relay never started publishing")


def test_killing_the_relay_mid_backlog_and_restarting_it_publishes_every_event_once_in_order(
    service: DealService, settings: Settings, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    total = backlog(service, deals=20, events_per_deal=500)
    first = relay_process(settings, nats_server.url, tmp_path / "relay.log")
    published_before_kill = kill_when_partly_published(first, nats_server.url, total)
    assert 0 < published_before_kill < total

    second = relay_process(settings, nats_server.url, tmp_path / "relay.log")
    try:
        assert wait_for_count(nats_server.url, total, timeout=60) == total, (tmp_path / "relay.log").read_text()[-3000:]
        time.sleep(0.5)
        per_deal = exactly_once_in_deal_order(stream(nats_server.url))
        assert len(per_deal) == 20
        assert all(versions == list(range(1, 501)) for versions in per_deal.values())
    finally:
        second.terminate()
        second.wait(timeout=10)


def test_two_relays_on_one_store_publish_each_event_once_even_when_the_leader_dies(
    service: DealService, settings: Settings, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    total = backlog(service, deals=10, events_per_deal=600)
    log = tmp_path / "relays.log"
    relays = [relay_process(settings, nats_server.url, log) for _ in range(2)]
    try:
        deadline = time.monotonic() + 30
        while count(nats_server.url) == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        # Kill both in turn: whichever leads dies mid-backlog, the other takes over.
        os.kill(relays[0].pid, signal.SIGKILL)
        relays[0].wait()
        replacement = relay_process(settings, nats_server.url, log)
        relays.append(replacement)
        assert wait_for_count(nats_server.url, total, timeout=60) == total, log.read_text()[-3000:]
        time.sleep(0.5)
        per_deal = exactly_once_in_deal_order(stream(nats_server.url))
        assert all(versions == list(range(1, 601)) for versions in per_deal.values())
    finally:
        for relay in relays:
            if relay.poll() is None:
                relay.terminate()
                relay.wait(timeout=10)


def test_a_new_command_wakes_the_relay_in_another_process(
    service: DealService, settings: Settings, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    log = tmp_path / "relay.log"
    relay = relay_process(settings, nats_server.url, log)
    try:
        deadline = time.monotonic() + 30  # started, and found nothing to do (however slow the machine)
        while '"relay leading"' not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.1)
        open_deal(service)
        service.handle("sign_letter_of_intent", open_deal(service), None, ctx())
        assert wait_for_count(nats_server.url, 3, timeout=10) == 3, log.read_text()[-3000:]
    finally:
        relay.terminate()
        relay.wait(timeout=10)


def test_a_refused_signing_is_published_on_the_deals_subject(client: TestClient, nats_server: EmbeddedNats) -> None:
    deal_id = client.post("/deals", json={"title": "T", "client_name": "C", "owner": "o"}, headers=bearer(sub="ann")).json()["id"]
    assert client.post(f"/deals/{deal_id}/contract", headers=bearer(sub="esign")).status_code == 409
    assert wait_for_count(nats_server.url, 2) == 2
    refused = stream(nats_server.url)[-1]
    assert refused.subject == f"deals.events.{deal_id}.SigningRefused"
    assert (refused.event["type"], refused.event["actor"], refused.event["data"]["deal_version"]) == ("SigningRefused", "esign", 1)
    # `version` reads beside the deal's own versions (the log's position, 2, is `attempt` 1 and in the message id).
    assert (refused.event["version"], refused.event["attempt"], refused.headers["Dealflow-Deal-Version"]) == (1, 1, "1")
    assert refused.headers["Nats-Msg-Id"].endswith(":2")
    assert [b["code"] for b in refused.event["data"]["blockers"]][0] == "stage"
    assert refused.headers["ce-subject"] == deal_id
