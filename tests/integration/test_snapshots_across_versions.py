r"""A store written by the code before the command table, the events module and the new layout
(commit 97173ea) is read by today's code: its snapshots still load, and say what the events say.

The fixture holds every kind of Deal event: a signed deal of 166 versions with a snapshot at
version 100 (trusted by the store-wide chain), and a deal that walked away citing a condition
after a refused signing.

A second store written by that code, store-before-command-table-with-receipts.sqlite3, holds the
idempotency receipts of 14 commands sent with keys (two deals; bodiless, with a body, with a path
id, creating something, with defaults left out, a float, a date, text trimmed); its .json lists
each key, command, deal id, path ids, payload as sent and what came back. A retry sent after the
upgrade must be recognised by today's fingerprint. Both files were written by the script below
(saved as make.py), run by the old code with its services/ importable as `dealflow`:

    git clone /work/main /tmp/oldmain && git -C /tmp/oldmain checkout 97173ea
    mkdir -p /tmp/oldpkg && ln -sfn /tmp/oldmain/services /tmp/oldpkg/dealflow
    cd /tmp/oldmain && PYTHONPATH=/tmp/oldpkg /work/main/.venv/bin/python make.py OUT_DIR

    import json
    import sys
    from pathlib import Path
    from typing import Any
    from uuid import UUID

    from dealflow.deal_lifecycle import commands as c
    from dealflow.deal_lifecycle.application import DealService
    from dealflow.deal_lifecycle.config import Settings
    from dealflow.deal_lifecycle.policy_file import load_policy

    out = Path(sys.argv[1]) / "store-before-command-table-with-receipts"
    store = out.with_name(out.name + ".sqlite3")
    assert not store.exists(), f"{store} exists"
    deals = DealService(env=Settings(sqlite_path=store).eventsourcing_env(), policy=load_policy(Path("deploy/policy.toml")))
    sent: list[dict[str, Any]] = []


    def send(key: str, command: str, deal_id: str | None, model: type[c.Command] | None, payload: dict[str, Any] | None, /, **ids: str) -> Any:
        # One command with an idempotency key, through the old service's public method; note what came back.
        ctx = c.CommandContext(actor="ann@firm", correlation_id=f"corr-{key}", idempotency_key=key)
        body = model.model_validate(payload) if model else None
        args = ([UUID(deal_id)] if deal_id else []) + list(ids.values()) + ([body] if body else [])
        outcome = getattr(deals, command)(*args, ctx)
        assert not outcome.replayed
        sent.append({
            "key": key, "command": command, "deal_id": deal_id, "ids": ids, "payload": payload,
            "outcome": {"deal_id": str(outcome.deal.id), "version": outcome.deal.version, "created_id": outcome.created_id},
        })
        return outcome


    a = str(send("crm-open-41", "open_deal", None, c.OpenDeal, {"title": "Globex payroll", "client_name": "Globex Ltd", "owner": "ann"}).deal.id)
    send("esign-loi-41", "sign_letter_of_intent", a, None, None)
    exp = send("crm-exp-41", "record_expectation", a, c.RecordExpectation, {
        "side": "client", "statement": "monthly payroll report", "metric": "reports delivered", "target": "12 a year", "due": "2030-06-30", "priority": 2,
    }).created_id
    send("ops-exp-41", "decide_expectation", a, c.DecideExpectation, {"agreed": True}, expectation_id=exp)
    send("crm-meet-41", "hold_transition_meeting", a, c.HoldTransitionMeeting, {"participants": [
        {"name": "Sam", "role": "sales"}, {"name": "Olu", "role": "operations"}, {"name": "Cleo", "role": "client"},
    ]})
    promise = send("crm-promise-41", "record_sales_promise", a, c.RecordSalesPromise, {"statement": "  go-live in 30 days  "}).created_id
    send("ops-promise-41", "decide_sales_promise", a, c.DecideSalesPromise, {"accepted": True}, promise_id=promise)
    send("crm-term-41", "propose_term", a, c.ProposeTerm, {"term": "discount_percent", "value": 7.5, "by": "client"})
    send("crm-agree-41", "agree_term", a, c.AgreeTerm, {"value": 7.5}, term="discount_percent")
    send("crm-conc-41", "record_concession", a, c.RecordConcession, {"by": "provider", "what": "free onboarding"})
    send("crm-nn-41", "accept_non_negotiable", a, None, None, name="msa_signed_first")
    send("crm-facts-41", "record_client_facts", a, c.RecordClientFacts, {"annual_value": 120000})
    b = str(send("crm-open-42", "open_deal", None, c.OpenDeal, {"title": "Initech ledger", "client_name": "Initech", "owner": "bob"}).deal.id)
    send("crm-walk-42", "walk_away", b, c.WalkAway, {"reason": "budget cut"})
    deals.close()
    out.with_name(out.name + ".json").write_text(json.dumps(sent, indent=1) + "\n")
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from uuid import UUID

import pytest

from dealflow.deal_lifecycle.application.audit import Audit
from dealflow.deal_lifecycle.application.command_table import BY_NAME
from dealflow.deal_lifecycle.application.service import DealService, IdempotencyKeyReused
from dealflow.deal_lifecycle.application.views import command_view, deal_view, event_view
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.deal import event_topics
from dealflow.deal_lifecycle.domain.model import Stage
from tests.support import POLICY, ROOT, ctx

FIXTURE = ROOT / "tests" / "fixtures" / "store-before-command-table.sqlite3"
# The events that came after the fixture was recorded: the deadlines' (deadlines.py).
SINCE_THE_FIXTURE = {"DeadlineMissed", "ExpectationDueSoon", "ExpectationOverdue", "ExpectationMet", "ExpectationMissed"}
SIGNED = UUID("e7d3cf2c-c1bd-455c-abc4-32dd074a0d0a")
WALKED_AWAY = UUID("b7a8910c-9ec9-4162-8ecc-f9f186ceda35")
WITH_RECEIPTS = ROOT / "tests" / "fixtures" / "store-before-command-table-with-receipts.sqlite3"
SENT_BEFORE = json.loads(WITH_RECEIPTS.with_suffix(".json").read_text())


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
        assert command_view(loaded, limits=True, policy=POLICY) == command_view(replayed, limits=True, policy=POLICY)
        concessions = deals.standing_concessions(SIGNED)
        assert deal_view(loaded, concessions=concessions, limits=True, policy=POLICY) == deal_view(replayed, concessions=concessions, limits=True, policy=POLICY)
        # Every kind of Deal event the fixture's code knew is in it, and each still reads.
        types = {event_view(e, limits=True)["type"] for deal_id in (SIGNED, WALKED_AWAY) for e in deals.history(deal_id)}
        assert types == {topic.rsplit(".", 1)[1] for topic in event_topics()} - SINCE_THE_FIXTURE
        walked = deals.get_deal(WALKED_AWAY)
        assert walked.stage == Stage.WALKED_AWAY and walked.walk_away_cited == list(walked.conditions)
        assert [r.deal_version for r in deals.refused_signings(WALKED_AWAY)] == [3]  # opened, term proposed, condition raised
        audit = Audit(deals)
        assert audit.verify(SIGNED).intact and audit.verify(WALKED_AWAY).intact
        assert audit.verify_store().findings == []
    finally:
        deals.close()


def _resend(deals: DealService, sent: dict, payload: object = None, **change: str):
    """The command as it was sent before the upgrade (or with another payload), through today's one entry."""
    name = change.get("command", sent["command"])
    payload = sent["payload"] if payload is None else payload
    model = BY_NAME[name].body
    body = model.model_validate(payload) if model is not None else None
    deal_id = UUID(sent["deal_id"]) if sent["deal_id"] else None
    return deals.handle(name, deal_id, body, ctx(key=sent["key"]), **sent["ids"])


