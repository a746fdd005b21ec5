"""Checkpoints on a real nats-server: the store-wide chain's head anchored outside the database.

An attacker with write access to the database alone can edit an event and recompute every chain
in it, so the store agrees with itself; the checkpoints published before the edit do not.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import nats
import pytest
from nats.js.errors import APIError

from dealflow.deal_lifecycle.adapters.checkpoints import CHECKPOINTS_STREAM, Checkpoint, CheckpointPublisher, CheckpointSettings, compare, load_key, read_checkpoints
from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats
from dealflow.deal_lifecycle.application.audit import Audit
from dealflow.deal_lifecycle.application.integrity import StoredRecord, chain, extend
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.config import Settings
from tests.integration.test_audit import a_deal_with_history, run_sql, state_of, stored_id
from tests.integration.test_tamper import tables
from tests.support import ctx, open_deal


def publish_head(service: DealService, url: str, settings: CheckpointSettings | None = None) -> Checkpoint | None:
    async def once() -> Checkpoint | None:
        nc = await nats.connect(url)
        try:
            publisher = CheckpointPublisher(service.recorder, nc, settings)
            from dealflow.deal_lifecycle.adapters.checkpoints import ensure_checkpoints_stream  # noqa: PLC0415

            await ensure_checkpoints_stream(publisher.js)
            return await publisher.publish_head()
        finally:
            await nc.close()

    return asyncio.run(once())


def checkpoints_of(service: DealService, url: str) -> list[Checkpoint]:
    head = service.recorder.select_chain_head()  # type: ignore[attr-defined]
    return asyncio.run(read_checkpoints([url], head.store_id))


def recompute_every_chain(service: DealService, settings: Settings) -> None:
    """What an attacker with the database alone does after an edit: make every hash agree again."""
    recorder: Any = service.recorder
    names = tables(service, settings)
    placeholder = "%s" if settings.database_url else "?"
    links = []
    for originator_id in recorder.select_originator_ids():
        records = [StoredRecord(e.originator_version, e.topic, e.state) for e in recorder.select_events(UUID(originator_id))]
        links += [(originator_id, link.version, link.previous_hash, link.hash) for link in chain(originator_id, records)]
    by_key = {f"{o}:{v}": h for o, v, _, h in links}
    _, entries, _ = recorder.select_store_chain()
    items = [(e.kind, e.key, by_key.get(e.key, e.content) if e.kind == "event" else e.content) for e in entries]
    rebuilt = extend(0, "0" * 64, items)
    with recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute(f"DELETE FROM {names['hashes']}")
        cursor.executemany(f"INSERT INTO {names['hashes']} VALUES ({', '.join([placeholder] * 4)})", links)
        cursor.execute(f"DELETE FROM {recorder.chain.chain}")
        cursor.executemany(
            f"INSERT INTO {recorder.chain.chain} (seq, kind, key, content, previous_hash, hash) VALUES ({', '.join([placeholder] * 6)})",
            [(e.seq, e.kind, e.key, e.content, e.previous_hash, e.hash) for e in rebuilt],
        )
        cursor.execute(f"UPDATE {recorder.chain.head} SET seq = {placeholder}, hash = {placeholder}", (rebuilt[-1].seq, rebuilt[-1].hash))


def edit_and_recompute(service: DealService, settings: Settings, deal_id: UUID) -> None:
    state = state_of(service, deal_id, 2).replace(b"bob@firm", b"eve@firm")
    run_sql(service, settings, "UPDATE EVENTS SET state = ? WHERE originator_id = ? AND originator_version = 2", (state, stored_id(settings, deal_id)))
    recompute_every_chain(service, settings)


def truncate_and_recompute(service: DealService, settings: Settings, deal_id: UUID) -> None:
    recorder: Any = service.recorder
    run_sql(service, settings, "DELETE FROM EVENTS WHERE originator_id = ? AND originator_version = 5", (stored_id(settings, deal_id),))
    run_sql(service, settings, f"DELETE FROM {recorder.chain.chain} WHERE key = ?", (f"{deal_id}:5",))
    recompute_every_chain(service, settings)


@pytest.mark.parametrize(("tamper", "problem"), [(edit_and_recompute, "rewritten"), (truncate_and_recompute, "truncated")])
def test_a_store_whose_chains_were_recomputed_after_tampering_contradicts_its_checkpoints(
    service: DealService, settings: Settings, nats_server: EmbeddedNats, tamper: Callable[[DealService, Settings, UUID], None], problem: str
) -> None:
    deal_id = a_deal_with_history(service)
    published = publish_head(service, nats_server.url)
    assert published is not None and published.seq == 5
    before = Audit(service).verify_store()
    comparison = compare(checkpoints_of(service, nats_server.url), before.hashes)
    assert (comparison.checkpoints, comparison.latest, comparison.findings) == (1, published, [])

    tamper(service, settings, deal_id)

    after = Audit(service).verify_store()
    assert after.findings == [] and Audit(service).verify(deal_id).intact, "the database alone agrees with itself"
    comparison = compare(checkpoints_of(service, nats_server.url), after.hashes)
    assert [(f.seq, f.problem) for f in comparison.findings] == [(5, problem)]
    assert comparison.latest is None


def test_the_checkpoints_stream_refuses_deletes_and_purges(service: DealService, nats_server: EmbeddedNats) -> None:
    open_deal(service)
    assert publish_head(service, nats_server.url) is not None
    # A second process publishing the same head: JetStream drops the repeat (same Nats-Msg-Id).
    assert publish_head(service, nats_server.url) is not None

    async def try_to_erase() -> list[str]:
        nc = await nats.connect(nats_server.url)
        refused = []
        try:
            js = nc.jetstream()
            info = await js.stream_info(CHECKPOINTS_STREAM)
            assert (info.config.deny_delete, info.config.deny_purge) == (True, True)
            for attempt in (lambda: js.delete_msg(CHECKPOINTS_STREAM, 1), lambda: js.purge_stream(CHECKPOINTS_STREAM)):
                try:
                    await attempt()
                except APIError as e:
                    refused.append(str(e.description))
            return refused
        finally:
            await nc.close()

    assert len(asyncio.run(try_to_erase())) == 2
    assert len(checkpoints_of(service, nats_server.url)) == 1


def test_checkpoints_are_signed_with_a_key_outside_the_database_and_nats(
    service: DealService, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    key_path = tmp_path / "keys" / "checkpoint.key"
    open_deal(service)
    signed = publish_head(service, nats_server.url, CheckpointSettings(key_file=key_path))
    assert signed is not None and signed.mac is not None
    key = load_key(key_path)
    assert key is not None and oct(key_path.stat().st_mode & 0o777) == "0o600"

    # Someone who can publish on NATS, but has not the key, anchors a head of their choosing.
    open_deal(service, title="second")
    forged = publish_head(service, nats_server.url, CheckpointSettings(key_file=tmp_path / "another.key"))
    assert forged is not None
    async def publish_garbage() -> None:
        nc = await nats.connect(nats_server.url)
        try:
            await nc.jetstream().publish(f"deals.checkpoints.{signed.store_id}", b"not json")
        finally:
            await nc.close()

    asyncio.run(publish_garbage())
    hashes = Audit(service).verify_store().hashes
    comparison = compare(checkpoints_of(service, nats_server.url), hashes, key)
    assert comparison.latest == signed, "only the signed checkpoint is relied on"
    assert [(f.seq, f.problem) for f in comparison.findings] == [(0, "malformed"), (2, "unsigned")]


def run_publisher(service: DealService, url: str, settings: CheckpointSettings) -> Callable[[], None]:
    """The publisher as the service runs it, on its own event loop; returns how to stop it."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    ready = threading.Event()

    async def main() -> None:
        nc = await nats.connect(url)
        publisher = CheckpointPublisher(service.recorder, nc, settings)
        service.on_recorded(publisher.wake)
        ready.set()
        try:
            await publisher.run(stop)
        finally:
            service.remove_recorded_listener(publisher.wake)
            await nc.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),))
    thread.start()
    assert ready.wait(10)

    def stopper() -> None:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)

    return stopper


