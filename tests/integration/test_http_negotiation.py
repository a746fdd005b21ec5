"""Right Terms over HTTP: terms, concessions, non-negotiables, right-client facts, impasses,
escalations, walk-away conditions, relationship health and the active policy, into a real store."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.bootstrap import service_app
from dealflow.deal_lifecycle.config import Settings
from tests.support import TEST_KEYS, bearer, signed_in, POLICY_FILE

LATER = (date.today() + timedelta(days=60)).isoformat()
PEOPLE = [{"name": "Sam", "role": "sales"}, {"name": "Olu", "role": "operations"}, {"name": "Cleo", "role": "client"}]
APPROVER = bearer("approver", sub="vic@firm")


@pytest.fixture
def client(service: DealService, settings: Settings) -> Iterator[TestClient]:
    with signed_in(TestClient(service_app(settings, service=service, keys=TEST_KEYS))) as test_client:
        yield test_client


# -- the steps a real client takes ------------------------------------------------------------


def open_deal(client: TestClient) -> str:
    response = client.post("/deals", json={"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"})
    assert response.status_code == 201, response.text
    return f"/deals/{response.json()['id']}"


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


def exp(side: str) -> dict[str, Any]:
    return {"side": side, "statement": f"{side} monthly report", "metric": "reports", "target": "12 a year", "due": LATER, "priority": 1}


def deal(client: TestClient, base: str) -> dict[str, Any]:
    return ok(client.get(base))


def conditions(client: TestClient, base: str, kind: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The open and the closed walk-away conditions of one kind."""
    shown = deal(client, base)["conditions"]
    return [c for c in shown["open"] if c["kind"] == kind], [c for c in shown["closed"] if c["kind"] == kind]


def demand(client: TestClient, base: str, term: str, value: float) -> dict[str, Any]:
    return ok(client.post(f"{base}/terms", json={"term": term, "value": value, "by": "client"}))


def in_transition_meeting(client: TestClient) -> str:
    base = open_deal(client)
    ok(client.post(f"{base}/letter-of-intent"))
    ok(client.post(f"{base}/transition-meeting", json={"participants": PEOPLE}))
    return base


def ready_to_sign(client: TestClient) -> str:
    """Every signing blocker cleared, the way test_http.py's whole lifecycle does it."""
    base = open_deal(client)
    ok(client.post(f"{base}/letter-of-intent"))
    for side in ("client", "provider"):
        eid = ok(client.post(f"{base}/expectations", json=exp(side)), 201)["id"]
        ok(client.post(f"{base}/expectations/{eid}/decision", json={"agreed": True}))
    ok(client.post(f"{base}/transition-meeting", json={"participants": PEOPLE}))
    pid = ok(client.post(f"{base}/promises", json={"statement": "go-live in 30 days"}), 201)["id"]
    assert ok(client.post(f"{base}/promises/{pid}/decision", json={"accepted": True}))["blockers"] == []
    return base


# -- terms ---------------------------------------------------------------------------------------


