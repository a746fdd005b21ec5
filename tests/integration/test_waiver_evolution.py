"""A waiver stored as v1 (condition id and reason only) still loads under v2, with the condition's
kind, subject and evidence null, and the deal replays as before."""

from __future__ import annotations

import json
from pathlib import Path

from eventsourcing.persistence import StoredEvent

from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.application.views import event_view
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.deal import APPROVER
from dealflow.deal_lifecycle.domain.model import ConditionStatus, Side
from dealflow.notifier.schemas import EventSchemas
from tests.support import BY, POLICY, domain_deal_in_meeting


def test_a_v1_waiver_reads_as_v2_with_the_condition_unnamed(tmp_path: Path) -> None:
    deals = DealService(env=Settings(sqlite_path=tmp_path / "deals.sqlite3").eventsourcing_env(), policy=POLICY)
    try:
        deal = domain_deal_in_meeting()
        deal.propose_term(term="payment_terms_days", value=90, side=Side.CLIENT, policy=POLICY, by=BY)
        [condition_id] = list(deal.conditions)
        deal.waive_condition(condition_id, reason="strategic logo", role=APPROVER, by=BY)
        events = deal.collect_events()
        stored = deals.mapper.to_stored_event(events[-1])
        assert deals.mapper.compressor is None and deals.mapper.cipher is None, "the test rewrites plain JSON state"

        # The bytes a v1 waiver was stored as: no class_version, no kind/subject/evidence.
        state = json.loads(stored.state)
        for field in ("class_version", "kind", "subject", "evidence"):
            state.pop(field)
        v1 = StoredEvent(stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode())
        waived = deals.mapper.to_domain_event(v1)

        shown = event_view(waived)
        assert {k: shown["data"][k] for k in ("condition_id", "reason", "kind", "subject", "evidence")} == {
            "condition_id": condition_id, "reason": "strategic logo", "kind": None, "subject": None, "evidence": None,
        }  # fmt: skip
        EventSchemas().check(shown, 2)
        replayed = deals.project_from([*events[:-1], waived])
        assert replayed.conditions[condition_id].status is ConditionStatus.WAIVED
    finally:
        deals.close()
