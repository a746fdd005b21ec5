"""Commands racing on one deal, in one process and across two, on a real SQLite file and PostgreSQL.

Two DealService objects on the same store stand for two processes: each has its own
per-deal locks, so between them only the store's version check keeps order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from dealflow.deal_lifecycle.application import commands as c
from dealflow.deal_lifecycle.application.service import DealService, VersionMismatch
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.attempts import SigningAttempts
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.errors import CommandRefused, SigningRefused
from dealflow.deal_lifecycle.domain.lifecycle import NotAllowedAtStage
from dealflow.deal_lifecycle.domain.model import Stage
from tests.processes import clean_environment, serving
from tests.support import POLICY, POLICY_FILE, ROLES, bearer, ctx, in_transition_meeting, ready_to_sign


@pytest.fixture
def other(settings: Settings) -> Iterator[DealService]:
    """A second service on the same store: another process, as far as the deal is concerned."""
    deals = DealService(env=settings.eventsourcing_env(), policy=POLICY)
    try:
        yield deals
    finally:
        deals.close()


def in_parallel(count: int, send: Callable[[int], Any]) -> list[Any]:
    """Start `count` calls at once (a barrier); return each one's result or exception, by index."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(n: int) -> None:
        barrier.wait()
        try:
            results[n] = send(n)
        except Exception as e:  # noqa: BLE001 - the test inspects every outcome, including unexpected ones
            results[n] = e

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def versions(service: DealService, deal_id: UUID) -> list[int]:
    return [e.originator_version for e in service.history(deal_id)]


def refusals_recorded(service: DealService, deal_id: UUID) -> list[Any]:
    log = service.events.get(SigningAttempts.create_id(str(deal_id)))
    return [e for e in log if isinstance(e, SigningAttempts.SigningRefused)]


def who(n: int, *, expected: int | None = None) -> c.CommandContext:
    return c.CommandContext(actor="crm", correlation_id=f"request-{n}", expected_version=expected, roles=frozenset(ROLES))


@pytest.mark.parametrize("count", [25, 50, 100])
def test_parallel_commands_without_if_match_on_one_deal_are_all_applied(service: DealService, count: int) -> None:
    deal_id = in_transition_meeting(service)
    start = service.get_deal(deal_id).version

    results = in_parallel(
        count, lambda n: service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement=f"promise {n}"), who(n))
    )

    assert [r for r in results if isinstance(r, Exception)] == []
    assert versions(service, deal_id) == list(range(1, start + count + 1))
    assert sorted(p.statement for p in service.get_deal(deal_id).sales_promises.values()) == sorted(
        f"promise {n}" for n in range(count)
    )
    # The per-deal locks are gone once nobody holds or waits for them.
    assert len(service.deal_locks) == 0


def test_parallel_commands_with_a_stale_if_match_are_refused_but_one(service: DealService) -> None:
    deal_id = in_transition_meeting(service)
    version = service.get_deal(deal_id).version

    results = in_parallel(
        25,
        lambda n: service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement=f"promise {n}"), who(n, expected=version)),
    )

    assert sorted(type(r).__name__ for r in results) == ["Outcome"] + ["VersionMismatch"] * 24
    assert versions(service, deal_id)[-1] == version + 1


def race_signing_and_walking_away(services: list[DealService], deal_id: UUID, pairs: int) -> list[Any]:
    def send(n: int) -> Any:
        deals = services[n % len(services)]
        if n % 4 < 2:
            return deals.handle("sign_contract", deal_id, None, who(n))
        return deals.handle("walk_away", deal_id, c.WalkAway(reason="the client went quiet"), who(n))

    return in_parallel(2 * pairs, send)


def assert_every_refused_signing_recorded_once(service: DealService, deal_id: UUID, results: list[Any]) -> None:
    unexpected = [r for r in results if isinstance(r, Exception) and not isinstance(r, CommandRefused)]
    assert unexpected == []
    refused = sorted(f"request-{n}" for n, r in enumerate(results) if isinstance(r, SigningRefused))
    recorded = refusals_recorded(service, deal_id)
    assert sorted(e.correlation_id for e in recorded) == refused
    deal = service.get_deal(deal_id)
    assert deal.stage in (Stage.CONTRACT_SIGNED, Stage.WALKED_AWAY)
    # Exactly one of all those commands changed the deal; the others were refused at its new stage.
    assert len([r for r in results if not isinstance(r, Exception)]) == 1
    assert all(isinstance(r, NotAllowedAtStage) for n, r in enumerate(results) if n % 4 >= 2 and isinstance(r, Exception))
    # Each refusal names the version it was judged at: before or after the winning command.
    assert {e.deal_version for e in recorded} <= {deal.version - 1, deal.version}


