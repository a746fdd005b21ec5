"""Group commit: concurrent commands saved in one transaction, each with every guarantee it had alone.

On a real SQLite file and a real PostgreSQL (the `settings` fixture runs each test on both).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from eventsourcing.persistence import IntegrityError

from dealflow.deal_lifecycle.adapters.embedded_nats import free_port
from dealflow.deal_lifecycle.adapters.storage.group_commit import Save
from dealflow.deal_lifecycle.application import commands as c
from dealflow.deal_lifecycle.application.audit import Audit
from dealflow.deal_lifecycle.application.read_model import CommandReceipt, summary_of
from dealflow.deal_lifecycle.application.service import DealService, VersionMismatch
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.model import Attribution, Side
from tests.processes import DEALFLOW, clean_environment, stop, wait_until_answering
from tests.support import POLICY, POLICY_FILE, bearer, ctx, open_deal

BY = Attribution("ann@firm", "corr-1")


def grouped(settings: Settings, wait_ms: float = 200.0) -> DealService:
    """A service that waits long for a batch to fill: a test's concurrent commands land in one or two."""
    return DealService(env=replace(settings, group_commit_ms=wait_ms, group_commit_max=64).eventsourcing_env(), policy=POLICY)


def in_parallel(count: int, work: Any) -> list[Any]:
    start, results = threading.Barrier(count), [None] * count

    def run(n: int) -> None:
        start.wait()
        try:
            results[n] = work(n)
        except Exception as error:  # noqa: BLE001 - the test looks at what each got
            results[n] = error

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_commands_on_many_deals_are_saved_together_each_with_its_row_and_receipt(settings: Settings) -> None:
    deals = grouped(settings)
    try:
        deal_ids = [open_deal(deals, title=f"deal {n}") for n in range(16)]
        batches_before = deals.recorder.group.batches  # type: ignore[attr-defined]
        outcomes = in_parallel(16, lambda n: deals.handle(
            "record_concession", deal_ids[n], c.RecordConcession(by=Side.CLIENT, what=f"gift {n}"), ctx(key=f"key-{n}")
        ))
        assert all(o.deal.version == 2 for o in outcomes), outcomes
        batches = deals.recorder.group.batches - batches_before  # type: ignore[attr-defined]
        assert batches < 16, "the 16 saves were not grouped"
        for n, deal_id in enumerate(deal_ids):
            # The events, the read-model row and the receipt of each command are all there, and agree.
            assert deals.get_deal(deal_id).version == 2
            assert next(s for s in deals.list_deals(stage=None, owner=None, limit=50, cursor=None).items if s.deal_id == str(deal_id)).version == 2
            receipt = deals.recorder.select_receipt(f"key-{n}")
            assert receipt is not None and (receipt.deal_id, receipt.version) == (str(deal_id), 2)
        assert Audit(deals).verify_store().findings == []  # the store-wide chain runs through the batch unbroken
    finally:
        deals.close()


def _save(deals: DealService, deal: Deal, receipt: CommandReceipt | None = None) -> Save:
    """What DealService.save hands the recorder for one command: its stored events and the row and receipt beside them."""
    stored = [deals.mapper.to_stored_event(e) for e in deal.collect_events()]
    return Save((stored, {"summaries": [summary_of(deal)], "receipt": receipt}))


def test_a_save_that_conflicts_fails_alone_and_the_rest_of_its_batch_commits(settings: Settings) -> None:
    deals = grouped(settings)
    try:
        taken = deals.get_deal(open_deal(deals, title="taken"))
        raced = deals.get_deal(open_deal(deals, title="raced"))
        deals.handle("record_concession", raced.id, c.RecordConcession(by=Side.CLIENT, what="first"), ctx(key="raced-key"))
        stale = deals.get_deal(taken.id)
        deals.handle("record_concession", taken.id, c.RecordConcession(by=Side.CLIENT, what="won"), ctx())  # version 2 is taken
        stale.record_concession(side=Side.PROVIDER, what="lost", policy=POLICY, by=BY)  # also version 2: a conflict
        fresh = Deal.open(title="fresh", client_name="Acme", owner="ann", by=BY)
        duplicate_key = Deal.open(title="duplicate key", client_name="Acme", owner="ann", by=BY)
        batch = [
            _save(deals, fresh, CommandReceipt("fresh-key", "f", str(fresh.id), 1, None)),
            _save(deals, stale),
            _save(deals, duplicate_key, CommandReceipt("raced-key", "f", str(duplicate_key.id), 1, None)),
        ]
        deals.recorder._write_batch(batch)  # type: ignore[attr-defined]  # noqa: SLF001 - the batch itself, as the committer runs it
        assert [type(s.error) for s in batch] == [type(None), IntegrityError, IntegrityError]
        assert deals.get_deal(fresh.id).title == "fresh" and deals.recorder.select_receipt("fresh-key") is not None
        assert deals.get_deal(taken.id).recent_concessions[-1].what == "won"
        assert list(deals.events.get(duplicate_key.id)) == []  # its events went with its receipt
        assert deals.recorder.select_receipt("raced-key").deal_id == str(raced.id)  # type: ignore[union-attr]
        assert Audit(deals).verify_store().findings == []
    finally:
        deals.close()


