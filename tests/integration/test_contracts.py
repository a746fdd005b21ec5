"""The contract in schemas/: generated from the code, checked against it, and obeyed on every road."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from litestar.testing import TestClient

from dealflow import contracts
from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.bootstrap import service_app
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain.deal import Deal
from dealflow.notifier.alerts import DealContext, compose
from dealflow.notifier.messages import DeadLetterMessage
from dealflow.notifier.rules import load_rules
from tests.nats_support import request, stream, wait_for_count
from tests.support import TEST_KEYS, bearer, signed_in, ROOT

SCHEMAS = ROOT / "schemas"


def validator(path: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / path).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_the_committed_schemas_are_what_the_code_generates() -> None:
    assert contracts.drift() == [], "run `dealflow schemas` and commit schemas/"


def test_schemas_holds_no_file_the_code_does_not_make_but_earlier_versions_stay() -> None:
    assert contracts.strays() == [], "remove schema files the code no longer makes"


def test_a_stray_schema_is_reported_and_an_earlier_version_is_not(tmp_path: Path) -> None:
    copy = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, copy)
    (copy / "events" / "DealRenamed.v1.json").write_text("{}")  # an event the code no longer has
    (copy / "events" / "WalkedAway.v3.json").write_text("{}")  # a version ahead of the code's
    assert (copy / "events" / "WalkedAway.v1.json").exists()  # kept: WalkedAway v1 events are still published
    assert contracts.strays(copy) == ["events/DealRenamed.v1.json", "events/WalkedAway.v3.json"]


def test_adding_a_field_to_an_event_without_regenerating_fails_the_drift_check(monkeypatch: pytest.MonkeyPatch) -> None:
    own = dict(vars(Deal.LetterOfIntentSigned).get("__annotations__", {}))
    monkeypatch.setattr(Deal.LetterOfIntentSigned, "__annotations__", {**own, "signed_by": "str"})
    assert contracts.drift() == ["events/LetterOfIntentSigned.v1.json"]


def test_history_keeps_the_schema_of_every_version() -> None:
    v1, v2 = validator("events/WalkedAway.v1.json"), validator("events/WalkedAway.v2.json")
    old = {"deal_id": "c007472b-55fa-4014-b7e1-07ad86ac3720", "version": 6, "type": "WalkedAway", "timestamp": "2026-11-23T09:35:12+00:00", "actor": "ann", "correlation_id": "c", "data": {"reason": "terms"}}
    assert list(v1.iter_errors(old)) == []
    assert [e.message for e in v2.iter_errors(old)] == ["'cited_conditions' is a required property"]


@pytest.fixture
def client(service: DealService, settings: Settings, nats_server: EmbeddedNats) -> Iterator[TestClient]:
    with signed_in(TestClient(service_app(replace(settings, nats_url=nats_server.url), service=service, keys=TEST_KEYS))) as test_client:
        yield test_client


def sent(client: TestClient, method: str, path: str, body: dict[str, Any] | None = None, **headers: str) -> dict[str, Any]:
    response = client.request(method, path, json=body, headers=headers)
    assert response.status_code < 300, response.text
    return response.json()


def test_every_event_of_a_full_lifecycle_on_nats_validates_against_its_schema(client: TestClient, nats_server: EmbeddedNats) -> None:
    later = "2030-01-31"
    walked = sent(client, "POST", "/deals", {"title": "Northwind", "client_name": "Northwind Ltd", "owner": "ann"})["id"]
    deal = sent(client, "POST", "/deals", {"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"})["id"]
    base = f"/deals/{deal}"
    sent(client, "POST", f"{base}/client-facts", {"annual_value": 20_000, "industry": "logistics"})
    sent(client, "POST", f"{base}/client-facts", {"annual_value": 90_000})
    sent(client, "POST", f"{base}/concessions", {"by": "provider", "what": "free workshop"})
    sent(client, "POST", f"{base}/letter-of-intent")
    sent(client, "POST", f"{base}/terms", {"term": "payment_terms_days", "value": 90, "by": "client"})
    sent(client, "POST", f"{base}/terms/payment_terms_days/agreement", {"value": 55})
    sent(client, "POST", f"{base}/terms", {"term": "discount_percent", "value": 3, "by": "provider"})
    sent(client, "POST", f"{base}/non-negotiables/msa_signed_first/refusal", {"reason": "later"})
    condition = sent(client, "GET", base)["conditions"]["open"][0]["id"]
    sent(client, "POST", f"{base}/conditions/{condition}/waiver", {"reason": "board approved"})
    sent(client, "POST", f"{base}/non-negotiables/msa_signed_first/acceptance")
    impasse = sent(client, "POST", f"{base}/impasses", {"topic": "response times"})["id"]
    sent(client, "POST", f"{base}/escalations", {"impasse_id": impasse, "to": "CFO", "counterpart_consented": True, "strategies_tried": ["trade"]})
    sent(client, "POST", f"{base}/impasses/{impasse}/resolution", {"how": "8 hours agreed"})
    for side in ("client", "provider"):
        expectation = {"side": side, "statement": f"{side} need", "metric": "m", "target": "t", "due": later, "priority": 1}
        eid = sent(client, "POST", f"{base}/expectations", expectation)["id"]
        sent(client, "POST", f"{base}/expectations/{eid}/decision", {"agreed": True})
    rejected = sent(client, "POST", f"{base}/expectations", {"side": "provider", "statement": "x", "metric": "m", "target": "t", "due": later, "priority": 2})["id"]
    sent(client, "POST", f"{base}/expectations/{rejected}/decision", {"agreed": False, "reason": "no"})
    sent(client, "POST", f"{base}/expectations/{rejected}/withdrawal", {"reason": "refine"})
    people = [{"name": "Sam", "role": "sales"}, {"name": "Olu", "role": "operations"}, {"name": "Cleo", "role": "client"}]
    sent(client, "POST", f"{base}/transition-meeting", {"participants": people})
    promise = sent(client, "POST", f"{base}/promises", {"statement": "go-live in 10 days"})["id"]
    sent(client, "POST", f"{base}/promises/{promise}/decision", {"accepted": False, "reason": "cannot"})
    assert client.post(f"{base}/contract").status_code == 409
    sent(client, "POST", f"{base}/promises/{promise}/renegotiation", {"statement": "go-live in 30 days"})
    sent(client, "POST", f"{base}/promises/{promise}/decision", {"accepted": True})
    withdrawn = sent(client, "POST", f"{base}/promises", {"statement": "free training"})["id"]
    sent(client, "POST", f"{base}/promises/{withdrawn}/withdrawal", {"reason": "not offered"})
    sent(client, "POST", f"{base}/contract")
    condition = sent(client, "POST", f"/deals/{walked}/terms", {"term": "discount_percent", "value": 30, "by": "client"})["conditions"]["open"][0]["id"]
    sent(client, "POST", f"/deals/{walked}/walk-away", {"reason": "discount far past our limit", "cited_conditions": [condition]})

    stored = len(client.get(f"{base}/events").json()["events"]) + len(client.get(f"/deals/{walked}/events").json()["events"]) + 1
    assert wait_for_count(nats_server.url, stored) == stored
    messages = stream(nats_server.url)
    rules = load_rules(ROOT / "deploy" / "alert-rules.toml")
    alert = validator("alerts/Alert.v1.json")
    seen_types = set()
    for message in messages:
        event = message.event
        schema = validator(f"events/{event['type']}.v{message.headers['Dealflow-Schema-Version']}.json")
        assert list(schema.iter_errors(event)) == [], (event["type"], [e.message for e in schema.iter_errors(event)])
        seen_types.add(event["type"])
        context = DealContext(event["deal_id"], "Acme payroll", "Acme Ltd", "ann")
        for target in rules.targets(event["type"], owner="ann"):
            payload = compose(event, message.headers["ce-id"], context, target).payload()
            assert list(alert.iter_errors(payload)) == []
    assert seen_types >= {
        "WalkAwayConditionRaised", "WalkAwayConditionResolved", "WalkAwayConditionWaived", "SigningRefused",
        "ContractSigned", "WalkedAway", "ConcessionRecorded", "EscalatedOverCounterpart", "ClientFactsRecorded",
    }
    letter = DeadLetterMessage(kind="message", error="the body is not JSON", subject="deals.events.x.Junk", data="junk")
    assert list(validator("alerts/DeadLetter.v1.json").iter_errors(json.loads(letter.model_dump_json(exclude_none=True)))) == []


@pytest.mark.parametrize(
    ("command", "message", "field"),
    [
        ("open_deal", {"title": 7, "client_name": "Acme", "owner": "ann"}, "title"),
        ("open_deal", {"client_name": "Acme", "owner": "ann"}, "title"),
        ("record_expectation", {"side": "buyer", "statement": "s", "metric": "m", "target": "t", "due": "2030-01-01", "priority": 1}, "side"),
        ("propose_term", {"term": "payment_terms_days", "value": 60, "by": "nobody"}, "by"),
        ("walk_away", {"reason": "x", "unexpected": 1}, "unexpected"),
    ],
)
def test_invalid_payloads_are_refused_by_the_schema_on_http_and_nats(
    client: TestClient, nats_server: EmbeddedNats, service: DealService, command: str, message: dict[str, Any], field: str
) -> None:
    deal = client.post("/deals", json={"title": "T", "client_name": "C", "owner": "o"}).json()["id"]
    client.post(f"/deals/{deal}/letter-of-intent")
    as_message = message if command == "open_deal" else {"deal_id": deal, **message}
    schema = validator(f"commands/{command}.v1.json")
    assert any(field in (list(e.absolute_path) + [e.message]) or field in e.message for e in schema.iter_errors(as_message))

    paths = {"open_deal": "/deals", "record_expectation": f"/deals/{deal}/expectations", "propose_term": f"/deals/{deal}/terms", "walk_away": f"/deals/{deal}/walk-away"}
    over_http = client.post(paths[command], json=message)
    assert over_http.status_code == 422 and field in [e["field"] for e in over_http.json()["errors"]]
    headers, reply = request(nats_server.url, command, as_message)
    assert headers["Nats-Service-Error-Code"] == "422" and field in [e["field"] for e in reply["errors"]]
    assert len(client.get(f"/deals/{deal}/events").json()["events"]) == 2
