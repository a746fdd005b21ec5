"""The application service against a real store (SQLite file, and PostgreSQL in `make test-postgres`)."""

from __future__ import annotations

import threading
from datetime import timedelta
from uuid import uuid4

import pytest

from dealflow.deal_lifecycle.application import commands as c
from dealflow.deal_lifecycle.application.service import ConcurrentWrite, DealService, IdempotencyKeyReused, VersionMismatch
from dealflow.deal_lifecycle.domain.errors import InvalidCommand, NotFound, SigningRefused
from dealflow.deal_lifecycle.domain.lifecycle import NotAllowedAtStage
from dealflow.deal_lifecycle.domain.model import Role, Side, Stage
from tests.support import BY, POLICY, ctx, expectation, in_transition_meeting, open_deal, ready_to_sign


def stored_versions(service: DealService, deal_id) -> list[int]:
    return [e.originator_version for e in service.history(deal_id)]


def test_a_deal_goes_from_prospect_to_signed_contract(service: DealService) -> None:
    deal_id = ready_to_sign(service)
    outcome = service.handle("sign_contract", deal_id, None, ctx())
    assert outcome.deal.stage == Stage.CONTRACT_SIGNED
    reloaded = service.get_deal(deal_id)
    assert (reloaded.stage, reloaded.version) == (Stage.CONTRACT_SIGNED, outcome.deal.version)
    assert [type(e).__name__ for e in service.history(deal_id)] == [
        "DealOpened",
        "LetterOfIntentSigned",
        "ExpectationRecorded",
        "ExpectationAgreed",
        "ExpectationRecorded",
        "ExpectationAgreed",
        "TransitionMeetingHeld",
        "SalesPromiseRecorded",
        "SalesPromiseAccepted",
        "ContractSigned",
    ]


@pytest.mark.parametrize(
    ("absent", "blocker"),
    [
        (Role.SALES, "attendance_incomplete"),
        (Role.OPERATIONS, "attendance_incomplete"),
        (Role.CLIENT, "attendance_incomplete"),
    ],
)
def test_signing_is_refused_with_blockers_and_stores_nothing(service: DealService, absent: Role, blocker: str) -> None:
    deal_id = in_transition_meeting(service, *[r for r in Role if r != absent])
    before = stored_versions(service, deal_id)
    with pytest.raises(SigningRefused) as refused:
        service.handle("sign_contract", deal_id, None, ctx())
    assert [b.code for b in refused.value.blockers] == [
        "missing_client_expectation",
        "missing_provider_expectation",
        blocker,
    ]
    assert stored_versions(service, deal_id) == before


def test_every_blocker_code_reaches_the_caller(service: DealService) -> None:
    deal_id = open_deal(service)
    with pytest.raises(SigningRefused) as early:
        service.handle("sign_contract", deal_id, None, ctx())
    service.handle("sign_letter_of_intent", deal_id, None, ctx())
    service.handle("record_expectation", deal_id, expectation(Side.CLIENT), ctx())
    service.handle("record_expectation", deal_id, expectation(Side.PROVIDER), ctx())
    service.handle("hold_transition_meeting", deal_id, c.HoldTransitionMeeting(participants=[c.ParticipantIn(name="Sam", role=Role.SALES)]), ctx())
    service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement="go-live in 30 days"), ctx())
    with pytest.raises(SigningRefused) as late:
        service.handle("sign_contract", deal_id, None, ctx())
    seen = {b.code for b in early.value.blockers} | {b.code for b in late.value.blockers}
    assert seen == {
        "stage",
        "missing_client_expectation",
        "missing_provider_expectation",
        "expectation_not_agreed",
        "promise_not_accepted",
        "attendance_incomplete",
    }


def test_the_same_idempotency_key_returns_the_first_result_and_records_nothing_new(service: DealService) -> None:
    deal_id = in_transition_meeting(service)
    first = service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement="go-live in 30 days"), ctx(key="crm-42"))
    versions = stored_versions(service, deal_id)
    again = service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement="go-live in 30 days"), ctx(key="crm-42"))
    assert (again.created_id, again.deal.version, again.replayed) == (first.created_id, first.deal.version, True)
    assert stored_versions(service, deal_id) == versions
    assert len(service.get_deal(deal_id).sales_promises) == 1


