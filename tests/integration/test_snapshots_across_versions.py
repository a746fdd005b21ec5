"""A store written by the code before the command table, the events module and the new layout
(commit 97173ea) is read by today's code: its snapshots still load, and say what the events say.

The fixture holds every kind of Deal event: a signed deal of 166 versions with a snapshot at
version 100 (trusted by the store-wide chain), and a deal that walked away citing a condition
after a refused signing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from uuid import UUID

from dealflow.deal_lifecycle.application.audit import Audit
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.application.views import command_view, deal_view, event_view
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.deal import event_topics
from dealflow.deal_lifecycle.domain.model import Stage
from tests.support import POLICY, ROOT

FIXTURE = ROOT / "tests" / "fixtures" / "store-before-command-table.sqlite3"
SIGNED = UUID("e7d3cf2c-c1bd-455c-abc4-32dd074a0d0a")
WALKED_AWAY = UUID("b7a8910c-9ec9-4162-8ecc-f9f186ceda35")


def test_snapshots_written_before_the_change_load_and_agree_with_the_events(tmp_path: Path) -> None:
    copy = tmp_path / "store.sqlite3"
    shutil.copy(FIXTURE, copy)
    deals = DealService(env=Settings(sqlite_path=copy).eventsourcing_env(), policy=POLICY)
    try:
        snapshots = list(deals.snapshots.get(SIGNED)) if deals.snapshots else []
        assert [s.originator_version for s in snapshots] == [100], "the old snapshot is trusted and used"
        loaded = deals.get_deal(SIGNED)
        replayed = deals.project_from(deals.history(SIGNED))
        assert (loaded.version, loaded.stage) == (166, Stage.CONTRACT_SIGNED)
        # The old snapshot (v1: every concession kept) is upcast to the lean state the events replay to.
        assert {k: v for k, v in vars(loaded).items() if k != "_pending_events"} == {k: v for k, v in vars(replayed).items() if k != "_pending_events"}
        assert command_view(loaded, limits=True) == command_view(replayed, limits=True)
        concessions = deals.standing_concessions(SIGNED)
        assert deal_view(loaded, concessions=concessions, limits=True) == deal_view(replayed, concessions=concessions, limits=True)
        # Every kind of Deal event the code knows is in the fixture, and each still reads.
        types = {event_view(e, limits=True)["type"] for deal_id in (SIGNED, WALKED_AWAY) for e in deals.history(deal_id)}
        assert types == {topic.rsplit(".", 1)[1] for topic in event_topics()}
        walked = deals.get_deal(WALKED_AWAY)
        assert walked.stage == Stage.WALKED_AWAY and walked.walk_away_cited == list(walked.conditions)
        assert [r.deal_version for r in deals.refused_signings(WALKED_AWAY)] == [3]  # opened, term proposed, condition raised
        audit = Audit(deals)
        assert audit.verify(SIGNED).intact and audit.verify(WALKED_AWAY).intact
        assert audit.verify_store().findings == []
    finally:
        deals.close()
