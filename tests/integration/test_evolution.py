"""History stored under an old version of an event still loads and replays under the new code."""

from __future__ import annotations

import shutil
from pathlib import Path
from uuid import UUID

from dealflow.deal_lifecycle.application.audit import Audit
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.application.views import event_view
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.model import Stage
from tests.support import POLICY, ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "store-v1.sqlite3"
WALKED_AWAY = UUID("c007472b-55fa-4014-b7e1-07ad86ac3720")


def test_a_store_with_v1_walked_away_events_replays_under_v2(tmp_path: Path) -> None:
    copy = tmp_path / "store.sqlite3"
    shutil.copy(FIXTURE, copy)
    deals = DealService(env=Settings(sqlite_path=copy).eventsourcing_env(), policy=POLICY)
    try:
        stored = [e for e in deals.recorder.select_events(WALKED_AWAY) if e.topic.endswith("WalkedAway")]
        assert b"cited_conditions" not in stored[0].state and b"class_version" not in stored[0].state, "the fixture holds v1"

        deal = deals.get_deal(WALKED_AWAY)
        assert (deal.stage, deal.walk_away_reason, deal.walk_away_cited) == (
            Stage.WALKED_AWAY,
            "client insists on 120-day payment terms",
            [],
        )
        walked = event_view(deals.history(WALKED_AWAY)[-1], limits=True)
        assert (walked["type"], walked["data"]) == (
            "WalkedAway",
            {"reason": "client insists on 120-day payment terms", "cited_conditions": []},
        )
        assert deals.project_from(deals.history(WALKED_AWAY)).stage == Stage.WALKED_AWAY
        # Upcasting reads old bytes in the new shape; the stored bytes, and so their chain, are untouched.
        assert Audit(deals).verify(WALKED_AWAY).intact
        # Written before the store-wide chain: chained once on first open, as found then, and verified since.
        store = Audit(deals).verify_store()
        assert store.findings == [] and store.head is not None
        assert store.head.backfilled_entries == store.entries > 0 and store.head.backfilled_at is not None
    finally:
        deals.close()