def test_an_idempotency_key_reused_with_another_payload_is_refused(service: DealService) -> None:
    deal_id = in_transition_meeting(service)
    service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement="go-live in 30 days"), ctx(key="crm-42"))
    versions = stored_versions(service, deal_id)
    with pytest.raises(IdempotencyKeyReused):
        service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement="go-live in 10 days"), ctx(key="crm-42"))
    with pytest.raises(IdempotencyKeyReused):
        service.handle("walk_away", deal_id, c.WalkAway(reason="x"), ctx(key="crm-42"))
    assert stored_versions(service, deal_id) == versions


def test_opening_a_deal_twice_with_one_key_opens_one_deal(service: DealService) -> None:
    cmd = c.OpenDeal(title="Acme payroll", client_name="Acme Ltd", owner="ann")
    first = service.handle("open_deal", None, cmd, ctx(key="crm-open-7"))
    again = service.handle("open_deal", None, cmd, ctx(key="crm-open-7"))
    assert again.deal.id == first.deal.id
    assert len(service.list_deals(stage=None, owner=None, limit=10, cursor=None).items) == 1


def test_a_refused_command_leaves_no_receipt_so_a_retry_is_judged_afresh(service: DealService) -> None:
    deal_id = in_transition_meeting(service)
    with pytest.raises(SigningRefused):
        service.handle("sign_contract", deal_id, None, ctx(key="esign-1"))
    with pytest.raises(SigningRefused):
        service.handle("sign_contract", deal_id, None, ctx(key="esign-1"))


def test_a_stale_expected_version_is_refused_and_nothing_is_recorded(service: DealService) -> None:
    deal_id = open_deal(service)
    service.handle("sign_letter_of_intent", deal_id, None, ctx(expected=1))
    with pytest.raises(VersionMismatch):
        service.handle("walk_away", deal_id, c.WalkAway(reason="late"), ctx(expected=1))
    assert service.get_deal(deal_id).stage == Stage.LETTER_OF_INTENT
    assert stored_versions(service, deal_id) == [1, 2]


def test_two_writers_on_one_version_never_both_succeed(service: DealService) -> None:
    deal_id = in_transition_meeting(service)
    version = service.get_deal(deal_id).version
    barrier = threading.Barrier(2)
    results: list[object] = []

    def write(statement: str) -> None:
        barrier.wait()
        try:
            results.append(service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement=statement), ctx(expected=version)))
        except VersionMismatch as refused:
            results.append(refused)

    threads = [threading.Thread(target=write, args=(s,)) for s in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(type(r).__name__ for r in results) == ["Outcome", "VersionMismatch"]
    assert stored_versions(service, deal_id)[-1] == version + 1


def test_the_store_refuses_a_second_event_at_the_same_version(service: DealService) -> None:
    """Two copies of the deal loaded at one version: the second save must fail, not overwrite."""
    deal_id = in_transition_meeting(service)
    first, second = service.get_deal(deal_id), service.get_deal(deal_id)
    first.record_sales_promise(statement="a", by=BY)
    second.record_sales_promise(statement="b", by=BY)
    service.save(first)
    with pytest.raises(Exception, match="(?i)integrity|unique|duplicate"):
        service.save(second)
    assert len(service.get_deal(deal_id).sales_promises) == 1


def test_concurrent_commands_without_expected_version_are_all_applied(service: DealService) -> None:
    deal_id = in_transition_meeting(service)
    start = service.get_deal(deal_id).version
    barrier = threading.Barrier(4)
    errors: list[Exception] = []

    def write(n: int) -> None:
        barrier.wait()
        try:
            service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement=f"promise {n}"), ctx())
        except ConcurrentWrite as e:  # only if every retry lost; must not happen with four writers
            errors.append(e)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stored_versions(service, deal_id) == list(range(1, start + 5))
    assert sorted(p.statement for p in service.get_deal(deal_id).sales_promises.values()) == [f"promise {n}" for n in range(4)]


