"""The HTTP contract, end to end through Litestar into a real store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.support import TEST_KEYS, bearer, signed_in
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.bootstrap import service_app
from dealflow.deal_lifecycle.config import Settings

LATER = (date.today() + timedelta(days=60)).isoformat()


@pytest.fixture
def client(service: DealService, settings: Settings) -> Iterator[TestClient]:
    with signed_in(TestClient(service_app(settings, service=service, keys=TEST_KEYS))) as test_client:
        yield test_client


def open_deal(client: TestClient, **headers: str) -> dict[str, Any]:
    response = client.post("/deals", json={"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def exp(side: str, **overrides: Any) -> dict[str, Any]:
    return {"side": side, "statement": "monthly report", "metric": "reports", "target": "12 a year", "due": LATER, "priority": 1, **overrides}


def version(client: TestClient, deal_id: str) -> int:
    return client.get(f"/deals/{deal_id}").json()["version"]


def test_the_whole_lifecycle_over_http(client: TestClient) -> None:
    deal = open_deal(client, **bearer(sub="ann@firm"))
    assert (deal["stage"], deal["version"]) == ("prospect", 1)
    base = f"/deals/{deal['id']}"
    assert client.post(f"{base}/letter-of-intent").json()["stage"] == "letter_of_intent"
    for side in ("client", "provider"):
        created = client.post(f"{base}/expectations", json=exp(side))
        assert created.status_code == 201
        eid = created.json()["id"]
        assert client.post(f"{base}/expectations/{eid}/decision", json={"agreed": True}).status_code == 200
    people = [{"name": "Sam", "role": "sales"}, {"name": "Olu", "role": "operations"}, {"name": "Cleo", "role": "client"}]
    assert client.post(f"{base}/transition-meeting", json={"participants": people}).json()["stage"] == "transition_meeting"
    promise = client.post(f"{base}/promises", json={"statement": "go-live in 30 days"})
    assert promise.status_code == 201
    pid = promise.json()["id"]
    decided = client.post(f"{base}/promises/{pid}/decision", json={"accepted": True, "reason": "we can staff it"})
    assert decided.json()["blockers"] == []
    signed = client.post(f"{base}/contract")
    assert (signed.status_code, signed.json()["stage"]) == (200, "contract_signed")
    refused = client.post(f"{base}/walk-away", json={"reason": "second thoughts"})
    assert (refused.status_code, refused.json()["code"]) == (409, "not_allowed_at_stage")
    shown = client.get(base).json()
    assert [p["decision"] for p in shown["promises"]] == ["accepted"]
    assert {e["side"] for e in shown["expectations"]} == {"client", "provider"}
    # Agreed with {"agreed": true}, read back in the same words (a promise is accepted).
    assert [e["decision"] for e in shown["expectations"]] == ["agreed", "agreed"]
    history = client.get(f"{base}/events").json()["events"]
    assert [e["version"] for e in history] == list(range(1, 11))
    assert history[0] == {
        "deal_id": deal["id"],
        "version": 1,
        "type": "DealOpened",
        "timestamp": deal["opened_at"],
        "actor": "ann@firm",
        "on_behalf_of": None,
        "correlation_id": history[0]["correlation_id"],
        "data": {"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"},
    }


def test_signing_too_early_answers_409_with_every_blocker(client: TestClient) -> None:
    deal = open_deal(client)
    response = client.post(f"/deals/{deal['id']}/contract")
    assert response.status_code == 409
    assert [b["code"] for b in response.json()["blockers"]] == [
        "stage",
        "missing_client_expectation",
        "missing_provider_expectation",
        "attendance_incomplete",
    ]
    assert [b["code"] for b in client.get(f"/deals/{deal['id']}").json()["blockers"]] == [
        b["code"] for b in response.json()["blockers"]
    ]
    assert version(client, deal["id"]) == 1


def test_a_retry_with_the_same_idempotency_key_gets_the_same_answer(client: TestClient) -> None:
    first = open_deal(client, **{"Idempotency-Key": "crm-1"})
    again = open_deal(client, **{"Idempotency-Key": "crm-1"})
    assert again == first
    other = client.post("/deals", json={"title": "Other", "client_name": "Acme Ltd", "owner": "ann"}, headers={"Idempotency-Key": "crm-1"})
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert len(client.get("/deals").json()["items"]) == 1


def test_if_match_guards_against_lost_updates(client: TestClient) -> None:
    deal = open_deal(client)
    first = client.post(f"/deals/{deal['id']}/letter-of-intent", headers={"If-Match": '"1"'})
    assert (first.status_code, first.headers["etag"]) == (200, '"2"')
    stale = client.post(f"/deals/{deal['id']}/walk-away", json={"reason": "x"}, headers={"If-Match": '"1"'})
    assert (stale.status_code, stale.json()["code"]) == (412, "version_mismatch")
    assert version(client, deal["id"]) == 2


def test_as_of_reads(client: TestClient) -> None:
    deal = open_deal(client)
    client.post(f"/deals/{deal['id']}/letter-of-intent")
    events = client.get(f"/deals/{deal['id']}/events").json()["events"]
    assert client.get(f"/deals/{deal['id']}", params={"as_of_version": 1}).json()["stage"] == "prospect"
    as_of = client.get(f"/deals/{deal['id']}", params={"as_of": events[0]["timestamp"]})
    assert (as_of.json()["stage"], as_of.json()["version"]) == ("prospect", 1)
    assert client.get(f"/deals/{deal['id']}", params={"as_of": events[1]["timestamp"]}).json()["stage"] == "letter_of_intent"
    too_far = client.get(f"/deals/{deal['id']}", params={"as_of_version": 9})
    assert (too_far.status_code, too_far.json()["errors"][0]["field"]) == (422, "as_of_version")
    naive = client.get(f"/deals/{deal['id']}", params={"as_of": "2026-01-01T00:00:00"})
    assert naive.status_code == 422


def test_listing_filters_by_stage_and_owner_and_pages(client: TestClient) -> None:
    ids = [open_deal(client)["id"] for _ in range(3)]
    client.post(f"/deals/{ids[0]}/letter-of-intent")
    first = client.get("/deals", params={"stage": "prospect", "limit": 1}).json()
    second = client.get("/deals", params={"stage": "prospect", "limit": 1, "cursor": first["next_cursor"]}).json()
    assert [d["id"] for d in first["items"] + second["items"]] == ids[1:]
    assert second["next_cursor"] is None
    assert client.get("/deals", params={"owner": "nobody"}).json()["items"] == []
    bad = client.get("/deals", params={"stage": "negotiating"})
    assert (bad.status_code, bad.json()["errors"][0]["field"]) == (422, "stage")


@pytest.mark.parametrize(
    ("path", "body", "field", "rule"),
    [
        ("/deals", {"client_name": "Acme", "owner": "ann"}, "title", "Field required"),
        ("/deals", {"title": 7, "client_name": "Acme", "owner": "ann"}, "title", "string"),
        ("/deals", {"title": "  ", "client_name": "Acme", "owner": "ann"}, "title", "at least 1 character"),
        ("/deals", {"title": "x" * 201, "client_name": "Acme", "owner": "ann"}, "title", "at most 200"),
        ("/deals", {"title": "T", "client_name": "Acme", "owner": "ann", "vip": True}, "vip", "Extra inputs"),
        ("{deal}/transition-meeting", {"participants": []}, "participants", "at least 1"),
        ("{deal}/transition-meeting", {"participants": [{"name": "Sam", "role": "cfo"}]}, "participants.0.role", "'sales', 'operations' or 'client'"),
        ("{deal}/expectations", exp("buyer"), "side", "'client' or 'provider'"),
        ("{deal}/expectations", exp("client", due="soon"), "due", "valid date"),
        ("{deal}/expectations", exp("client", due="2020-01-01"), "due", "must not be in the past"),
        ("{deal}/expectations", exp("client", priority=0), "priority", "greater than or equal to 1"),
        ("{deal}/expectations", exp("client", metric=""), "metric", "at least 1 character"),
        ("{deal}/walk-away", {}, "reason", "Field required"),
        ("{deal}/walk-away", {"reason": ""}, "reason", "at least 1 character"),
    ],
)
def test_bad_input_names_the_field_and_rule_and_stores_nothing(
    client: TestClient, path: str, body: dict[str, Any], field: str, rule: str
) -> None:
    deal = open_deal(client)
    client.post(f"/deals/{deal['id']}/letter-of-intent")
    response = client.post(path.format(deal=f"/deals/{deal['id']}"), json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert any(e["field"] == field and rule in e["rule"] for e in errors), errors
    assert version(client, deal["id"]) == 2
    assert len(client.get("/deals").json()["items"]) == 1


def test_decisions_need_a_boolean(client: TestClient) -> None:
    deal = open_deal(client)
    client.post(f"/deals/{deal['id']}/letter-of-intent")
    eid = client.post(f"/deals/{deal['id']}/expectations", json=exp("client")).json()["id"]
    response = client.post(f"/deals/{deal['id']}/expectations/{eid}/decision", json={"agreed": "yes"})
    assert (response.status_code, response.json()["errors"][0]["field"]) == (422, "agreed")
    assert version(client, deal["id"]) == 3


def test_malformed_and_oversized_bodies_are_refused(client: TestClient) -> None:
    deal = open_deal(client)
    malformed = client.post(f"/deals/{deal['id']}/walk-away", content=b'{"reason": ', headers={"Content-Type": "application/json"})
    assert (malformed.status_code, malformed.json()["code"]) == (400, "malformed_request")
    huge = client.post(f"/deals/{deal['id']}/walk-away", json={"reason": "x" * 100_000})
    assert huge.status_code == 413
    bad_if_match = client.post(f"/deals/{deal['id']}/letter-of-intent", headers={"If-Match": "latest"})
    assert (bad_if_match.status_code, bad_if_match.json()["errors"][0]["field"]) == (422, "If-Match")
    assert version(client, deal["id"]) == 1


def test_unknown_things_are_404(client: TestClient) -> None:
    deal = open_deal(client)
    assert client.get("/deals/00000000-0000-0000-0000-000000000000").status_code == 404
    assert client.post("/deals/00000000-0000-0000-0000-000000000000/letter-of-intent").status_code == 404
    client.post(f"/deals/{deal['id']}/letter-of-intent")
    client.post(f"/deals/{deal['id']}/transition-meeting", json={"participants": [{"name": "Sam", "role": "sales"}]})
    unknown = client.post(f"/deals/{deal['id']}/promises/nope/decision", json={"accepted": True})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")


def test_a_promise_outside_the_transition_meeting_is_409(client: TestClient) -> None:
    deal = open_deal(client)
    response = client.post(f"/deals/{deal['id']}/promises", json={"statement": "go-live in 30 days"})
    assert (response.status_code, response.json()["code"]) == (409, "not_allowed_at_stage")


def test_openapi_document_is_served_at_schema(client: TestClient) -> None:
    document = client.get("/schema/openapi.json").json()
    assert {"/deals", "/deals/{deal_id}", "/deals/{deal_id}/contract", "/deals/{deal_id}/events"} <= set(document["paths"])
    post_deal = document["paths"]["/deals"]["post"]
    assert {p["name"] for p in post_deal["parameters"]} >= {"Idempotency-Key", "X-On-Behalf-Of", "If-Match"}


def test_the_request_id_is_echoed_and_becomes_the_default_correlation_id(client: TestClient) -> None:
    response = client.post(
        "/deals", json={"title": "T", "client_name": "C", "owner": "o"}, headers={"X-Request-ID": "req-77"}
    )
    assert response.headers["x-request-id"] == "req-77"
    events = client.get(f"/deals/{response.json()['id']}/events").json()["events"]
    assert events[0]["correlation_id"] == "req-77"
