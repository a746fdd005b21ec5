"""A waiver stored as v1 (condition id and reason only) or v2 (no role) still loads under v3, with what
it did not record null, and the deal replays as before."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eventsourcing.persistence import StoredEvent

from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.application.views import event_view
from dealflow.deal_lifecycle.config import Settings

from dealflow.deal_lifecycle.domain.model import ConditionStatus, Side
from dealflow.notifier.schemas import EventSchemas
from tests.support import BY, POLICY, domain_deal_in_meeting


def a_waiver(deals: DealService) -> tuple[str, list[Any], StoredEvent]:
    """A deal whose term condition was waived: the condition's id, its events, and the waiver as stored now."""
    deal = domain_deal_in_meeting()
    deal.propose_term(term="payment_terms_days", value=90, side=Side.CLIENT, policy=POLICY, by=BY)
    [condition_id] = list(deal.conditions)
    deal.waive_condition(condition_id, reason="strategic logo", role="approver", by=BY)
    events = deal.collect_events()
    assert deals.mapper.compressor is None and deals.mapper.cipher is None, "the test rewrites plain JSON state"
    return condition_id, events, deals.mapper.to_stored_event(events[-1])


def test_a_v1_waiver_reads_as_v3_with_the_condition_unnamed_and_no_role(tmp_path: Path) -> None:
    deals = DealService(env=Settings(sqlite_path=tmp_path / "deals.sqlite3").eventsourcing_env(), policy=POLICY)
    try:
        condition_id, events, stored = a_waiver(deals)

        # The bytes a v1 waiver was stored as: no class_version, no kind/subject/evidence, no role.
        state = json.loads(stored.state)
        for field in ("class_version", "kind", "subject", "evidence", "role", "on_behalf_of"):
            state.pop(field)
        v1 = StoredEvent(stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode())
        waived = deals.mapper.to_domain_event(v1)

        shown = event_view(waived, limits=True)
        assert {k: shown["data"][k] for k in ("condition_id", "reason", "kind", "subject", "evidence", "role")} == {
            "condition_id": condition_id, "reason": "strategic logo", "kind": None, "subject": None, "evidence": None, "role": None,
        }  # fmt: skip
        assert shown["on_behalf_of"] is None
        EventSchemas().check(shown, 3)
        replayed = deals.project_from([*events[:-1], waived])
        assert replayed.conditions[condition_id].status is ConditionStatus.WAIVED
    finally:
        deals.close()


def test_a_v2_waiver_reads_as_v3_with_no_role_recorded(tmp_path: Path) -> None:
    # Before v3 the role was what the caller claimed in a header, never verified: none is read into it.
    deals = DealService(env=Settings(sqlite_path=tmp_path / "deals.sqlite3").eventsourcing_env(), policy=POLICY)
    try:
        _, _, stored = a_waiver(deals)
        state = json.loads(stored.state)
        state["class_version"] = 2
        state.pop("role")
        shown = event_view(deals.mapper.to_domain_event(StoredEvent(stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode())), limits=True)
        assert (shown["data"]["kind"], shown["data"]["role"]) == ("term_beyond_limit", None)
        EventSchemas().check(shown, 3)
    finally:
        deals.close()
