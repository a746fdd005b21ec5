"""The bounds of a deal over HTTP: into a real store, refused answers in the documented shape, nothing stored."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from dealflow.deal_lifecycle.application import commands as c
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.bootstrap import service_app
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.domain import bounds
from dealflow.deal_lifecycle.domain.attempts import SigningAttempts
from tests.support import TEST_KEYS, bearer, signed_in, ctx, in_transition_meeting, open_deal


@pytest.fixture
def client(service: DealService, settings: Settings) -> Iterator[TestClient]:
    with signed_in(TestClient(service_app(settings, service=service, keys=TEST_KEYS))) as test_client:
        yield test_client


@pytest.mark.parametrize(("term", "value"), [("payment_terms_days", -30), ("discount_percent", 150), ("contract_length_months", 0)])
def test_a_term_value_outside_its_range_is_refused_422_naming_value(
    client: TestClient, service: DealService, term: str, value: int
) -> None:
    deal_id = open_deal(service)
    for path, body in ((f"/deals/{deal_id}/terms", {"term": term, "value": value, "by": "client"}), (f"/deals/{deal_id}/terms/{term}/agreement", {"value": value})):
        refused = client.post(path, json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "invalid_command"
        (error,) = refused.json()["errors"]
        assert error["field"] == "value" and "must be between" in error["rule"]
    assert len(service.history(deal_id)) == 1, "nothing stored"


def test_a_full_deal_refuses_one_more_promise_with_409_deal_limit_reached(client: TestClient, service: DealService) -> None:
    deal_id = in_transition_meeting(service)
    for n in range(bounds.MAX_PROMISES):
        service.handle("record_sales_promise", deal_id, c.RecordSalesPromise(statement=f"promise {n}"), ctx())
    version = service.get_deal(deal_id).version
    refused = client.post(f"/deals/{deal_id}/promises", json={"statement": "one more"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "deal_limit_reached"
    assert "Sales promises" in refused.json()["message"] and str(bounds.MAX_PROMISES) in refused.json()["message"]
    assert service.get_deal(deal_id).version == version

    signing = client.post(f"/deals/{deal_id}/contract")
    assert signing.status_code == 409
    body = signing.json()
    assert len(body["blockers"]) == 50 and body["blockers_total"] > bounds.MAX_PROMISES
    (recorded,) = [e for e in service.events.get(SigningAttempts.create_id(str(deal_id))) if type(e).__name__ == "SigningRefused"]
    assert (len(recorded.blockers), recorded.blockers_total) == (50, body["blockers_total"])
