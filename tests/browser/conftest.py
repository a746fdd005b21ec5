"""Browser tests: headless Chromium (Debian's `chromium`, driven by Playwright for Python through its
`executable_path`, since Playwright's own browser download is not reachable everywhere) against a real
`dealflow serve` on a SQLite file.

Every request the page makes that is not to the service is blocked and remembered: a test that ends
with one fails, so the page is proven self-contained (no CDN, no font, no analytics). Without Chromium
(or Playwright) the tests are skipped with one line saying why; `make test-browser` installs Chromium
on Debian and sets DEALFLOW_REQUIRE_BROWSER, under which a missing browser fails instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.processes import clean_environment, serving
from tests.support import token

REQUIRED = os.environ.get("DEALFLOW_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("DEALFLOW_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
WIDE, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.browser)


def _missing() -> str | None:
    try:
        import playwright  # noqa: F401, PLC0415
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[dev]')"
    if CHROMIUM is None:
        return "no Chromium here (Debian: apt-get install chromium, or `make test-browser`, which installs it)"
    return None


# Module-scoped, not session-scoped: sync Playwright runs an event loop on this thread while it is open,
# and the rest of the suite calls asyncio.run(); it must be closed when the browser tests end.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing:
        if REQUIRED:
            pytest.fail(f"browser tests required (DEALFLOW_REQUIRE_BROWSER=1): {missing}")
        pytest.skip(f"browser tests skipped: {missing}")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def service_url(browser: Any, tmp_path: Path) -> Iterator[str]:
    """A real `dealflow serve` on its own SQLite file, trusting the tests' tokens."""
    env = clean_environment(DEALFLOW_SQLITE_PATH=str(tmp_path / "deals.sqlite3"))
    with serving(env, tmp_path / "serve.log") as url:
        yield url


@pytest.fixture
def api(service_url: str) -> Iterator[httpx.Client]:
    """The service's HTTP API as another system sends to it (emitter)."""
    with httpx.Client(base_url=service_url, headers={"Authorization": f"Bearer {token('emitter', sub='crm')}"}, timeout=10) as client:
        yield client


class Browsing:
    """A fresh browser context and page on the service, every other host blocked and remembered."""

    def __init__(self, browser: Any, service_url: str, shots: Path) -> None:
        self.service_url, self.shots, self.blocked = service_url, shots, []
        self._browser, self.context = browser, None

    def open(self, path: str, *roles: str, sub: str = "ops@firm", viewport: dict[str, int] = WIDE) -> Any:
        if self.context is not None:
            self.context.close()
        self.context = self._browser.new_context(viewport=viewport)
        page = self.context.new_page()
        page.route("**/*", self._only_the_service)
        page.goto(f"{self.service_url}{path}#token={token(*roles, sub=sub)}")
        return page

    def _only_the_service(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(f"{self.service_url}/") or url == self.service_url:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def screenshot(self, page: Any, name: str) -> Path:
        path = self.shots / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def close(self) -> None:
        if self.context is not None:
            self.context.close()


@pytest.fixture
def browsing(browser: Any, service_url: str, tmp_path: Path) -> Iterator[Browsing]:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    session = Browsing(browser, service_url, shots)
    try:
        yield session
    finally:
        session.close()
    assert session.blocked == [], f"the page asked for something outside the service: {session.blocked}"
