"""The ops dashboard as the service serves it: open pages and assets under a strict CSP, self-contained
(nothing fetched from elsewhere, nothing inline), shipped as package data; `GET /alerts` from a real
notifier store; the moment a deal entered its stage; the dashboard link of `dealflow up`."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from litestar.testing import TestClient

from dealflow.deal_lifecycle.adapters.identity import dev_jwks
from dealflow.deal_lifecycle.application.service import DealService
from dealflow.deal_lifecycle.bootstrap import service_app
from dealflow.deal_lifecycle.config import Settings
from dealflow.deal_lifecycle.entrypoints.cli.operate import _dashboard_link
from dealflow.deal_lifecycle.entrypoints.http.ui import ASSETS, CONTENT_SECURITY_POLICY
from dealflow.notifier.store import DEAD, DELIVERED, AlertStore
from tests.support import ROOT, TEST_KEYS, bearer

UI = ROOT / "services" / "deal_lifecycle" / "entrypoints" / "http" / "ui_assets"
PAGES = ["/ui", "/ui/alerts", "/ui/deals/5f0c2b1e-6a1d-4c55-9c1e-3d2b7f4a9e10"]
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DEAL = {"title": "Acme payroll", "client_name": "Acme Ltd", "owner": "ann"}


@pytest.fixture
def notifier_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the notifier's store is said to be (DEALFLOW_NOTIFIER_DB), not yet made."""
    path = tmp_path / "notifier.sqlite3"
    monkeypatch.setenv("DEALFLOW_NOTIFIER_DB", str(path))
    monkeypatch.delenv("DEALFLOW_NOTIFIER_DATABASE_URL", raising=False)
    return path


@pytest.fixture
def client(service: DealService, settings: Settings, notifier_db: Path) -> Iterator[TestClient]:
    # No token by default: the pages are open; each API call below says who calls.
    with TestClient(service_app(settings, service=service, keys=TEST_KEYS)) as test_client:
        yield test_client


# -- the pages and assets ------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_each_page_is_the_html_shell_open_without_a_token_under_a_strict_csp(client: TestClient, path: str) -> None:
    page = client.get(path)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == CSP == CONTENT_SECURITY_POLICY
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<main id=\"main\"" in page.text and 'id="token-form"' in page.text and 'id="token-input"' in page.text


@pytest.mark.parametrize(("name", "media_type"), sorted(ASSETS.items()))
def test_each_asset_is_served_with_its_type_and_the_same_headers(client: TestClient, name: str, media_type: str) -> None:
    asset = client.get(f"/ui/static/{name}")
    assert asset.status_code == 200, asset.text
    assert asset.headers["content-type"] == f"{media_type}; charset=utf-8"
    assert asset.headers["content-security-policy"] == CSP
    assert asset.headers["x-content-type-options"] == "nosniff"
    assert asset.content == (UI / name).read_bytes()


@pytest.mark.parametrize("path", ["/ui/static/index.html.bak", "/ui/static/ui.py", "/ui/static/..%2Fui.py", "/ui/deals/not-a-deal", "/ui/static/"])
def test_nothing_else_is_served_and_a_miss_is_the_apis_json_404(client: TestClient, path: str) -> None:
    miss = client.get(path)
    assert miss.status_code == 404
    assert miss.json()["code"] == "not_found"


def test_every_file_of_the_dashboard_is_served_and_the_page_loads_only_assets_of_its_own(client: TestClient) -> None:
    shipped = {p.name for p in UI.iterdir()}
    assert shipped == {*ASSETS, "index.html"}
    html = (UI / "index.html").read_text()
    referenced = re.findall(r'\b(?:src|href)="([^"]*)"', html)
    assets = [ref for ref in referenced if ref.startswith("/ui/static/")]
    assert sorted(assets) == sorted(f"/ui/static/{name}" for name in ASSETS), "every asset loaded, and only those"
    # Otherwise only links within the dashboard, the skip link, and the empty inline icon (no request for /favicon.ico).
    assert [ref for ref in referenced if ref not in assets] == ["data:,", "#main", "/ui", "/ui", "/ui/alerts"]