def test_a_client_demand_beyond_the_limit_opens_a_condition_until_revised_within_it(client: TestClient) -> None:
    base = open_deal(client)
    policy_version = ok(client.get("/policy"))["version"]

    demand(client, base, "payment_terms_days", 90)

    [condition] = deal(client, base)["conditions"]["open"]
    assert (condition["kind"], condition["subject"], condition["status"]) == ("term_beyond_limit", "payment_terms_days", "open")
    assert (condition["evidence"]["value"], condition["evidence"]["limit"]) == (90, 60)
    assert condition["policy_version"] == policy_version

    shown = demand(client, base, "payment_terms_days", 55)

    assert shown["conditions"]["open"] == []
    [closed] = shown["conditions"]["closed"]
    assert (closed["id"], closed["status"]) == (condition["id"], "resolved")
    assert [t["client_demand"] for t in shown["terms"]] == [55]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"term": "free_lunches", "value": 3, "by": "client"}, "term"),
        ({"term": "payment_terms_days", "value": "60", "by": "client"}, "value"),
        ({"term": "payment_terms_days", "value": 75, "by": "provider"}, "value"),
    ],
    ids=["unknown_term", "value_as_text", "firm_proposes_past_its_own_limit"],
)
def test_a_bad_term_proposal_is_422_naming_the_field_and_stores_nothing(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    base = open_deal(client)
    before = deal(client, base)["version"]

    response = client.post(f"{base}/terms", json=body)

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field
    after = deal(client, base)
    assert (after["version"], after["terms"], after["conditions"]["open"]) == (before, [], [])


def test_agreeing_a_term_worse_than_the_public_position_is_an_early_concession_by_the_firm(client: TestClient) -> None:
    base = open_deal(client)

    ok(client.post(f"{base}/terms/discount_percent/agreement", json={"value": 5}))

    shown = deal(client, base)
    [concession] = shown["concessions"]
    assert (concession["by"], concession["term"], concession["stage"], concession["early"]) == (
        "provider",
        "discount_percent",
        "prospect",
        True,
    )
    assert [t["agreed"] for t in shown["terms"] if t["name"] == "discount_percent"] == [5]


# -- concessions ---------------------------------------------------------------------------------


def test_three_concessions_by_the_firm_open_an_imbalance_that_one_from_the_client_resolves(client: TestClient) -> None:
    base = open_deal(client)
    ids = []
    for what in ("free onboarding", "extra training day", "waived setup fee"):
        created = ok(client.post(f"{base}/concessions", json={"by": "provider", "what": what}), 201)
        ids.append(created["id"])
    assert [c["id"] for c in deal(client, base)["concessions"]] == ids

    [imbalance], _ = conditions(client, base, "concession_imbalance")
    assert (imbalance["evidence"]["given"], imbalance["evidence"]["received"]) == (3, 0)

    ok(client.post(f"{base}/concessions", json={"by": "client", "what": "case study rights"}), 201)

    still_open, closed = conditions(client, base, "concession_imbalance")
    assert still_open == []
    assert [(c["id"], c["status"]) for c in closed] == [(imbalance["id"], "resolved")]


def test_agreeing_a_term_again_and_again_is_one_concession_and_signing_stays_open(client: TestClient) -> None:
    base = ready_to_sign(client)
    for days in (50, 55, 58):  # all within the limit of 60
        ok(client.post(f"{base}/terms/payment_terms_days/agreement", json={"value": days}))

    health = ok(client.get(f"{base}/health"))
    assert health["concessions"]["given"] == 1
    assert conditions(client, base, "concession_imbalance") == ([], [])
    types = [e["type"] for e in ok(client.get(f"{base}/events"))["events"]]
    assert (types.count("ConcessionRecorded"), types.count("ConcessionWithdrawn")) == (3, 2)
    assert ok(client.post(f"{base}/contract"))["stage"] == "contract_signed"


@pytest.mark.parametrize("close", ["contract", "walk-away"])
def test_signing_a_closed_deal_is_409_naming_only_that_it_is_closed(client: TestClient, close: str) -> None:
    base = ready_to_sign(client)
    ok(client.post(f"{base}/{close}", json={"reason": "the client went quiet"} if close == "walk-away" else None))
    refused = client.post(f"{base}/contract")
    assert refused.status_code == 409, refused.text
    assert [b["code"] for b in refused.json()["blockers"]] == ["stage"]
    message = refused.json()["message"]
    assert "transition meeting" not in message and "clear" not in message
    assert ("already signed" if close == "contract" else "walked away") in message


# -- waivers -------------------------------------------------------------------------------------


def test_only_an_approver_or_admin_may_waive_a_condition_and_only_once(client: TestClient) -> None:
    base = open_deal(client)
    [condition] = demand(client, base, "payment_terms_days", 90)["conditions"]["open"]
    waiver = f"{base}/conditions/{condition['id']}/waiver"
    before = deal(client, base)["version"]

    forbidden = client.post(waiver, json={"reason": "strategic client"}, headers=bearer("emitter", "ops", "auditor"))
    assert (forbidden.status_code, forbidden.json()["code"]) == (403, "forbidden")
    assert forbidden.json()["allowed_roles"] == ["approver", "admin"]
    assert deal(client, base)["version"] == before

    waived = ok(client.post(waiver, json={"reason": "strategic client"}, headers=APPROVER))
    assert waived["conditions"]["open"] == []
    [closed] = waived["conditions"]["closed"]
    assert (closed["id"], closed["status"], closed["closed_because"]) == (condition["id"], "waived", "strategic client")
    # The waiver records who waived it (the token's sub) and under which role.
    last = client.get(f"{base}/events").json()["events"][-1]
    assert (last["type"], last["actor"], last["data"]["role"]) == ("WalkAwayConditionWaived", "vic@firm", "approver")

    again = client.post(waiver, json={"reason": "once more"}, headers=APPROVER)
    assert (again.status_code, again.json()["code"]) == (409, "already_closed")


# -- non-negotiables and signing ---------------------------------------------------------------


def test_a_refused_non_negotiable_blocks_signing_until_the_client_accepts_it(client: TestClient) -> None:
    base = ready_to_sign(client)

    refused = ok(client.post(f"{base}/non-negotiables/msa_signed_first/refusal", json={"reason": "legal is slow"}))
    [condition] = refused["conditions"]["open"]
    assert (condition["kind"], condition["subject"]) == ("non_negotiable_refused", "msa_signed_first")
    assert refused["non_negotiables"] == {"msa_signed_first": "refused"}

    blocked = client.post(f"{base}/contract")
    assert blocked.status_code == 409, blocked.text
    assert [(b["code"], b["subject_id"]) for b in blocked.json()["blockers"]] == [("open_walk_away_condition", condition["id"])]
    assert deal(client, base)["stage"] == "transition_meeting"

    accepted = ok(client.post(f"{base}/non-negotiables/msa_signed_first/acceptance"))
    assert accepted["non_negotiables"] == {"msa_signed_first": "accepted"}
    assert [c["status"] for c in accepted["conditions"]["closed"]] == ["resolved"]

    signed = ok(client.post(f"{base}/contract"))
    assert signed["stage"] == "contract_signed"


# -- impasses and escalation ---------------------------------------------------------------------


def escalation(impasse_id: str, strategies: list[str] | None = None) -> dict[str, Any]:
    tried = ["reframed the question", "took a break"] if strategies is None else strategies
    return {"impasse_id": impasse_id, "to": "the client's CFO", "counterpart_consented": False, "strategies_tried": tried}


def test_escalating_over_an_impasse_that_does_not_exist_is_404(client: TestClient) -> None:
    base = open_deal(client)

    response = client.post(f"{base}/escalations", json=escalation("no-such-impasse"))

    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert deal(client, base)["version"] == 1


def test_escalation_needs_an_open_impasse(client: TestClient) -> None:
    base = open_deal(client)
    iid = ok(client.post(f"{base}/impasses", json={"topic": "payment terms"}), 201)["id"]

    escalated = ok(client.post(f"{base}/escalations", json=escalation(iid)), 201)
    [recorded] = escalated["deal"]["escalations"]
    assert (recorded["id"], recorded["impasse_id"], recorded["counterpart_consented"]) == (escalated["id"], iid, False)
    assert recorded["strategies_tried"] == ["reframed the question", "took a break"]

    resolved = ok(client.post(f"{base}/impasses/{iid}/resolution", json={"how": "split the difference"}))
    assert [(i["id"], i["open"]) for i in resolved["impasses"]] == [(iid, False)]
    before = resolved["version"]

    again = client.post(f"{base}/escalations", json=escalation(iid))
    assert (again.status_code, again.json()["code"]) == (409, "no_open_impasse")
    assert deal(client, base)["version"] == before


def test_escalation_without_naming_the_strategies_tried_is_422(client: TestClient) -> None:
    base = open_deal(client)
    iid = ok(client.post(f"{base}/impasses", json={"topic": "payment terms"}), 201)["id"]
    before = deal(client, base)["version"]

    response = client.post(f"{base}/escalations", json=escalation(iid, strategies=[]))

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "strategies_tried"
    assert deal(client, base)["version"] == before
    assert deal(client, base)["escalations"] == []


# -- right-client facts --------------------------------------------------------------------------


def test_a_prospect_below_the_minimum_annual_value_is_disqualified_until_the_value_is_met(client: TestClient) -> None:
    base = open_deal(client)

    ok(client.post(f"{base}/client-facts", json={"annual_value": 20000}))
    [disqualified], _ = conditions(client, base, "client_disqualified")
    assert disqualified["subject"] == "min_annual_value"
    assert (disqualified["evidence"]["required"], disqualified["evidence"]["actual"]) == (50000, 20000)

    shown = ok(client.post(f"{base}/client-facts", json={"annual_value": 90000}))
    assert shown["client_facts"] == {"annual_value": 90000}
    still_open, closed = conditions(client, base, "client_disqualified")
    assert still_open == []
    assert [(c["id"], c["status"]) for c in closed] == [(disqualified["id"], "resolved")]


def test_client_facts_without_any_fact_are_422(client: TestClient) -> None:
    base = open_deal(client)

    response = client.post(f"{base}/client-facts", json={})

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "annual_value"
    assert deal(client, base)["version"] == 1


# -- relationship health -------------------------------------------------------------------------


def test_a_fresh_deal_is_healthy(client: TestClient) -> None:
    base = open_deal(client)

    health = ok(client.get(f"{base}/health"))

    assert (health["concessions"]["given"], health["concessions"]["received"]) == (0, 0)
    assert health["concessions"]["by_stage"] == {
        "prospect": {"given": 0, "received": 0},
        "letter_of_intent": {"given": 0, "received": 0},
        "transition_meeting": {"given": 0, "received": 0},
    }
    assert (health["early_concessions"], health["open_conditions"], health["warning_signs"]) == ([], [], [])
    assert health["verdict"].startswith("Healthy")


def test_one_sided_concessions_then_a_demand_beyond_the_limit_put_the_deal_at_risk(client: TestClient) -> None:
    base = open_deal(client)
    for what in ("free onboarding", "extra training day", "waived setup fee"):
        ok(client.post(f"{base}/concessions", json={"by": "provider", "what": what}), 201)
    ok(client.post(f"{base}/letter-of-intent"))
    ok(client.post(f"{base}/concessions", json={"by": "provider", "what": "longer warranty"}), 201)
    demand(client, base, "payment_terms_days", 90)

    health = ok(client.get(f"{base}/health"))

    assert (health["concessions"]["given"], health["concessions"]["received"]) == (4, 0)
    assert health["concessions"]["by_stage"]["prospect"] == {"given": 3, "received": 0}
    assert health["concessions"]["by_stage"]["letter_of_intent"] == {"given": 1, "received": 0}
    assert [c["what"] for c in health["early_concessions"]] == ["free onboarding", "extra training day", "waived setup fee"]
    assert sorted(c["kind"] for c in health["open_conditions"]) == ["concession_imbalance", "term_beyond_limit"]
    [sign] = health["warning_signs"]
    assert sign.startswith("4 one-sided concessions by the firm, then a demand beyond the limit on payment_terms_days")
    assert health["verdict"].startswith("At risk: 2 walk-away condition(s) open")


# -- the active policy ---------------------------------------------------------------------------


def test_the_active_policy_is_served_with_its_version(client: TestClient) -> None:
    policy = ok(client.get("/policy"))

    assert policy["version"].startswith("sha256:")
    assert policy["version"] == "sha256:" + hashlib.sha256(POLICY_FILE.read_bytes()).hexdigest()
    assert (policy["terms"]["payment_terms_days"]["public"], policy["terms"]["payment_terms_days"]["limit"]) == (45, 60)
    assert policy["right_client"]["min_annual_value"] == 50000


# -- expectations and promises -----------------------------------------------------------------


def test_a_rejected_provider_expectation_is_a_condition_until_withdrawn(client: TestClient) -> None:
    base = open_deal(client)
    ok(client.post(f"{base}/letter-of-intent"))
    eid = ok(client.post(f"{base}/expectations", json=exp("provider")), 201)["id"]

    ok(client.post(f"{base}/expectations/{eid}/decision", json={"agreed": False, "reason": "no capacity"}))
    [rejected], _ = conditions(client, base, "provider_expectation_rejected")
    assert rejected["subject"] == eid
    assert (rejected["evidence"]["expectation_id"], rejected["evidence"]["reason"]) == (eid, "no capacity")

    shown = ok(client.post(f"{base}/expectations/{eid}/withdrawal", json={"reason": "to be refined"}))
    assert [e["decision"] for e in shown["expectations"]] == ["withdrawn"]
    still_open, closed = conditions(client, base, "provider_expectation_rejected")
    assert still_open == []
    assert [(c["id"], c["status"]) for c in closed] == [(rejected["id"], "resolved")]


def test_a_rejected_sales_promise_is_a_condition_until_renegotiated(client: TestClient) -> None:
    base = in_transition_meeting(client)
    pid = ok(client.post(f"{base}/promises", json={"statement": "go-live in 10 days"}), 201)["id"]

    ok(client.post(f"{base}/promises/{pid}/decision", json={"accepted": False, "reason": "cannot staff it"}))
    [rejected], _ = conditions(client, base, "promise_rejected")
    assert (rejected["subject"], rejected["evidence"]["statement"]) == (pid, "go-live in 10 days")

    shown = ok(client.post(f"{base}/promises/{pid}/renegotiation", json={"statement": "go-live in 30 days"}))
    assert [(p["id"], p["statement"], p["decision"]) for p in shown["promises"]] == [(pid, "go-live in 30 days", "pending")]
    still_open, closed = conditions(client, base, "promise_rejected")
    assert still_open == []
    assert [(c["id"], c["status"]) for c in closed] == [(rejected["id"], "resolved")]
