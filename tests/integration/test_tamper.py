"""Tampering that each stream's chain alone misses, caught by the store-wide chain and the snapshot check,
on SQLite and PostgreSQL: an edited snapshot, the last event deleted with its hash, a whole deal deleted,
an edited receipt; and a store whose events were written concurrently chains them without a fork."""

from __future__ import annotations

import threading
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import TestClient

from dealflow.deal_lifecycle.application.audit import Audit
from dealflow.deal_lifecycle.application.service import DealService, StoreDamaged
from dealflow.deal_lifecycle.bootstrap import service_app
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.deal import Deal
from tests.integration.test_audit import a_deal_with_history, run_sql, stored_id
from tests.support import TEST_KEYS, bearer, signed_in, BY, POLICY, ctx, open_deal


def tables(service: DealService, settings: Settings) -> dict[str, str]:
    recorder: Any = service.recorder
    if not settings.database_url:
        return {"hashes": "event_hashes", "receipts": "command_receipts", "snapshots": "stored_snapshots", "summaries": "deal_summaries"}
    prefix = f'"{recorder.datastore.schema}"."{recorder.events_table_name}'
    return {
        "hashes": f'{prefix}_hashes"',
        "receipts": f'{prefix}_command_receipts"',
        "snapshots": f'"{recorder.datastore.schema}"."{recorder.snapshots_table_name}"',
        "summaries": f'{prefix}_deal_summaries"',
    }


def sql(service: DealService, settings: Settings, statement: str, params: tuple[Any, ...] = ()) -> None:
    run_sql(service, settings, statement.format(**tables(service, settings)), params)


def store_problems(service: DealService) -> list[tuple[str, str]]:
    return [(f.problem, f.detail) for f in Audit(service).verify_store().findings]


def test_an_untouched_store_chains_every_event_receipt_and_snapshot(service: DealService) -> None:
    deal_id = a_deal_with_history(service)
    service.handle("sign_letter_of_intent", open_deal(service), None, ctx(key="key-1"))
    service.take_snapshot(deal_id, version=5)
    verdict = Audit(service).verify_store()
    assert verdict.findings == []
    assert verdict.head is not None and verdict.head.seq == verdict.entries == 5 + 2 + 1 + 1  # events, receipt, snapshot


def forge_snapshot(service: DealService, settings: Settings, deal_id: UUID) -> None:
    [snapshot] = service.snapshots.recorder.select_stored(deal_id)  # type: ignore[union-attr]
    forged = snapshot.state.replace(b"Acme payroll", b"Evil payroll")
    assert forged != snapshot.state
    sql(service, settings, "UPDATE {snapshots} SET state = ? WHERE originator_id = ?", (forged, stored_id(settings, deal_id)))


def test_an_edited_snapshot_is_never_served_and_verify_names_it(service: DealService, settings: Settings) -> None:
    deal_id = a_deal_with_history(service)
    service.take_snapshot(deal_id, version=5)
    assert service.get_deal(deal_id).title == "Acme payroll"
    forge_snapshot(service, settings, deal_id)

    assert service.get_deal(deal_id).title == "Acme payroll", "the forged snapshot was served"
    verdict = Audit(service).verify(deal_id)
    assert verdict.finding is not None and (verdict.finding.problem, verdict.finding.version) == ("snapshot forged", 5)
    assert ("altered", f"snapshot {deal_id}:5 differs from what was chained at entry 6") in store_problems(service)


def test_a_forged_snapshot_whose_chain_entry_was_rewritten_too_is_still_found_by_replaying(
    service: DealService, settings: Settings
) -> None:
    deal_id = a_deal_with_history(service)
    service.take_snapshot(deal_id, version=5)
    forge_snapshot(service, settings, deal_id)
    # The attacker also rewrites the snapshot's entry, so the service's cheap check at load passes.
    from dealflow.deal_lifecycle.application.integrity import snapshot_content  # noqa: PLC0415

    [snapshot] = service.snapshots.recorder.select_stored(deal_id)  # type: ignore[union-attr]
    recorder: Any = service.recorder
    run_sql(service, settings, f"UPDATE {recorder.chain.chain} SET content = ? WHERE kind = 'snapshot'", (snapshot_content(snapshot.topic, snapshot.state),))
    verdict = Audit(service).verify(deal_id)
    assert verdict.finding is not None and verdict.finding.problem == "snapshot forged"


