"""Identity and roles on every door: each route and NATS command for each role, made from the command
table and the reads' table; waivers; private limits; who is recorded; tokens never in the logs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from dealflow.deal_lifecycle.adapters.embedded_nats import EmbeddedNats
from dealflow.deal_lifecycle.application.access import READS, AccessRole
from dealflow.deal_lifecycle.application.command_table import COMMANDS
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.bootstrap import service_app
from dealflow.deal_lifecycle.config import Settings
from tests.nats_support import request, wait_for_responder
from tests.processes import clean_environment, serving
from tests.support import POLICY_FILE, TEST_KEYS, bearer, signed_in, token

ROLES = [str(role) for role in AccessRole]
DEAL = {"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"}


@pytest.fixture
def client(service: DealService, settings: Settings, nats_server: EmbeddedNats) -> Iterator[TestClient]:
    with signed_in(TestClient(service_app(replace(settings, nats_url=nats_server.url), service=service, keys=TEST_KEYS)), "emitter") as test_client:
        wait_for_responder(nats_server.url)
        yield test_client


def read_path(name: str, deal_id: str) -> str:
    return {
        "list_deals": "/deals",
        "get_deal": f"/deals/{deal_id}",
        "history": f"/deals/{deal_id}/events",
        "health": f"/deals/{deal_id}/health",
        "verify_deal": f"/deals/{deal_id}/verify",
        "policy": "/policy",
        "stream": "/stream",
        "alerts": "/alerts",
    }[name]


def call(client: TestClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    # A stream that is allowed would never end: an unusable Last-Event-ID makes it answer at once (400), after the roles were judged.
    extra = {"Last-Event-ID": "not-a-position"} if path == "/stream" else {}
    return client.request(method, path, json={} if method == "POST" else None, headers={**headers, **extra})


def test_every_route_for_every_role_and_without_a_token(client: TestClient) -> None:
    deal_id = client.post("/deals", json=DEAL).json()["id"]
    routes = [("POST", re.sub(r"{(\w+)}", lambda m: deal_id if m[1] == "deal_id" else "x1", c.path), c.roles) for c in COMMANDS]
    routes += [("GET", read_path(name, deal_id), roles) for name, roles in READS.items()]
    assert len(routes) == len(COMMANDS) + len(READS)
    for method, path, allowed in routes:
        anonymous = client.request(method, path, json={} if method == "POST" else None, headers={"Authorization": ""})
        assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthenticated"), (method, path)
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        for role in ROLES:
            answer = call(client, method, path, bearer(role))
            if role in allowed:
                assert answer.status_code not in (401, 403), (method, path, role, answer.text)
            else:
                assert (answer.status_code, answer.json()["code"]) == (403, "forbidden"), (method, path, role)
                assert answer.json()["allowed_roles"] == sorted(allowed, key=ROLES.index)


def test_every_nats_command_for_every_role_and_without_a_token(client: TestClient, nats_server: EmbeddedNats) -> None:
    deal_id = client.post("/deals", json=DEAL).json()["id"]
    for command in COMMANDS:
        ids = {name: deal_id if name == "deal_id" else "x1" for name in re.findall(r"{(\w+)}", command.path)}
        headers, reply = request(nats_server.url, command.name, ids, signed=False)
        assert (headers.get("Nats-Service-Error-Code"), reply["code"]) == ("401", "unauthenticated"), command.name
        for role in ROLES:
            headers, reply = request(nats_server.url, command.name, ids, bearer(role))
            status = headers.get("Nats-Service-Error-Code")
            if role in command.roles:
                assert status not in ("401", "403"), (command.name, role, reply)
            else:
                assert (status, reply["code"], reply["allowed_roles"]) == ("403", "forbidden", sorted(command.roles, key=ROLES.index))


def test_the_openapi_document_and_liveness_are_open_to_all(client: TestClient) -> None:
    anonymous = {"Authorization": ""}
    assert client.get("/schema/openapi.json", headers=anonymous).status_code == 200
    assert client.get("/health/live", headers=anonymous).json() == {"status": "live"}
    document = client.get("/schema/openapi.json").json()
    assert document["components"]["securitySchemes"]["BearerToken"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": document["components"]["securitySchemes"]["BearerToken"]["description"]
    }
    assert document["security"] == [{"BearerToken": []}]


def test_a_bad_token_is_401_naming_the_reason_never_the_token(client: TestClient) -> None:
    expired = token("emitter", ttl=-3600)
    answer = client.post("/deals", json=DEAL, headers={"Authorization": f"Bearer {expired}"})
    assert (answer.status_code, answer.json()["code"], answer.json()["message"]) == (401, "unauthenticated", "the token has expired")
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="dealflow", error="invalid_token"'
    assert expired not in answer.text
    assert client.post("/deals", json=DEAL, headers={"Authorization": f"Basic {expired}"}).json()["message"] == "the Authorization header must be 'Bearer <token>'"


def test_a_waiver_by_a_non_approver_stores_nothing_and_one_by_an_approver_or_admin_records_who_and_as_what(
    client: TestClient, service: DealService
) -> None:
    deal_id = client.post("/deals", json=DEAL).json()["id"]
    for value in (90, 95):  # two conditions on two terms
        client.post(f"/deals/{deal_id}/terms", json={"term": "payment_terms_days" if value == 90 else "discount_percent", "value": value if value == 90 else 30, "by": "client"})
    first, second = [c["id"] for c in client.get(f"/deals/{deal_id}", headers=bearer("approver")).json()["conditions"]["open"]]
    stored = service.recorder.max_notification_id()
    refused = client.post(f"/deals/{deal_id}/conditions/{first}/waiver", json={"reason": "strategic"}, headers=bearer("emitter", "ops", "auditor"))
    assert (refused.status_code, refused.json()["allowed_roles"]) == (403, ["approver", "admin"])
    assert service.recorder.max_notification_id() == stored
    assert client.post(f"/deals/{deal_id}/conditions/{first}/waiver", json={"reason": "strategic"}, headers=bearer("approver", sub="vic@firm")).status_code == 200
    assert client.post(f"/deals/{deal_id}/conditions/{second}/waiver", json={"reason": "board"}, headers=bearer("admin", sub="root@firm")).status_code == 200
    waivers = [e for e in client.get(f"/deals/{deal_id}/events").json()["events"] if e["type"] == "WalkAwayConditionWaived"]
    assert [(e["actor"], e["data"]["role"]) for e in waivers] == [("vic@firm", "approver"), ("root@firm", "admin")]


def test_the_policy_shows_private_limits_to_approvers_and_admins_only(client: TestClient) -> None:
    for role in ROLES:
        terms = client.get("/policy", headers=bearer(role)).json()["terms"]
        assert terms["payment_terms_days"]["public"] == 45
        if role in ("approver", "admin"):
            assert terms["payment_terms_days"]["limit"] == 60
        else:
            assert all("limit" not in term for term in terms.values()), role


def _number_shown(text: str, number: str) -> bool:
    """The number as JSON or words write it (`:60,`, `of 60`), not as part of an id or a hash."""
    return re.search(rf"(?<![\w.\-]){re.escape(number)}(?![\w.])", text) is not None


def test_no_view_shows_a_private_limit_to_a_role_that_may_not_see_it(client: TestClient, nats_server: EmbeddedNats) -> None:
    # payment_terms_days: public 45, limit 60; demanded at 97, then revised to 58 (within the limit), then 99 again.
    deal_id = client.post("/deals", json=DEAL).json()["id"]
    answer = client.post(f"/deals/{deal_id}/terms", json={"term": "payment_terms_days", "value": 97, "by": "client"})
    client.post(f"/deals/{deal_id}/terms", json={"term": "payment_terms_days", "value": 58, "by": "client"})
    client.post(f"/deals/{deal_id}/terms", json={"term": "payment_terms_days", "value": 99, "by": "client"})
    too_far = client.post(f"/deals/{deal_id}/terms", json={"term": "payment_terms_days", "value": 75, "by": "provider"})
    assert too_far.json()["errors"][0]["rule"] == "the firm does not propose payment_terms_days past its limit"
    _, nats_reply = request(nats_server.url, "propose_term", {"deal_id": deal_id, "term": "payment_terms_days", "value": 98, "by": "client"}, bearer("emitter"))
    views = {
        "command answer": answer.text,
        "NATS reply": json.dumps(nats_reply),
        "error": too_far.text,
    }
    for role in ("emitter", "ops", "auditor"):
        for path in (f"/deals/{deal_id}", f"/deals/{deal_id}/events", f"/deals/{deal_id}/health", f"/deals/{deal_id}?as_of_version=2"):
            views[f"{role} {path}"] = client.get(path, headers=bearer(role)).text
    for where, text in views.items():
        assert not _number_shown(text, "60"), where
    # The approver sees the number, and the events keep it whole.
    approver = client.get(f"/deals/{deal_id}/events", headers=bearer("approver")).text
    assert _number_shown(approver, "60") and "within the limit of 60" in approver
    assert "within the limit" in views["emitter /deals/" + deal_id + "/events"]


def test_the_actor_is_the_tokens_sub_and_on_behalf_of_is_recorded_beside_it(client: TestClient, nats_server: EmbeddedNats) -> None:
    opened = client.post("/deals", json=DEAL, headers={**bearer("emitter", sub="crm"), "X-On-Behalf-Of": "Ann Smith", "X-Actor": "mallory"})
    deal_id = opened.json()["id"]
    request(nats_server.url, "sign_letter_of_intent", {"deal_id": deal_id}, {**bearer("emitter", sub="esign"), "X-On-Behalf-Of": "Bob Jones"})
    events = client.get(f"/deals/{deal_id}/events").json()["events"]
    assert [(e["actor"], e["on_behalf_of"]) for e in events] == [("crm", "Ann Smith"), ("esign", "Bob Jones")]


def test_tokens_never_reach_the_log(tmp_path: Path, nats_server: EmbeddedNats) -> None:
    env = clean_environment(
        DEALFLOW_SQLITE_PATH=str(tmp_path / "deals.sqlite3"), DEALFLOW_POLICY=str(POLICY_FILE), NATS_URL=nats_server.url
    )
    log = tmp_path / "serve.log"
    good, expired = token("emitter", "ops"), token("emitter", ttl=-3600)
    forged = good[:-6] + ("AAAAAA" if not good.endswith("AAAAAA") else "BBBBBB")
    with serving(env, log) as url:
        deal_id = httpx.post(f"{url}/deals", json=DEAL, headers={"Authorization": f"Bearer {good}"}).json()["id"]
        httpx.post(f"{url}/deals/{deal_id}/contract", headers={"Authorization": f"Bearer {good}"})
        httpx.post(f"{url}/deals", json={"title": ""}, headers={"Authorization": f"Bearer {good}"})
        for bad in (expired, forged, "x" * 9000):
            assert httpx.post(f"{url}/deals", json=DEAL, headers={"Authorization": f"Bearer {bad}"}).status_code in (400, 401)
        # The same over NATS: accepted, refused at signing, malformed, and each bad token.
        wait_for_responder(nats_server.url)
        request(nats_server.url, "sign_letter_of_intent", {"deal_id": deal_id}, {"Authorization": f"Bearer {good}"}, signed=False)
        request(nats_server.url, "sign_contract", {"deal_id": deal_id}, {"Authorization": f"Bearer {good}"}, signed=False)
        request(nats_server.url, "open_deal", {"title": ""}, {"Authorization": f"Bearer {good}"}, signed=False)
        for bad in (expired, forged, "x" * 9000):
            headers, _ = request(nats_server.url, "open_deal", DEAL, {"Authorization": f"Bearer {bad}"}, signed=False)
            assert headers.get("Nats-Service-Error-Code") in ("400", "401"), headers
    text = log.read_text()
    assert '"command"' in text  # the log has lines, about these requests
    assert "sign_letter_of_intent" in text  # ... and about those over NATS
    for secret in (good, expired, forged, good.split(".")[2], expired.split(".")[2]):
        assert secret not in text