def test_the_deal_as_of_a_version_and_as_of_a_moment(service: DealService) -> None:
    deal_id = open_deal(service)
    service.handle("sign_letter_of_intent", deal_id, None, ctx())
    service.handle("walk_away", deal_id, c.WalkAway(reason="client wants 120-day terms"), ctx())
    events = service.history(deal_id)
    assert service.get_deal(deal_id, version=1).stage == Stage.PROSPECT
    assert service.get_deal(deal_id, version=2).stage == Stage.LETTER_OF_INTENT
    assert service.get_deal(deal_id, as_of=events[1].timestamp).version == 2
    between = events[1].timestamp + (events[2].timestamp - events[1].timestamp) / 2
    assert service.get_deal(deal_id, as_of=between).stage == Stage.LETTER_OF_INTENT
    assert service.get_deal(deal_id, as_of=events[2].timestamp).stage == Stage.WALKED_AWAY
    with pytest.raises(NotFound):
        service.get_deal(deal_id, as_of=events[0].timestamp - timedelta(seconds=1))
    with pytest.raises(InvalidCommand):
        service.get_deal(deal_id, version=4)


def test_history_records_who_did_what_oldest_first(service: DealService) -> None:
    deal_id = open_deal(service)
    service.handle("sign_letter_of_intent", deal_id, None, ctx("bob@firm"))
    history = service.history(deal_id)
    assert [(type(e).__name__, e.actor) for e in history] == [("DealOpened", "ann@firm"), ("LetterOfIntentSigned", "bob@firm")]
    assert history[0].timestamp <= history[1].timestamp


def test_walking_away_is_refused_after_signing(service: DealService) -> None:
    deal_id = ready_to_sign(service)
    service.handle("sign_contract", deal_id, None, ctx())
    with pytest.raises(NotAllowedAtStage):
        service.handle("walk_away", deal_id, c.WalkAway(reason="second thoughts"), ctx())
    assert service.get_deal(deal_id).stage == Stage.CONTRACT_SIGNED


def test_an_unknown_deal_is_not_found(service: DealService) -> None:
    with pytest.raises(NotFound):
        service.handle("sign_letter_of_intent", uuid4(), None, ctx())


def test_a_long_deal_is_snapshotted_and_loads_to_the_same_state(service: DealService) -> None:
    deal_id = in_transition_meeting(service)
    # 230 events: a deal holds at most 200 promises, so each is recorded and then decided.
    for n in range(115):
        promise_id = service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement=f"promise {n}"), ctx()).created_id
        assert promise_id is not None
        service.handle("decide_sales_promise", deal_id, c.DecideSalesPromise(accepted=True), ctx(), promise_id=promise_id)
    assert service.snapshots is not None
    snapshots = list(service.snapshots.get(deal_id))
    assert [s.originator_version for s in snapshots] == [100, 200]
    deal = service.get_deal(deal_id)
    assert deal.version == 233
    assert len(deal.sales_promises) == 115
    assert service.get_deal(deal_id, version=150).version == 150


def test_listing_deals_by_stage_and_owner_pages_through_the_read_model(service: DealService) -> None:
    ids = [open_deal(service, title=f"deal {n}", owner="ann" if n % 2 else "bob") for n in range(5)]
    service.handle("sign_letter_of_intent", ids[0], None, ctx())
    page = service.list_deals(stage=Stage.PROSPECT, owner=None, limit=2, cursor=None)
    seen = [s.deal_id for s in page.items]
    while page.next_cursor:
        page = service.list_deals(stage=Stage.PROSPECT, owner=None, limit=2, cursor=page.next_cursor)
        seen += [s.deal_id for s in page.items]
    assert seen == [str(i) for i in ids[1:]]
    assert [s.deal_id for s in service.list_deals(stage=None, owner="bob", limit=10, cursor=None).items] == [
        str(i) for i in ids[0::2]
    ]
    letter = service.list_deals(stage=Stage.LETTER_OF_INTENT, owner=None, limit=10, cursor=None).items
    assert [(s.deal_id, s.version) for s in letter] == [(str(ids[0]), 2)]


