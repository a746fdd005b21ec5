"""What an alert says, from events the domain really records: a waiver names its condition and who
waived it, and a refused signing of a closed deal does not advise clearing blockers."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from dealflow.deal_lifecycle.application.views import event_view
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.errors import SigningRefused
from dealflow.deal_lifecycle.domain.model import Side
from dealflow.notifier.alerts import DealContext, compose, describe
from dealflow.notifier.rules import Target
from dealflow.notifier.schemas import EventSchemas
from tests.support import BY, POLICY, domain_deal_in_meeting
from tests.unit.test_deal import signable

APPROVER_BY = replace(BY, actor="vic@firm")


def context(deal: Deal) -> DealContext:
    return DealContext(str(deal.id), deal.title, deal.client_name, deal.owner)


def test_a_waiver_alert_names_the_condition_its_evidence_who_waived_it_and_why() -> None:
    deal = domain_deal_in_meeting()
    deal.propose_term(term="payment_terms_days", value=90, side=Side.CLIENT, policy=POLICY, by=BY)
    [condition_id] = list(deal.conditions)
    deal.collect_events()
    deal.waive_condition(condition_id, reason="strategic logo, CFO signed off", role="approver", by=APPROVER_BY)
    [waived] = [event_view(e, limits=True) for e in deal.collect_events()]
    EventSchemas().check(waived, 3)

    _, text = describe(waived, context(deal))
    assert f"Condition: term_beyond_limit on payment_terms_days (id {condition_id})" in text.splitlines()
    assert any(line.startswith("Evidence: ") and "90" in line for line in text.splitlines())
    assert "Waived by: vic@firm (as approver)" in text.splitlines()
    assert "Reason: strategic logo, CFO signed off" in text.splitlines()


def test_a_version_1_waiver_still_reads_with_its_condition_id() -> None:
    v1 = {
        "deal_id": "d", "version": 5, "type": "WalkAwayConditionWaived", "timestamp": "2026-11-23T10:00:00+00:00",
        "actor": "vic@firm", "correlation_id": "c", "data": {"condition_id": "cond-1", "reason": "fine"},
    }  # fmt: skip
    EventSchemas().check(v1, 1)
    _, text = describe(v1, DealContext("d", "Acme payroll", "Acme Ltd", "ann"))
    assert {"Condition: cond-1", "Waived by: vic@firm", "Reason: fine"} <= set(text.splitlines())


@pytest.mark.parametrize("close", ["sign", "walk away"])
def test_refusing_to_sign_a_closed_deal_does_not_advise_clearing_blockers(close: str) -> None:
    deal = signable()
    if close == "sign":
        deal.sign_contract(by=BY)
    else:
        deal.walk_away(reason="the client went quiet", by=BY)
    with pytest.raises(SigningRefused) as refused:
        deal.sign_contract(by=BY)
    assert [b.code for b in refused.value.blockers] == ["stage"]
    assert "signing happens after the transition meeting" not in str(refused.value)

    event = {
        "deal_id": str(deal.id), "version": deal.version, "type": "SigningRefused", "timestamp": "2026-11-23T10:00:00+00:00",
        "actor": "ann@firm", "correlation_id": "c",
        "data": {"blockers": [{"code": b.code, "message": b.message} for b in refused.value.blockers]},
    }  # fmt: skip
    _, text = describe(event, context(deal))
    assert "clear every blocker" not in text
    assert "the deal is closed" in text


def test_a_private_limit_is_in_alerts_only_to_recipients_who_may_see_it() -> None:
    deal = domain_deal_in_meeting()
    deal.collect_events()
    deal.propose_term(term="payment_terms_days", value=90, side=Side.CLIENT, policy=POLICY, by=BY)  # limit 60: raised
    deal.propose_term(term="payment_terms_days", value=58, side=Side.CLIENT, policy=POLICY, by=BY)  # within it: resolved
    views = [event_view(e, limits=True) for e in deal.collect_events()]
    raised, resolved = (next(v for v in views if v["type"] == kind) for kind in ("WalkAwayConditionRaised", "WalkAwayConditionResolved"))
    for target, shown in ((Target("r", "ops", "chat", None, "urgent"), False), (Target("r", "approver", "mail", "a@firm", "urgent", True), True)):
        for view in (raised, resolved):
            alert = compose(view, "e1", context(deal), target)
            limit_shown = re.search(r"(?<![\w.\-])60(?![\w.])", alert.text) is not None
            assert (limit_shown, "limit" in alert.event["data"].get("evidence", {})) == (shown, shown and view is raised), (target.recipient, view["type"], alert.text)
            assert ("value=90" in alert.text) == (view is raised)
