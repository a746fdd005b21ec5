"""The embedded NATS of `dealflow up`, secured: only its own users connect, each to its own subjects.
A real nats-server with the generated configuration, the deal service on its own credentials."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import nats
import nkeys
import pytest
from litestar.testing import TestClient
from nats.js.api import DeliverPolicy

from dealflow.deal_lifecycle.adapters.bus import EVENTS_STREAM
from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.bootstrap import service_app
from dealflow.deal_lifecycle.config import Settings
from dealflow.nats_connection import Credentials
from tests.nats_support import request, wait_for_responder
from tests.support import TEST_KEYS, bearer, signed_in

DEAL = {"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"}


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[EmbeddedNats]:
    with EmbeddedNats(tmp_path / "nats", secured=True) as server:
        yield server


@pytest.fixture
def client(service: DealService, settings: Settings, secured: EmbeddedNats) -> Iterator[TestClient]:
    as_deal_service = replace(settings, nats_url=secured.url, nats_credentials=Credentials.from_env(secured.environment("deal-service")))
    with signed_in(TestClient(service_app(as_deal_service, service=service, keys=TEST_KEYS)), "emitter") as test_client:
        asyncio.run(_until_answering(secured))
        yield test_client


async def _connect(server: EmbeddedNats, user: str | None, errors: list[str] | None = None) -> nats.NATS:
    async def collect(error: Exception) -> None:
        if errors is not None:
            errors.append(str(error))

    options = Credentials.from_env(server.environment(user)).options() if user else {}
    return await nats.connect(server.url, allow_reconnect=False, connect_timeout=2, error_cb=collect, **options)


async def _until_answering(server: EmbeddedNats) -> None:
    nc = await _connect(server, "client")
    try:
        for _ in range(100):
            try:
                await nc.request("deals.commands.no_such_command", b"{}", timeout=1, headers=bearer())
                return
            except nats.errors.NoRespondersError:
                await asyncio.sleep(0.05)
        raise AssertionError("the deal service never answered on the secured NATS")
    finally:
        await nc.close()


def test_the_configuration_holds_public_keys_only_and_the_seeds_are_private(secured: EmbeddedNats) -> None:
    config = (secured.store_dir / "nats-server.conf").read_text()
    for user in ("deal-service", "notifier", "watcher", "auditor", "client"):
        seed = secured.credentials(user).read_bytes().strip()
        assert seed.startswith(b"SU") and seed.decode() not in config
        assert nkeys.from_seed(seed).public_key.decode() in config
        assert os.stat(secured.credentials(user)).st_mode & 0o777 == 0o600


def test_an_unknown_user_cannot_connect(secured: EmbeddedNats, tmp_path: Path) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        asyncio.run(_connect(secured, None))
    stranger = tmp_path / "stranger.nk"
    stranger.write_bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))

    async def as_stranger() -> None:
        await nats.connect(secured.url, allow_reconnect=False, connect_timeout=2, **Credentials.seed_file(stranger).options())

    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        asyncio.run(as_stranger())


def test_commands_come_only_from_users_allowed_to_send_them(client: TestClient, secured: EmbeddedNats, service: DealService) -> None:
    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for user in ("notifier", "watcher", "auditor"):
            errors: list[str] = []
            nc = await _connect(secured, user, errors)
            try:
                with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
                    await nc.request("deals.commands.open_deal", json.dumps(DEAL).encode(), timeout=1, headers=bearer())
                await asyncio.sleep(0.1)
            finally:
                await nc.close()
            seen[user] = errors
        nc = await _connect(secured, "client")
        try:
            reply = await nc.request("deals.commands.open_deal", json.dumps(DEAL).encode(), timeout=10, headers=bearer())
            seen["client"] = json.loads(reply.data)
        finally:
            await nc.close()
        return seen

    before = service.recorder.max_notification_id() or 0
    seen = asyncio.run(scenario())
    for user in ("notifier", "watcher", "auditor"):
        assert any('permissions violation for publish to "deals.commands.open_deal"' in e for e in seen[user]), (user, seen[user])
    # Only the client's command was carried out (and the relay published its event with the deal service's credentials).
    assert seen["client"]["deal"]["stage"] == "prospect"
    assert (service.recorder.max_notification_id() or 0) == before + 1


def test_a_watcher_reads_the_events_stream_and_nothing_else(client: TestClient, secured: EmbeddedNats) -> None:
    deal_id = client.post("/deals", json=DEAL).json()["id"]

    async def watch() -> tuple[dict[str, Any], list[str]]:
        errors: list[str] = []
        nc = await _connect(secured, "watcher", errors)
        try:
            js = nc.jetstream()
            subscription = await js.subscribe(f"deals.events.{deal_id}.*", stream=EVENTS_STREAM, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
            event = json.loads((await subscription.next_msg(timeout=10)).data)
            await nc.publish("deals.events.forged.DealOpened", b"{}")
            await nc.publish("deals.alerts.dead", b"{}")
            await nc.flush()
            await asyncio.sleep(0.2)
            return event, errors
        finally:
            await nc.close()

    event, errors = asyncio.run(watch())
    assert (event["type"], event["deal_id"]) == ("DealOpened", deal_id)
    assert sorted(e.lower() for e in errors if "permissions violation for publish" in e) == [
        'nats: permissions violation for publish to "deals.alerts.dead"',
        'nats: permissions violation for publish to "deals.events.forged.dealopened"',
    ]


async def _forge_replies(url: str, options: dict[str, Any]) -> None:
    sender = await nats.connect(url, allow_reconnect=False, connect_timeout=2, **options)
    try:
        for reply in ("deals.events.forged.DealOpened", "deals.checkpoints.forged"):
            await sender.publish("deals.commands.open_deal", json.dumps(DEAL).encode(), reply=reply, headers=bearer())
        await sender.flush()
        await asyncio.sleep(0.5)
    finally:
        await sender.close()


async def _forged_subjects(url: str, options: dict[str, Any]) -> dict[str, int]:
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2, **options)
    try:
        info = await nc.jetstream().stream_info(EVENTS_STREAM, subjects_filter="deals.events.forged.>")
        return dict(info.state.subjects or {})
    finally:
        await nc.close()


def test_a_reply_subject_naming_a_deal_subject_gets_no_answer_there(client: TestClient, secured: EmbeddedNats) -> None:
    # From another system (CLIENTS): the server maps reply subjects across accounts.
    asyncio.run(_forge_replies(secured.url, Credentials.from_env(secured.environment("client")).options()))
    assert asyncio.run(_forged_subjects(secured.url, Credentials.from_env(secured.environment("deal-service")).options())) == {}


def test_the_command_responder_answers_only_on_an_inbox(service: DealService, settings: Settings, nats_server: EmbeddedNats) -> None:
    # On a NATS without accounts (yours, say), the responder itself refuses: it answers as a user that may publish deal events.
    with signed_in(TestClient(service_app(replace(settings, nats_url=nats_server.url), service=service, keys=TEST_KEYS))):
        wait_for_responder(nats_server.url)
        asyncio.run(_forge_replies(nats_server.url, {}))
        assert asyncio.run(_forged_subjects(nats_server.url, {})) == {}
        # ... and still answers a request on its inbox.
        assert request(nats_server.url, "open_deal", DEAL)[1]["deal"]["stage"] == "prospect"


def test_no_part_reads_another_parts_replies_or_makes_streams_or_deletes_consumers(client: TestClient, secured: EmbeddedNats) -> None:
    async def scenario() -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {}
        for user in ("watcher", "notifier", "auditor"):
            errors: list[str] = []
            nc = await _connect(secured, user, errors)
            try:
                await nc.subscribe("_INBOX_deal_service.>")
                await nc.subscribe("_INBOX.>")
                js = nc.jetstream(timeout=1)
                for attempt in (
                    js.add_stream(name="DEALS_ALERTS", subjects=["deals.commands.>"]),
                    js.delete_consumer("DEALS_EVENTS", "notifier"),
                    js.purge_stream("DEALS_EVENTS"),
                ):
                    with pytest.raises(Exception):  # noqa: B017, PT011 - refused: timeout or a JetStream error
                        await attempt
                await nc.flush()
                await asyncio.sleep(0.2)
            finally:
                await nc.close()
            seen[user] = errors
        return seen

    for user, errors in asyncio.run(scenario()).items():
        assert sum("permissions violation for subscription" in e for e in errors) == 2, (user, errors)
        assert sum("permissions violation for publish" in e for e in errors) == 3, (user, errors)


def test_each_named_system_reads_only_its_own_replies(service: DealService, settings: Settings, tmp_path: Path) -> None:
    # The shared `client` user is one identity for whoever holds its seed; a system given a user of its
    # own (dealflow up --nats-client crm) cannot read another's answers, an admin's among them.
    with EmbeddedNats(tmp_path / "named", secured=True, clients=("crm", "esign")) as server:
        as_deal_service = replace(settings, nats_url=server.url, nats_credentials=Credentials.from_env(server.environment("deal-service")))
        with signed_in(TestClient(service_app(as_deal_service, service=service, keys=TEST_KEYS)), "emitter"):
            asyncio.run(_until_answering(server))

            async def scenario() -> tuple[dict[str, Any], list[str], list[str]]:
                spy_errors: list[str] = []
                spy = await _connect(server, "client-esign", spy_errors)
                overheard: list[bytes] = []

                async def heard(msg: Any) -> None:
                    overheard.append(msg.data)

                await spy.subscribe("_INBOX_client_crm.>", cb=heard)
                await spy.subscribe("_INBOX.>", cb=heard)
                await spy.flush()
                crm = await _connect(server, "client-crm")
                try:
                    reply = await crm.request("deals.commands.open_deal", json.dumps(DEAL).encode(), timeout=10, headers=bearer("admin", sub="crm"))
                    await asyncio.sleep(0.3)
                finally:
                    await crm.close()
                    await spy.close()
                return json.loads(reply.data), spy_errors, [d.decode() for d in overheard]

            answer, spy_errors, overheard = asyncio.run(scenario())
    assert answer.get("id"), answer  # crm's command was answered, on its own inbox
    assert overheard == []
    assert sum("permissions violation for subscription" in e for e in spy_errors) == 2, spy_errors
    assert server.environment("client-crm")["NATS_INBOX_PREFIX"] == "_INBOX_client_crm"


def test_a_named_system_s_name_is_checked(tmp_path: Path) -> None:
    for bad in ("", "CRM", "crm.esign", "x" * 41, "../crm"):
        with pytest.raises(ValueError, match="a NATS client's name"):
            EmbeddedNats(tmp_path / "bad", secured=True, clients=(bad,))
