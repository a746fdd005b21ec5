"""The deal keeps what decisions need, not its history: a snapshot does not grow with the events."""

from __future__ import annotations

from copy import deepcopy
from datetime import date

from eventsourcing.application import project_aggregate
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, Mapper, UUIDAsHex

from dealflow.deal_lifecycle.application import transcodings
from dealflow.deal_lifecycle.application.views import standing_concessions
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.model import Side
from tests.support import BY, POLICY, domain_deal_in_meeting


def snapshot_bytes(deal: Deal) -> int:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    transcodings.register(transcoder)
    return len(Mapper(transcoder=transcoder).to_stored_event(Deal.Snapshot.take(deal)).state)


def concessions(count: int) -> Deal:
    deal = Deal.open(title="Acme payroll", client_name="Acme Ltd", owner="ann", by=BY)
    for n in range(count):
        deal.record_concession(side=(Side.CLIENT, Side.PROVIDER)[n % 3 == 0], what=f"gift {n:04}", policy=POLICY, by=BY)
    return deal


def test_a_snapshot_is_the_same_size_after_a_hundred_concessions_or_nine_hundred() -> None:
    hundred, nine_hundred = snapshot_bytes(concessions(100)), snapshot_bytes(concessions(900))
    assert abs(nine_hundred - hundred) < 64  # a few digits more in the counts, nothing per concession
    assert nine_hundred < 10_000


def test_the_counts_agree_with_the_history_they_stand_for() -> None:
    deal = concessions(120)
    deal.agree_term(term="payment_terms_days", value=55, policy=POLICY, by=BY)
    deal.agree_term(term="payment_terms_days", value=50, policy=POLICY, by=BY)  # withdraws the one at 55
    standing = standing_concessions(deal.collect_events())
    given = sum(1 for c in standing if c.by is Side.PROVIDER)
    assert deal.concession_counts() == (given, len(standing) - given)
    assert deal.recent_concessions == standing[-len(deal.recent_concessions):]
    assert [c.what for c in deal.term_concessions["payment_terms_days"]] == ["payment_terms_days agreed at 50 (public position 45)"]


def every_kind_of_fact(deal: Deal) -> None:
    """Facts touching each of the deal's containers and the containers kept in them."""
    deal.record_concession(side=Side.PROVIDER, what="free setup", policy=POLICY, by=BY)
    deal.agree_term(term="payment_terms_days", value=55, policy=POLICY, by=BY)
    deal.propose_term(term="payment_terms_days", value=90, side=Side.CLIENT, policy=POLICY, by=BY)  # opens a condition
    deal.refuse_non_negotiable(name="msa_signed_first", reason="later", policy=POLICY, by=BY)
    deal.record_client_facts(annual_value=1.0, industry=None, policy=POLICY, by=BY)
    promise = deal.record_sales_promise(statement="go-live in 30 days", by=BY)
    deal.decide_sales_promise(promise, accepted=False, reason="too soon", policy=POLICY, by=BY)
    deal.record_expectation(
        side=Side.CLIENT, statement="monthly report", metric="reports", target="12", due=date(2030, 1, 1), priority=1, today=date(2026, 1, 1), by=BY
    )
    impasse = deal.declare_impasse(topic="price", by=BY)
    deal.escalate(impasse_id=impasse, to="their CFO", counterpart_consented=True, strategies_tried=["trade"], by=BY)


def test_a_deal_s_copy_changes_without_touching_the_deal_it_was_copied_from() -> None:
    # The aggregate cache hands each command a copy (Deal.__deepcopy__, two levels of containers):
    # facts on the copy must leave the kept deal exactly as its own history says it is.
    kept = domain_deal_in_meeting()
    every_kind_of_fact(kept)
    history = kept.collect_events()
    copy = deepcopy(kept)
    assert copy == kept and copy is not kept
    every_kind_of_fact(copy)
    copy.record_concession(side=Side.CLIENT, what="a reference call", policy=POLICY, by=BY)
    assert project_aggregate(None, history) == kept  # the kept deal: exactly its own history
    assert project_aggregate(project_aggregate(None, history), copy.collect_events()) == copy  # the copy: that and its own facts