@pytest.mark.parametrize("run", range(3))
def test_racing_signings_and_walk_aways_record_every_refused_signing_once(service: DealService, run: int) -> None:
    deal_id = ready_to_sign(service)
    results = race_signing_and_walking_away([service], deal_id, pairs=25)
    assert_every_refused_signing_recorded_once(service, deal_id, results)


def test_racing_signings_across_two_processes_record_every_refused_signing_once(
    service: DealService, other: DealService
) -> None:
    deal_id = ready_to_sign(service)
    results = race_signing_and_walking_away([service, other], deal_id, pairs=25)
    assert_every_refused_signing_recorded_once(service, deal_id, results)


def test_a_signing_refused_on_a_walked_away_deal_is_recorded(service: DealService) -> None:
    deal_id = ready_to_sign(service)
    service.handle("walk_away", deal_id, c.WalkAway(reason="the client went quiet"), ctx())
    with pytest.raises(SigningRefused) as refused:
        service.handle("sign_contract", deal_id, None, who(1))
    assert [b.code for b in refused.value.blockers] == ["stage"]
    [recorded] = refusals_recorded(service, deal_id)
    assert (recorded.correlation_id, recorded.deal_version, recorded.blockers[0]["code"]) == (
        "request-1",
        service.get_deal(deal_id).version,
        "stage",
    )


def test_parallel_commands_from_two_processes_are_all_applied(service: DealService, other: DealService) -> None:
    deal_id = in_transition_meeting(service)
    start = service.get_deal(deal_id).version

    results = in_parallel(
        50,
        lambda n: (service, other)[n % 2].handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement=f"promise {n}"), who(n)),
    )

    assert [r for r in results if isinstance(r, Exception)] == []
    assert versions(service, deal_id) == list(range(1, start + 51))
    assert len(other.get_deal(deal_id).sales_promises) == 50


def test_a_deal_kept_loaded_is_brought_up_to_date_with_another_process_s_commands(service: DealService, other: DealService) -> None:
    deal_id = in_transition_meeting(service)
    kept = service.get_deal(deal_id)  # now in this process's cache
    other.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement="from the other process"), ctx())

    seen = service.get_deal(deal_id)
    assert seen.version == kept.version + 1
    assert [p.statement for p in seen.sales_promises.values()] == ["from the other process"]
    # and this process's next command lands on that version, without losing a race first
    outcome = service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement="from this one"), ctx(expected=seen.version))
    assert outcome.deal.version == seen.version + 1


def test_a_refused_command_leaves_the_kept_deal_as_it_was(service: DealService) -> None:
    deal_id = in_transition_meeting(service)
    before = service.get_deal(deal_id)
    with pytest.raises(SigningRefused):
        service.handle("sign_contract", deal_id, None, ctx())  # refused: nothing agreed yet
    after = service.get_deal(deal_id)
    assert (after.version, after.stage) == (before.version, before.stage)
    assert after is not before  # each use gets its own copy of the kept deal


def interleave_other_writer(
    monkeypatch: pytest.MonkeyPatch, service: DealService, write: Callable[[], object]
) -> list[int]:
    """Make another writer take the deal's next version right after `service` loads it, once."""
    loads: list[int] = []
    load = service.get_deal

    def get_deal(deal_id: UUID, **kwargs: Any) -> Deal:
        deal = load(deal_id, **kwargs)
        loads.append(deal.version)
        if len(loads) == 1:
            write()
        return deal

    monkeypatch.setattr(service, "get_deal", get_deal)
    return loads


def test_a_conflict_with_another_process_is_retried_on_the_new_version(
    service: DealService, other: DealService, monkeypatch: pytest.MonkeyPatch
) -> None:
    deal_id = in_transition_meeting(service)
    start = service.get_deal(deal_id).version
    loads = interleave_other_writer(
        monkeypatch,
        service,
        lambda: other.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement="from the other process"), ctx()),
    )

    outcome = service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement="from this one"), ctx())

    assert loads == [start, start + 1]  # lost the race once, then re-run on the new version
    assert outcome.deal.version == start + 2
    assert versions(other, deal_id) == list(range(1, start + 3))
    assert sorted(p.statement for p in other.get_deal(deal_id).sales_promises.values()) == [
        "from the other process",
        "from this one",
    ]


