"""Auditors: the hash chain catches an edited, removed or reordered stored event, on SQLite and PostgreSQL;
export allows an independent check; as-of reads; the read model checks against the log."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest

from dealflow.deal_lifecycle.application import commands as c
from dealflow.deal_lifecycle.application.audit import Audit
from dealflow.deal_lifecycle.application.integrity import verify_export
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.model import Side, Stage
from tests.support import ctx, expectation, open_deal


def a_deal_with_history(service: DealService) -> UUID:
    deal_id = open_deal(service)
    service.handle("sign_letter_of_intent", deal_id, None, ctx("bob@firm"))
    service.handle("record_expectation", deal_id, expectation(Side.CLIENT), ctx())
    service.handle("record_expectation", deal_id, expectation(Side.PROVIDER, "data by the 5th"), ctx())
    service.handle("walk_away", deal_id, c.WalkAway(reason="client wants 120-day terms"), ctx())
    return deal_id


def run_sql(service: DealService, settings: Settings, statement: str, params: tuple[Any, ...]) -> None:
    """Tamper with the store directly, as an attacker with database access would."""
    if settings.database_url:
        table = f'"{service.recorder.datastore.schema}"."{service.recorder.events_table_name}"'
        with service.recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(statement.replace("EVENTS", table).replace("?", "%s"), params)
    else:
        with service.recorder.datastore.transaction(commit=True) as cursor:
            cursor.execute(statement.replace("EVENTS", service.recorder.events_table_name), params)


def stored_id(settings: Settings, deal_id: UUID) -> Any:
    return deal_id if settings.database_url else deal_id.hex


def state_of(service: DealService, deal_id: UUID, version: int) -> bytes:
    [stored] = [e for e in service.recorder.select_events(deal_id) if e.originator_version == version]
    return stored.state


def test_an_untouched_store_verifies(service: DealService) -> None:
    deal_id = a_deal_with_history(service)
    verdict = Audit(service).verify(deal_id)
    assert (verdict.intact, verdict.events) == (True, 5)
    assert Audit(service).verify_all() == []


def edit(service: DealService, settings: Settings, deal_id: UUID) -> None:
    state = state_of(service, deal_id, 2).replace(b"bob@firm", b"eve@firm")
    run_sql(service, settings, "UPDATE EVENTS SET state = ? WHERE originator_id = ? AND originator_version = 2", (state, stored_id(settings, deal_id)))


def delete(service: DealService, settings: Settings, deal_id: UUID) -> None:
    run_sql(service, settings, "DELETE FROM EVENTS WHERE originator_id = ? AND originator_version = 2", (stored_id(settings, deal_id),))


def delete_last(service: DealService, settings: Settings, deal_id: UUID) -> None:
    run_sql(service, settings, "DELETE FROM EVENTS WHERE originator_id = ? AND originator_version = 5", (stored_id(settings, deal_id),))


def swap(service: DealService, settings: Settings, deal_id: UUID) -> None:
    third, fourth = state_of(service, deal_id, 3), state_of(service, deal_id, 4)
    for version, state in ((3, fourth), (4, third)):
        run_sql(service, settings, "UPDATE EVENTS SET state = ? WHERE originator_id = ? AND originator_version = ?", (state, stored_id(settings, deal_id), version))


@pytest.mark.parametrize(
    ("tamper", "version", "problem"),
    [(edit, 2, "altered"), (delete, 2, "removed"), (delete_last, 5, "removed"), (swap, 3, "reordered")],
)
def test_tampering_with_one_stored_event_is_detected_and_the_version_named(
    service: DealService, settings: Settings, tamper: Callable[[DealService, Settings, UUID], None], version: int, problem: str
) -> None:
    deal_id = a_deal_with_history(service)
    untouched = open_deal(service, title="untouched")
    tamper(service, settings, deal_id)
    verdict = Audit(service).verify(deal_id)
    assert verdict.finding is not None
    assert (verdict.finding.version, verdict.finding.problem) == (version, problem), verdict.finding
    assert [v.originator_id for v in Audit(service).verify_all()] == [str(deal_id)]
    assert Audit(service).verify(untouched).intact


def test_an_export_rechecks_independently_and_catches_an_edit(service: DealService) -> None:
    deal_id = a_deal_with_history(service)
    lines = [json.loads(json.dumps(entry)) for entry in Audit(service).export(deal_id)]
    assert [line["version"] for line in lines] == [1, 2, 3, 4, 5]
    assert {"hash", "previous_hash", "stored_b64", "topic", "type", "actor", "data"} <= set(lines[0])
    assert verify_export(lines) is None
    lines[3]["stored_b64"] = lines[2]["stored_b64"]
    finding = verify_export(lines)
    assert finding is not None and finding.version == 4


def test_the_deal_as_of_a_moment_shows_the_blockers_of_that_moment(service: DealService) -> None:
    deal_id = a_deal_with_history(service)
    events = service.history(deal_id)
    then = service.get_deal(deal_id, as_of=events[2].timestamp)
    assert (then.version, then.stage) == (3, Stage.LETTER_OF_INTENT)
    assert [b.code for b in then.blockers] == ["stage", "missing_provider_expectation", "expectation_not_agreed", "attendance_incomplete"]
    assert [b.code for b in service.get_deal(deal_id, version=4).blockers].count("expectation_not_agreed") == 2


def test_the_read_model_checks_against_the_log(service: DealService, settings: Settings) -> None:
    deal_id = a_deal_with_history(service)
    assert Audit(service).read_model_differences() == []
    summary = service.list_deals(stage=None, owner=None, limit=1, cursor=None).items[0]
    from dataclasses import replace

    service.recorder.replace_summaries([replace(summary, stage="contract_signed")])
    assert Audit(service).read_model_differences() == [str(deal_id)]
    service.rebuild_read_model()
    assert Audit(service).read_model_differences() == []
