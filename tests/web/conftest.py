"""Real headless Chromium (Debian's, installed by `make test`) driven by Playwright, against the live hub."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Live, live
from tests.items.test_sandbox_family import sandbox

__all__ = ["live", "sandbox"]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "tablet": {"width": 768, "height": 1024}}


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "Debian's chromium is missing: `make test` installs it (scripts/ensure-system-deps.sh)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> tuple[str, dict[str, int]]:
    return request.param, VIEWPORTS[request.param]


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as a test artifact."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(live: Live, browser: Any, client_id: str, person: str, viewport: dict[str, int]) -> Any:
    """A new browser context signed in through a one-time link; returns its page."""
    from materials_store.web_sessions import issue_link

    with live.handle.sessions() as session:
        token = issue_link(session, client_id=client_id, person=person)
        session.commit()
    context = browser.new_context(viewport=viewport, locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    page.goto(f"{live.url}/signin?token={token}")
    return page
