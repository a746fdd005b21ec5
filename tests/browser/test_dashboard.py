"""The ops dashboard at /ui, in headless Chromium against a real `dealflow serve` (conftest.py).

Each test saves its screenshots under its own temporary directory (tmp_path/screenshots).
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

pytest.importorskip("playwright", reason="Playwright for Python is not installed (pip install -e '.[dev]')")
from playwright.sync_api import expect  # noqa: E402

from tests.browser.conftest import PHONE, Browsing  # noqa: E402
from tests.support import POLICY  # noqa: E402

LATER = (date.today() + timedelta(days=60)).isoformat()
ATTENDANCE = [{"name": "Sam", "role": "sales"}, {"name": "Olu", "role": "operations"}, {"name": "Cleo", "role": "client"}]


def open_deal(api: httpx.Client, client_name: str = "Acme Ltd", owner: str = "ann") -> str:
    created = api.post("/deals", json={"title": f"{client_name} payroll", "client_name": client_name, "owner": owner})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def send(api: httpx.Client, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    answer = api.post(path, json=body or {})
    assert answer.status_code in (200, 201), answer.text
    return answer.json()  # type: ignore[no-any-return]


def to_the_meeting(api: httpx.Client, deal_id: str) -> None:
    send(api, f"/deals/{deal_id}/letter-of-intent")
    send(api, f"/deals/{deal_id}/transition-meeting", {"participants": ATTENDANCE})


def column(page: Any, stage: str) -> Any:
    return page.locator(f"section.column[data-stage='{stage}']")


def card(page: Any, deal_id: str) -> Any:
    return page.locator(f"[data-testid=card][data-deal-id='{deal_id}']")


def test_the_pipeline_shows_each_stage_with_its_count(api: httpx.Client, browsing: Browsing) -> None:
    prospects = [open_deal(api, name) for name in ("Acme Ltd", "Globex")]
    at_letter = open_deal(api, "Initech", owner="bo")
    send(api, f"/deals/{at_letter}/letter-of-intent")
    in_meeting = open_deal(api, "Umbrella")
    to_the_meeting(api, in_meeting)

    page = browsing.open("/ui", "ops")
    expect(page.get_by_test_id("count-prospect")).to_have_text("2")
    expect(page.get_by_test_id("count-letter_of_intent")).to_have_text("1")
    expect(page.get_by_test_id("count-transition_meeting")).to_have_text("1")
    expect(page.get_by_test_id("count-contract_signed")).to_have_text("0")
    expect(page.get_by_test_id("count-walked_away")).to_have_text("0")
    for deal_id in prospects:
        expect(column(page, "prospect").locator(f"[data-deal-id='{deal_id}']")).to_be_visible()
    expect(card(page, at_letter)).to_contain_text("Initech")
    # Blockers show on the card as short badges: a deal in its meeting still lacks its expectations.
    expect(card(page, in_meeting)).to_contain_text(re.compile("expectation", re.I))
    browsing.screenshot(page, "pipeline")

    # Filtered by owner: only bo's deal counts.
    page.locator("#filter-owner").select_option("bo")
    expect(page.get_by_test_id("count-prospect")).to_have_text("0")
    expect(page.get_by_test_id("count-letter_of_intent")).to_have_text("1")
    browsing.screenshot(page, "pipeline-filtered")


def test_a_command_over_http_moves_its_card_live_without_a_reload(api: httpx.Client, browsing: Browsing) -> None:
    deal_id = open_deal(api)
    page = browsing.open("/ui", "ops")
    expect(column(page, "prospect").locator(f"[data-deal-id='{deal_id}']")).to_be_visible()
    page.evaluate("window.__not_reloaded = true")

    send(api, f"/deals/{deal_id}/letter-of-intent")
    expect(column(page, "letter_of_intent").locator(f"[data-deal-id='{deal_id}']")).to_be_visible(timeout=2000)
    expect(column(page, "prospect").locator(f"[data-deal-id='{deal_id}']")).to_have_count(0)
    expect(page.get_by_test_id("count-letter_of_intent")).to_have_text("1")
    # A deal opened elsewhere appears too.
    second = open_deal(api, "Globex")
    expect(column(page, "prospect").locator(f"[data-deal-id='{second}']")).to_be_visible(timeout=2000)
    assert page.evaluate("window.__not_reloaded") is True, "the page reloaded"
    browsing.screenshot(page, "pipeline-live")


def test_a_deal_shows_its_blockers_then_its_signing_in_the_timeline(api: httpx.Client, browsing: Browsing) -> None:
    deal_id = open_deal(api)
    to_the_meeting(api, deal_id)
    page = browsing.open(f"/ui/deals/{deal_id}", "ops")
    expect(page.get_by_test_id("stage")).to_contain_text(re.compile("transition meeting", re.I))
    blockers = page.get_by_test_id("blockers").locator("li.blocker")
    expect(blockers.first).to_be_visible()
    assert blockers.count() >= 2, "both sides' expectations are missing"
    browsing.screenshot(page, "deal-blocked")

    refused = api.post(f"/deals/{deal_id}/contract")
    assert refused.status_code == 409
    for side in ("client", "provider"):
        expectation = {"side": side, "statement": "monthly report", "metric": "reports", "target": "12 a year", "due": LATER, "priority": 1}
        eid = send(api, f"/deals/{deal_id}/expectations", expectation)["id"]
        send(api, f"/deals/{deal_id}/expectations/{eid}/decision", {"agreed": True})
    send(api, f"/deals/{deal_id}/contract")

    page.reload()
    expect(page.get_by_test_id("stage")).to_contain_text(re.compile("signed", re.I))
    expect(page.get_by_test_id("blockers").locator("li.blocker")).to_have_count(0)
    expect(page.get_by_test_id("timeline").locator("li.fact[data-type='ContractSigned']")).to_have_count(1)
    expect(page.get_by_test_id("timeline").locator("li.fact").first).to_contain_text("crm")  # who
    expect(page.get_by_test_id("refused-lane")).to_contain_text(re.compile("refused|attempt", re.I))
    expect(page.get_by_test_id("verify")).to_contain_text(re.compile("intact", re.I))
    browsing.screenshot(page, "deal-signed")


def test_the_as_of_control_shows_the_deal_at_an_earlier_stage(api: httpx.Client, browsing: Browsing) -> None:
    deal_id = open_deal(api)
    to_the_meeting(api, deal_id)  # version 1 opened, 2 letter of intent, 3 meeting
    page = browsing.open(f"/ui/deals/{deal_id}", "auditor", sub="auditor@firm")
    expect(page.get_by_test_id("stage")).to_contain_text(re.compile("transition meeting", re.I))
    page.locator("#as-of-version").fill("2")
    page.locator("#as-of-apply").click()
    expect(page.get_by_test_id("as-of-banner")).to_be_visible()
    expect(page.get_by_test_id("stage")).to_contain_text(re.compile("letter of intent", re.I))
    browsing.screenshot(page, "deal-as-of")
    page.locator("#as-of-now").click()
    expect(page.get_by_test_id("stage")).to_contain_text(re.compile("transition meeting", re.I))


def test_an_auditor_sees_no_write_controls_and_no_private_limits(api: httpx.Client, browsing: Browsing) -> None:
    deal_id = open_deal(api)
    # The policy's private limits, as GET /policy shows them to those who may see them.
    private = re.compile(r"\blimit\b", re.I)
    assert all(term.limit is not None for term in POLICY.terms.values())

    page = browsing.open(f"/ui/deals/{deal_id}", "emitter", "admin", sub="admin@firm")
    expect(page.get_by_test_id("write-controls")).to_be_visible()

    page = browsing.open(f"/ui/deals/{deal_id}", "auditor", sub="auditor@firm")
    expect(page.get_by_test_id("stage")).to_be_visible()
    expect(page.get_by_test_id("verify")).to_contain_text(re.compile("intact", re.I))
    expect(page.get_by_test_id("write-controls")).to_have_count(0)
    assert page.locator("main button:has-text('sign'), main button:has-text('walk')").count() == 0
    page = browsing.open("/ui", "auditor", sub="auditor@firm")
    expect(page.get_by_test_id("count-prospect")).to_have_text("1")
    expect(page.get_by_test_id("policy")).to_contain_text(next(iter(POLICY.terms)))
    assert not private.search(page.get_by_test_id("policy").inner_text())
    browsing.screenshot(page, "pipeline-auditor")

    page = browsing.open("/ui", "approver", sub="approver@firm")
    expect(page.get_by_test_id("policy")).to_contain_text(private)


def test_the_pipeline_fits_a_phone_and_works_from_the_keyboard(api: httpx.Client, browsing: Browsing) -> None:
    deal_id = open_deal(api)
    page = browsing.open("/ui", "ops", viewport=PHONE)
    expect(card(page, deal_id)).to_be_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways on a phone: {width}px"
    # Tab reaches the deal's card link, and Enter opens the deal.
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate(f"document.activeElement.closest(\"[data-deal-id='{deal_id}']\") !== null"):
            break
    else:
        pytest.fail("the keyboard never reached the deal's card")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/ui/deals/{deal_id}"))
    expect(page.get_by_test_id("stage")).to_be_visible()
    browsing.screenshot(page, "deal-phone")