@pytest.mark.parametrize("name", ["index.html", *ASSETS])
def test_nothing_is_fetched_from_elsewhere_and_nothing_runs_inline(name: str) -> None:
    text = (UI / name).read_text()
    # The SVG namespace is a name, never fetched.
    assert re.findall(r"(?:https?:)?//[\w.-]+\.\w+", text.replace("http://www.w3.org/2000/svg", "")) == []
    assert "@import" not in text and "url(" not in text
    if name.endswith(".html"):
        assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", text) == [], "no inline script"
        assert "<style" not in text and " style=" not in text, "no inline style"
        assert re.findall(r"\son\w+=", text) == [], "no inline handler"
    if name.endswith(".js"):
        # Values reach the page as text only.
        for risky in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
            assert risky not in text, risky


def test_the_pages_are_not_in_the_openapi_document_and_alerts_is(client: TestClient) -> None:
    paths = client.get("/schema/openapi.json").json()["paths"]
    assert not [path for path in paths if path.startswith("/ui")]
    assert "/alerts" in paths


def test_the_dashboard_is_package_data_of_the_wheel() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package = "dealflow.deal_lifecycle.entrypoints.http.ui_assets"
    assert package in tool["packages"]
    patterns = tool["package-data"][package]
    assert all(any(Path(name).match(pattern) for pattern in patterns) for name in ["index.html", *ASSETS])


# -- GET /alerts ---------------------------------------------------------------------------------


def alert(deal_id: str, n: int, recipient: str = "ops", channel: str = "ops_webhook") -> Any:
    return SimpleNamespace(
        id=f"{deal_id}:{n}/{recipient}/{channel}", event_id=f"{deal_id}:{n}", deal_id=deal_id, event_type="LetterOfIntentSigned",
        recipient=recipient, channel=channel, address=None, title="Letter of intent signed", text="the private limit is 60 days",
    )


def written(path: Path) -> None:
    """A notifier store as the notifier writes it: one deal's alert delivered at the second try, one dead-lettered, another deal's, a dead letter."""
    store = AlertStore(sqlite_path=path)
    try:
        first = alert("deal-a", 2)
        store.record_attempt(first.id, 1, "failed", "ConnectError: refused")
        store.record_outcome(first, DELIVERED, 2, None, delivered_at_attempt=2)
        dead = alert("deal-a", 3, "owner", "email")
        for attempt in (1, 2, 3):
            store.record_attempt(dead.id, attempt, "failed", "SMTP refused")
        store.record_outcome(dead, DEAD, 3, "SMTP refused")
        other = alert("deal-b", 2, "journal", "log")
        store.record_outcome(other, DELIVERED, 1, None, delivered_at_attempt=1)
        store.record_dead_letter("m-1", "deals.events.deal-b.Nonsense", "not a known event type", "{}")
    finally:
        store.close()