def test_a_conflict_with_another_process_under_if_match_is_refused_and_stores_nothing(
    service: DealService, other: DealService, monkeypatch: pytest.MonkeyPatch
) -> None:
    deal_id = in_transition_meeting(service)
    start = service.get_deal(deal_id).version
    interleave_other_writer(
        monkeypatch,
        service,
        lambda: other.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement="from the other process"), ctx()),
    )

    with pytest.raises(VersionMismatch):
        service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement="from this one"), ctx(expected=start))

    assert versions(other, deal_id) == list(range(1, start + 2))
    assert [p.statement for p in other.get_deal(deal_id).sales_promises.values()] == ["from the other process"]


def test_two_processes_starting_the_log_of_refused_signings_at_once_both_record(
    service: DealService, other: DealService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log is created by the first refusal: two processes may both try to create it."""
    deal_id = in_transition_meeting(service)
    save = service.save
    interleaved: list[str] = []

    def save_after_the_other_process(*objs: Any, **kwargs: Any) -> Any:
        if not interleaved and any(isinstance(o, SigningAttempts) for o in objs):
            with pytest.raises(SigningRefused):
                other.handle("sign_contract", deal_id, None, who(2))
            interleaved.append("other recorded first")
        return save(*objs, **kwargs)

    monkeypatch.setattr(service, "save", save_after_the_other_process)
    with pytest.raises(SigningRefused):
        service.handle("sign_contract", deal_id, None, who(1))

    assert interleaved == ["other recorded first"]
    assert [e.correlation_id for e in refusals_recorded(other, deal_id)] == ["request-2", "request-1"]


@pytest.fixture
def two_servers(settings: Settings, tmp_path: Path) -> Iterator[list[str]]:
    """Two `dealflow serve` processes on one store, as a deployment with two instances runs them."""
    env = clean_environment(DEALFLOW_POLICY=str(POLICY_FILE))
    if settings.database_url:
        env["DEALFLOW_DATABASE_URL"] = settings.database_url
    else:
        env["DEALFLOW_SQLITE_PATH"] = str(settings.sqlite_path)
    with ExitStack() as running:
        yield [running.enter_context(serving(env, tmp_path / f"serve-{n}.log")) for n in range(2)]


def test_parallel_requests_to_two_service_processes_are_all_applied(two_servers: list[str]) -> None:
    first, second = two_servers
    actor = bearer(sub="crm")
    deal_id = httpx.post(f"{first}/deals", json={"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"}, headers=actor).json()["id"]
    assert httpx.post(f"{second}/deals/{deal_id}/letter-of-intent", headers=actor).status_code == 200
    meeting = {"participants": [{"name": "Sam", "role": "sales"}]}
    assert httpx.post(f"{first}/deals/{deal_id}/transition-meeting", json=meeting, headers=actor).status_code == 200
    start = httpx.get(f"{second}/deals/{deal_id}", headers=bearer()).json()["version"]

    def send(n: int) -> int:
        url = two_servers[n % 2]
        body = {"statement": f"promise {n}"}
        return httpx.post(f"{url}/deals/{deal_id}/promises", json=body, headers=actor, timeout=60).status_code

    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(send, range(50)))

    assert statuses == [201] * 50
    deal = httpx.get(f"{first}/deals/{deal_id}", headers=bearer()).json()
    assert deal["version"] == start + 50
    stale = httpx.post(
        f"{second}/deals/{deal_id}/promises", json={"statement": "late"}, headers={**actor, "If-Match": str(start)}
    )
    assert (stale.status_code, stale.json()["code"]) == (412, "version_mismatch")


def test_processes_opening_a_new_store_at_once_all_start(settings: Settings) -> None:
    """Workers and instances start together on a new database: each creates the tables if they are not there."""
    for _ in range(3):
        with _a_new_store(settings) as fresh:
            opened = in_parallel(6, lambda n: DealService(env=fresh.eventsourcing_env(), policy=POLICY))
            try:
                assert [type(o).__name__ for o in opened] == ["DealService"] * 6, [repr(o) for o in opened if isinstance(o, Exception)]
            finally:
                for o in opened:
                    if isinstance(o, DealService):
                        o.close()


@contextmanager
def _a_new_store(settings: Settings) -> Iterator[Settings]:
    if settings.database_url is None:
        yield replace(settings, sqlite_path=settings.sqlite_path.with_name(f"new-{uuid4().hex[:8]}.sqlite3"))
        return
    import psycopg  # noqa: PLC0415

    schema = f"{settings.database_url.rsplit('schema=', 1)[1]}_{uuid4().hex[:6]}"
    base = settings.database_url.split("?", 1)[0]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield replace(settings, database_url=f"{base}?schema={schema}")
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