def wait_for_checkpoint(service: DealService, url: str, seq: int, timeout: float = 20) -> list[Checkpoint]:
    deadline = time.monotonic() + timeout
    while True:
        found = checkpoints_of(service, url)
        if any(c.seq >= seq for c in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_the_publisher_anchors_the_head_after_n_events(service: DealService, nats_server: EmbeddedNats) -> None:
    stop = run_publisher(service, nats_server.url, CheckpointSettings(every_events=3, every_seconds=3600))
    try:
        for n in range(4):
            service.handle("sign_letter_of_intent", open_deal(service, title=f"deal {n}"), None, ctx(key=f"k{n}"))  # 2 events and a receipt
        # 12 entries chained, and no timer: at most the last 2 may be waiting for the next checkpoint.
        assert max(c.seq for c in wait_for_checkpoint(service, nats_server.url, 10)) >= 10
    finally:
        stop()


def test_the_publisher_anchors_the_head_every_m_seconds(service: DealService, nats_server: EmbeddedNats) -> None:
    stop = run_publisher(service, nats_server.url, CheckpointSettings(every_events=1000, every_seconds=0.2))
    try:
        open_deal(service)
        assert max(c.seq for c in wait_for_checkpoint(service, nats_server.url, 1)) == 1
        # Written by "another process": no wake-up here, the timer alone anchors it.
        other = DealService(env=service.env, policy=service.policy)
        try:
            open_deal(other)
        finally:
            other.close()
        assert max(c.seq for c in wait_for_checkpoint(service, nats_server.url, 2)) == 2
    finally:
        stop()