def test_alerts_are_read_from_the_notifiers_store_newest_first_with_their_tries(client: TestClient, notifier_db: Path) -> None:
    written(notifier_db)
    answer = client.get("/alerts", headers=bearer("ops"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["store"] == f"SQLite at {notifier_db}"
    assert [a["alert_id"] for a in body["alerts"]] == ["deal-b:2/journal/log", "deal-a:3/owner/email", "deal-a:2/ops/ops_webhook"]
    delivered = body["alerts"][2]
    assert (delivered["status"], delivered["attempts"]) == ("delivered", 2)
    assert [(t["attempt"], t["result"], t["error"]) for t in delivered["tries"]] == [(1, "failed", "ConnectError: refused"), (2, "delivered", None)]
    dead = body["alerts"][1]
    assert (dead["status"], dead["last_error"], len(dead["tries"])) == ("dead", "SMTP refused", 3)
    assert [(d["message_id"], d["reason"]) for d in body["dead_letters"]] == [("m-1", "not a known event type")]
    # What an alert said may carry a limit only some recipients see: it is not shown here.
    assert "private limit" not in answer.text and "title" not in delivered


def test_alerts_of_one_deal_and_at_most_limit_of_them(client: TestClient, notifier_db: Path) -> None:
    written(notifier_db)
    one = client.get("/alerts", params={"deal_id": "deal-a"}, headers=bearer("auditor")).json()
    assert {a["deal_id"] for a in one["alerts"]} == {"deal-a"} and one["dead_letters"] == []
    assert [d["message_id"] for d in client.get("/alerts", params={"deal_id": "deal-b"}, headers=bearer("admin")).json()["dead_letters"]] == ["m-1"]
    newest = client.get("/alerts", params={"limit": 1}, headers=bearer("ops")).json()
    assert [a["alert_id"] for a in newest["alerts"]] == ["deal-b:2/journal/log"]
    for limit in (0, 501, -1):
        refused = client.get("/alerts", params={"limit": limit}, headers=bearer("ops"))
        assert refused.status_code in (400, 422), refused.text
        assert "code" in refused.json()


def test_alerts_are_for_ops_auditors_and_admins(client: TestClient, notifier_db: Path) -> None:
    written(notifier_db)
    assert client.get("/alerts").status_code == 401
    for role in ("emitter", "approver"):
        refused = client.get("/alerts", headers=bearer(role))
        assert (refused.status_code, refused.json()["allowed_roles"]) == (403, ["ops", "auditor", "admin"])


def test_without_a_notifier_store_alerts_are_unavailable_and_none_is_made(client: TestClient, notifier_db: Path) -> None:
    answer = client.get("/alerts", headers=bearer("ops"))
    assert answer.status_code == 404
    assert answer.json()["code"] == "alerts_unavailable"
    assert str(notifier_db) in answer.json()["message"]
    assert not notifier_db.exists()


# -- the moment a deal entered its stage (days in stage on the cards) ------------------------------


def test_a_deal_says_when_it_entered_its_stage_now_and_as_of(client: TestClient) -> None:
    emitter = bearer("emitter")
    opened = client.post("/deals", json=DEAL, headers=emitter).json()
    assert opened["stage_entered_at"] == opened["opened_at"]
    signed = client.post(f"/deals/{opened['id']}/letter-of-intent", headers=emitter).json()
    assert signed["stage_entered_at"] > opened["opened_at"]
    assert signed["stage_entered_at"] == client.get(f"/deals/{opened['id']}/events", headers=emitter).json()["events"][-1]["timestamp"]
    then = client.get(f"/deals/{opened['id']}", params={"as_of_version": 1}, headers=emitter).json()
    assert (then["stage"], then["stage_entered_at"]) == ("prospect", opened["opened_at"])
    gone = client.post(f"/deals/{opened['id']}/walk-away", json={"reason": "not a fit"}, headers=emitter).json()
    assert gone["stage"] == "walked_away" and gone["stage_entered_at"] == gone["updated_at"]


# -- the link `dealflow up` prints -----------------------------------------------------------------


def test_up_links_the_dashboard_with_an_ops_and_emitter_token_in_the_fragment(tmp_path: Path) -> None:
    settings = Settings(sqlite_path=tmp_path / "var" / "dealflow.sqlite3")
    line = _dashboard_link(settings, "0.0.0.0", 8123)  # noqa: S104
    url = urlsplit(line.split()[0])
    assert (url.scheme, url.netloc, url.path) == ("http", "127.0.0.1:8123", "/ui")
    token = url.fragment.removeprefix("token=")
    key = jwt.PyJWK(dev_jwks(settings.state_dir)["keys"][0])
    claims = jwt.decode(token, key, algorithms=["EdDSA"])
    assert sorted(claims["roles"]) == ["emitter", "ops"] and claims["sub"] == "ops-dashboard"
    with_idp = _dashboard_link(Settings(sqlite_path=tmp_path / "x.sqlite3", auth_jwks="https://idp.example/jwks.json"), "127.0.0.1", 8000)
    assert with_idp.startswith("http://127.0.0.1:8000/ui ") and "#token=" not in with_idp