def test_the_read_model_rebuilds_from_the_event_log(service: DealService) -> None:
    ids = [open_deal(service, title=f"deal {n}") for n in range(3)]
    service.handle("sign_letter_of_intent", ids[1], None, ctx())
    before = service.list_deals(stage=None, owner=None, limit=10, cursor=None).items
    service.recorder.replace_summaries([])
    assert service.list_deals(stage=None, owner=None, limit=10, cursor=None).items == []
    assert service.rebuild_read_model() == 3
    assert service.list_deals(stage=None, owner=None, limit=10, cursor=None).items == before


def test_a_second_process_sees_the_same_store(service: DealService, settings) -> None:
    deal_id = open_deal(service)
    other = DealService(env=settings.eventsourcing_env(), policy=POLICY)
    try:
        assert other.get_deal(deal_id).title == "Acme payroll"
        other.handle("sign_letter_of_intent", deal_id, None, ctx())
    finally:
        other.close()
    assert service.get_deal(deal_id).stage == Stage.LETTER_OF_INTENT


def test_a_retry_racing_the_first_attempt_is_recorded_once(service: DealService) -> None:
    deal_id = in_transition_meeting(service)
    barrier = threading.Barrier(3)
    outcomes = []

    def send() -> None:
        barrier.wait()
        outcomes.append(
            service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement="go-live in 30 days"), ctx(key="crm-race"))
        )

    threads = [threading.Thread(target=send) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({o.created_id for o in outcomes}) == 1
    assert sorted(o.replayed for o in outcomes) == [False, True, True]
    assert len(service.get_deal(deal_id).sales_promises) == 1


def test_negotiation_state_survives_the_store_and_its_snapshots(service: DealService) -> None:
    deal_id = in_transition_meeting(service)
    service.handle("propose_term", deal_id, c.ProposeTerm(term="payment_terms_days", value=90, by=Side.CLIENT), ctx())
    service.handle("refuse_non_negotiable", deal_id, c.RefuseNonNegotiable(reason="later"), ctx(), name="msa_signed_first")
    service.handle("record_client_facts", deal_id, c.RecordClientFacts(annual_value=80_000, industry="logistics"), ctx())
    impasse = service.handle("declare_impasse", deal_id, c.DeclareImpasse(topic="payment terms"), ctx()).created_id
    assert impasse is not None
    service.handle("escalate", deal_id, c.Escalate(impasse_id=impasse, to="CFO", counterpart_consented=True, strategies_tried=["trade a nice-to-have"]), ctx())
    for n in range(100):
        side = Side.PROVIDER if n % 2 else Side.CLIENT
        service.handle("record_concession", deal_id, c.RecordConcession(by=side, what=f"give {n}"), ctx())
    assert service.snapshots is not None and list(service.snapshots.get(deal_id))
    in_memory = service.get_deal(deal_id)
    from_events_only = DealService.project_from(service.history(deal_id))
    for attribute in ("conditions", "terms", "concession_balance", "term_concessions", "recent_concessions", "client_facts", "impasses", "escalations", "non_negotiables"):
        assert getattr(in_memory, attribute) == getattr(from_events_only, attribute), attribute
    assert sorted((str(c.kind), c.subject) for c in in_memory.conditions.values() if c.is_open) == [
        ("non_negotiable_refused", "msa_signed_first"),
        ("term_beyond_limit", "payment_terms_days"),
    ]


def test_a_refused_signing_leaves_the_deal_alone_but_is_recorded_for_alerts_and_audit(service: DealService) -> None:
    from dealflow.deal_lifecycle.domain.attempts import SigningAttempts

    deal_id = in_transition_meeting(service)
    versions = stored_versions(service, deal_id)
    for _ in range(2):
        with pytest.raises(SigningRefused):
            service.handle("sign_contract", deal_id, None, ctx("esign@vendor"))
    assert stored_versions(service, deal_id) == versions
    log = list(service.events.get(SigningAttempts.create_id(str(deal_id))))
    refused = [e for e in log if type(e).__name__ == "SigningRefused"]
    assert [(e.deal_id, e.deal_version, e.actor) for e in refused] == [(str(deal_id), versions[-1], "esign@vendor")] * 2
    assert [b["code"] for b in refused[0].blockers] == ["missing_client_expectation", "missing_provider_expectation"]
