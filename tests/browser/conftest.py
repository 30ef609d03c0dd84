"""Browser fixtures: Debian's Chromium driven by Playwright, axe-core for WCAG checks.

Locally the browser tests skip (saying why) when Chromium, Playwright or
axe-core is missing; with CI=true they fail instead, so CI cannot pass them
by accident. ``.ci/run`` installs all three.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.accounts.conftest import live_mail_server, mailbox  # noqa: F401 - fixtures
from tests.conftest import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        _missing("Debian's chromium is not installed (apt-get install chromium)")
    if not AXE.exists():
        _missing("axe-core is not installed (cd tests/browser && npm ci)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(locale="de-DE")
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def server(live_mail_server: LiveServer) -> LiveServer:  # noqa: F811 - the imported fixture
    """The app on a free loopback port, delivering mail to the test's SMTP server."""
    return live_mail_server


def arrive(page, url: str) -> None:
    """Wait until the browser is at ``url`` (a glob); if it never gets there, fail saying
    where it is instead and what that page says."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_url(url)
    except PlaywrightTimeout:
        try:
            text = " ".join(page.inner_text("body", timeout=2000).split())[:600]
        except PlaywrightTimeout:
            text = "(no body)"
        raise AssertionError(f"expected {url}, the browser is at {page.url}: {text}") from None


def check_accessibility(page) -> None:
    """Run axe-core (WCAG 2.0/2.1 A and AA) on the page; fail on any violation."""
    page.evaluate(AXE.read_text())
    result = page.evaluate(
        """() => axe.run(document, {runOnly: {type: 'tag',
              values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"""
    )
    problems = [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in result["violations"]
    ]
    assert not problems, f"{page.url}: " + "; ".join(problems)