def test_the_last_event_deleted_with_its_hash_row_is_detected(service: DealService, settings: Settings) -> None:
    deal_id = a_deal_with_history(service)
    run_sql(service, settings, "DELETE FROM EVENTS WHERE originator_id = ? AND originator_version = 5", (stored_id(settings, deal_id),))
    sql(service, settings, "DELETE FROM {hashes} WHERE originator_id = ? AND originator_version = 5", (str(deal_id),))
    assert Audit(service).verify(deal_id).intact, "the deal's own chain cannot see a clean cut of its tail"
    assert ("removed", f"event {deal_id}:5 was chained at entry 5 and is no longer stored") in store_problems(service)


def test_a_whole_deal_deleted_is_detected(service: DealService, settings: Settings) -> None:
    deal_id = a_deal_with_history(service)
    kept = open_deal(service, title="kept")
    run_sql(service, settings, "DELETE FROM EVENTS WHERE originator_id = ?", (stored_id(settings, deal_id),))
    sql(service, settings, "DELETE FROM {hashes} WHERE originator_id = ?", (str(deal_id),))
    sql(service, settings, "DELETE FROM {summaries} WHERE deal_id = ?", (str(deal_id),))
    assert Audit(service).verify_all() == [], "no stream of the deal is left to check"
    problems = store_problems(service)
    assert [p for p, _ in problems] == ["removed"] * 5
    assert Audit(service).verify(kept).intact


def test_an_edited_receipt_is_detected(service: DealService, settings: Settings) -> None:
    deal_id = open_deal(service)
    other = open_deal(service, title="other")
    service.handle("sign_letter_of_intent", deal_id, None, ctx(key="sign-1"))
    # Point the receipt at another deal: a replay of the key would answer with that deal.
    sql(service, settings, "UPDATE {receipts} SET deal_id = ? WHERE idempotency_key = 'sign-1'", (str(other),))
    assert ("altered", "receipt sign-1 differs from what was chained at entry 4") in store_problems(service)


def test_an_event_missing_in_the_middle_is_a_clear_409_not_a_500(service: DealService, settings: Settings) -> None:
    deal_id = a_deal_with_history(service)
    before = service.get_deal(deal_id).version
    run_sql(service, settings, "DELETE FROM EVENTS WHERE originator_id = ? AND originator_version = 3", (stored_id(settings, deal_id),))
    # A process that loads the deal now (started after the damage, or without it in its cache) reports it.
    loading = DealService(env=settings.eventsourcing_env(), policy=POLICY)
    try:
        with pytest.raises(StoreDamaged):
            loading.get_deal(deal_id)
        with signed_in(TestClient(service_app(settings, service=loading, keys=TEST_KEYS))) as client:
            response = client.get(f"/deals/{deal_id}")
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "store_damaged"
        # The read-model check reports the deal instead of crashing.
        [(reported, detail)] = Audit(loading).read_model_problems()
        assert reported == str(deal_id) and "cannot be replayed" in detail
    finally:
        loading.close()
    # The process that had it in its cache goes on serving the deal as it last read it, whole (never half);
    # verify (which reads the store itself) reports the damage from any process.
    assert service.get_deal(deal_id).version == before
    assert not Audit(service).verify(deal_id).intact


@pytest.mark.postgres
def test_concurrent_transactions_never_fork_the_store_wide_chain(settings: Settings) -> None:
    if not settings.database_url:
        pytest.skip("SQLite has one writer at a time")
    # Two services, as two processes would be: separate connection pools on one database. Deals are
    # saved straight to the store (no retry on conflict): every transaction must wait for the head.
    writers = [DealService(env=settings.eventsourcing_env(), policy=POLICY) for _ in range(2)]
    start, errors = threading.Barrier(8), []

    def work(deals: DealService, n: int) -> None:
        start.wait()
        for i in range(10):
            try:
                deals.save(Deal.open(title=f"deal {n}.{i}", client_name="Acme", owner="ann", by=BY))
            except BaseException as e:  # noqa: BLE001 - collected for the assertion
                errors.append(e)

    try:
        threads = [threading.Thread(target=work, args=(writers[n % 2], n)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        verdict = Audit(writers[1]).verify_store()
        assert verdict.findings == []
        assert verdict.entries == 80  # every event once, in one chain
    finally:
        for deals in writers:
            deals.close()
