"""The deal keeps what decisions need, not its history: a snapshot does not grow with the events."""

from __future__ import annotations

from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, Mapper, UUIDAsHex

from dealflow.deal_lifecycle.application import transcodings
from dealflow.deal_lifecycle.application.views import standing_concessions
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.deal_lifecycle.domain.model import Side
from tests.support import BY, POLICY


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