def test_a_conflict_in_a_batch_is_retried_alone_through_the_service(settings: Settings) -> None:
    # Another process takes versions while this one's commands are batched: each re-runs on the new version.
    deals, other = grouped(settings), DealService(env=settings.eventsourcing_env(), policy=POLICY)
    try:
        deal_ids = [open_deal(deals, title=f"deal {n}") for n in range(8)]
        contested = deal_ids[0]

        def command(n: int) -> Any:
            if n == 8:
                for k in range(5):
                    other.handle("record_concession", contested, c.RecordConcession(by=Side.CLIENT, what=f"other {k}"), ctx())
                return None
            return deals.handle("record_concession", deal_ids[n], c.RecordConcession(by=Side.CLIENT, what=f"gift {n}"), ctx())

        results = in_parallel(9, command)
        assert not [r for r in results if isinstance(r, Exception)], results
        assert deals.get_deal(contested).version == 1 + 5 + 1
        assert all(deals.get_deal(d).version == 2 for d in deal_ids[1:])
    finally:
        deals.close()
        other.close()


def test_an_if_match_command_that_loses_its_version_in_a_batch_is_refused_alone(settings: Settings) -> None:
    # The If-Match command passes its check at version 1; before its save joins the batch, another
    # process takes version 2. It alone is refused (412's VersionMismatch) with nothing stored; the
    # commands batched with it commit.
    deals, other = grouped(settings), DealService(env=replace(settings, group_commit_ms=0).eventsourcing_env(), policy=POLICY)
    try:
        deal_ids = [open_deal(deals, title=f"deal {n}") for n in range(8)]
        contested = deal_ids[0]
        group = deals.recorder.group  # type: ignore[attr-defined]
        save = group.save

        def save_after_another_process_wrote(work: Any) -> Any:
            stored_events, _ = work
            if stored_events[0].originator_id == contested:
                other.handle("record_concession", contested, c.RecordConcession(by=Side.CLIENT, what="other"), ctx())
            return save(work)

        group.save = save_after_another_process_wrote
        batches_before = group.batches

        def command(n: int) -> Any:
            expected = 1 if n == 0 else None
            return deals.handle("record_concession", deal_ids[n], c.RecordConcession(by=Side.CLIENT, what=f"gift {n}"), ctx(expected=expected))

        results = in_parallel(8, command)
        assert isinstance(results[0], VersionMismatch), results[0]
        assert all(r.deal.version == 2 for r in results[1:]), results[1:]
        assert group.batches - batches_before < 7  # they were batched, and the refusal failed none of them
        contested_deal = deals.get_deal(contested)
        assert (contested_deal.version, contested_deal.recent_concessions[-1].what) == (2, "other")
        assert Audit(deals).verify_store().findings == []
    finally:
        deals.close()
        other.close()


def test_with_a_wait_of_zero_every_command_commits_alone(settings: Settings) -> None:
    deals = DealService(env=replace(settings, group_commit_ms=0).eventsourcing_env(), policy=POLICY)
    try:
        assert getattr(deals.recorder, "group", None) is None
        assert deals.handle("open_deal", None, c.OpenDeal(title="alone", client_name="Acme", owner="ann"), ctx()).deal.version == 1
    finally:
        deals.close()


def test_a_crash_loses_no_command_that_was_answered(tmp_path: Path) -> None:
    # kill -9 in the middle of a stream of concurrent commands: every one that got its 201 is in the store.
    store = tmp_path / "deals.sqlite3"
    env = clean_environment(DEALFLOW_SQLITE_PATH=str(store), DEALFLOW_POLICY=str(POLICY_FILE), DEALFLOW_GROUP_COMMIT_MS="5")
    port, log = free_port(), tmp_path / "serve.log"
    with log.open("a") as out:
        process = subprocess.Popen([*DEALFLOW, "serve", "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    answered: list[str] = []
    try:
        wait_until_answering(url, process, log)
        stop_sending = threading.Event()

        def send(n: int) -> None:
            with httpx.Client(base_url=url, headers=bearer(), timeout=10) as client:
                while not stop_sending.is_set():
                    try:
                        response = client.post("/deals", json={"title": f"t{n}-{uuid4().hex[:6]}", "client_name": "Acme", "owner": "ann"})
                    except httpx.HTTPError:
                        return  # the server is gone
                    if response.status_code == 201:
                        answered.append(response.json()["id"])

        senders = [threading.Thread(target=send, args=(n,)) for n in range(8)]
        for sender in senders:
            sender.start()
        time.sleep(1.5)
        os.kill(process.pid, signal.SIGKILL)
        stop_sending.set()
        for sender in senders:
            sender.join(timeout=20)
    finally:
        if process.poll() is None:
            stop(process)
    assert len(answered) > 20, "too few commands were answered to show anything"
    deals = DealService(env=Settings(sqlite_path=store).eventsourcing_env(), policy=POLICY)
    try:
        missing = [deal_id for deal_id in answered if not list(deals.events.get(UUID(deal_id)))]
        assert missing == []
        assert Audit(deals).verify_store().findings == []
    finally:
        deals.close()


@pytest.mark.parametrize("wait_ms", [0, 2])
def test_one_lone_command_is_never_held_back_by_the_wait(settings: Settings, wait_ms: float) -> None:
    deals = grouped(settings, wait_ms=1000.0 if wait_ms else 0)
    try:
        started = time.monotonic()
        open_deal(deals)
        assert time.monotonic() - started < 0.5  # a 1 s wait is for commands under way, and there are none
    finally:
        deals.close()