def test_a_retry_sent_across_the_upgrade_is_recognised_by_its_idempotency_key(tmp_path: Path) -> None:
    copy = tmp_path / "store.sqlite3"
    shutil.copy(WITH_RECEIPTS, copy)
    deals = DealService(env=Settings(sqlite_path=copy).eventsourcing_env(), policy=POLICY)
    try:
        deal_ids = sorted({UUID(s["outcome"]["deal_id"]) for s in SENT_BEFORE})
        stored = {d: [e.originator_version for e in deals.history(d)] for d in deal_ids}
        last = deals.recorder.max_notification_id()
        assert len(SENT_BEFORE) == 14 and len(deal_ids) == 2

        # Each retry gets the first answer back (the same deal, version and created id), nothing run again.
        for sent in SENT_BEFORE:
            outcome = _resend(deals, sent)
            answer = {"deal_id": str(outcome.deal.id), "version": outcome.deal.version, "created_id": outcome.created_id}
            assert (outcome.replayed, answer) == (True, sent["outcome"]), f"{sent['key']} ({sent['command']}) was not recognised"
        assert {d: [e.originator_version for e in deals.history(d)] for d in deal_ids} == stored
        assert deals.recorder.max_notification_id() == last, "a retry stored something"

        # The same key with something else is still refused as a reused key, and stores nothing.
        by_key = {s["key"]: s for s in SENT_BEFORE}
        with pytest.raises(IdempotencyKeyReused):
            _resend(deals, by_key["crm-promise-41"], {"statement": "go-live in 10 days"})
        with pytest.raises(IdempotencyKeyReused):
            _resend(deals, by_key["crm-open-41"], {"title": "Globex payroll", "client_name": "Globex Ltd", "owner": "bob"})
        with pytest.raises(IdempotencyKeyReused):
            _resend(deals, by_key["crm-agree-41"], {"value": 8})
        with pytest.raises(IdempotencyKeyReused):
            _resend(deals, by_key["crm-facts-41"], {"reason": "budget cut"}, command="walk_away")
        assert deals.recorder.max_notification_id() == last

        # A new key is a new command: it runs, on the deal as the old code left it.
        promised = by_key["crm-promise-41"]
        fresh = _resend(deals, {**promised, "key": "crm-promise-43"}, {"statement": "go-live in 45 days"})
        assert (fresh.replayed, fresh.deal.version) == (False, by_key["crm-facts-41"]["outcome"]["version"] + 1)
        assert fresh.created_id not in (None, promised["outcome"]["created_id"])
        assert Audit(deals).verify_store().findings == []
    finally:
        deals.close()
