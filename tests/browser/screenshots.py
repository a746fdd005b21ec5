"""The README's screenshots of the ops dashboard: `make screenshots` (python -m tests.browser.screenshots DIR).

A real `dealflow serve` on a scratch SQLite file, a sample pipeline sent over HTTP as other systems
send it, and Chromium (Debian's) taking the pipeline and one deal. Writes DIR/pipeline.png and
DIR/deal.png; run it again after changing the page.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

from tests.browser.conftest import CHROMIUM, WIDE, Browsing
from tests.browser.test_dashboard import LATER, open_deal, send, to_the_meeting
from tests.processes import clean_environment, serving
from tests.support import token


def sample_pipeline(api: httpx.Client) -> str:
    """A few deals across the stages; returns the one to show: signed, after a refused attempt."""
    for name, owner in (("Globex", "ann"), ("Hooli", "bo"), ("Soylent", "cy")):
        open_deal(api, name, owner)
    send(api, f"/deals/{open_deal(api, 'Initech', 'bo')}/letter-of-intent")
    send(api, f"/deals/{open_deal(api, 'Vandelay', 'ann')}/letter-of-intent")
    to_the_meeting(api, open_deal(api, "Umbrella", "cy"))
    walked = open_deal(api, "Wonka", "ann")
    send(api, f"/deals/{walked}/walk-away", {"reason": "the client wants a price below our floor"})
    shown = open_deal(api, "Acme Ltd", "ann")
    to_the_meeting(api, shown)
    assert api.post(f"/deals/{shown}/contract").status_code == 409  # refused: nothing agreed yet
    for side in ("client", "provider"):
        expectation = {"side": side, "statement": f"{side} monthly report", "metric": "reports", "target": "12 a year", "due": LATER, "priority": 1}
        eid = send(api, f"/deals/{shown}/expectations", expectation)["id"]
        send(api, f"/deals/{shown}/expectations/{eid}/decision", {"agreed": True})
    send(api, f"/deals/{shown}/contract")
    return shown


def main(directory: Path) -> None:
    if CHROMIUM is None:
        sys.exit("no Chromium here: make chromium (Debian: apt-get install chromium)")
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        env = clean_environment(DEALFLOW_SQLITE_PATH=str(Path(scratch) / "deals.sqlite3"))
        with serving(env, Path(scratch) / "serve.log") as url, sync_playwright() as playwright:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token('emitter', sub='crm')}"}) as api:
                shown = sample_pipeline(api)
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            try:
                browsing = Browsing(browser, url, directory)
                page = browsing.open("/ui", "ops")
                expect(page.get_by_test_id("count-prospect")).to_have_text("3")
                # Every card's details (days in stage, badges) are in before the picture is taken.
                page.wait_for_function(
                    "() => [...document.querySelectorAll('[data-testid=card]')].length === 8"
                    " && [...document.querySelectorAll('[data-testid=days-in-stage]')].every(e => /day/.test(e.textContent))"
                )
                page.screenshot(path=str(directory / "pipeline.png"), full_page=True)
                page = browsing.open(f"/ui/deals/{shown}", "ops")
                expect(page.get_by_test_id("verify")).to_contain_text("intact")
                page.screenshot(path=str(directory / "deal.png"), full_page=True)
                browsing.close()
                assert browsing.blocked == [], browsing.blocked
            finally:
                browser.close()
    print(f"dealflow: wrote {directory / 'pipeline.png'} and {directory / 'deal.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))
