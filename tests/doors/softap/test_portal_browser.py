"""The browser provisioning page (GET /) driven by a real headless Chromium against the whole
device stack on loopback: the page lists the scan, submits to /portal/v1/provision and follows
the outcome while the AP listener goes down for the join (and comes back after a failure, or
hands over to the ``lan`` listener after success).

Chromium is Debian's ``/usr/bin/chromium`` driven by Playwright (no browser download).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from device_sim.codes import State
from device_sim.profile import Profile

from .conftest import SETUP_CODE, Stack, StackFactory

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
]
STEP_MS = 10_000  # one UI step (page load, a field appearing)
OUTCOME_MS = 20_000  # submit -> final result (zero-delay network; AP down and back included)
WRONG_PASSPHRASE = "not-the-password-1"


@pytest_asyncio.fixture
async def browser(require: Callable[[str | None], None]) -> AsyncIterator[Browser]:
    require(None if CHROMIUM.exists() else f"{CHROMIUM} is missing (apt-get install chromium)")
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=STEP_MS * 2
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    try:
        page = await context.new_page()
        page.set_default_timeout(STEP_MS)
        page.set_default_navigation_timeout(STEP_MS)
        yield page
    finally:
        await context.close()


class Traffic:
    """What the page did that could leak secrets: every request URL and console message."""

    def __init__(self, page: Page) -> None:
        self.urls: list[str] = []
        self.console: list[str] = []
        page.on("request", lambda r: self.urls.append(r.url))
        page.on("console", lambda m: self.console.append(m.text))

    async def assert_no_secrets(self, page: Page, *secrets: str) -> None:
        storage = await page.evaluate(
            "() => JSON.stringify([{...localStorage}, {...sessionStorage}, document.cookie])"
        )
        for secret in secrets:
            for seen in [*self.urls, *self.console, storage]:
                assert secret not in seen


def listener_toggles(stack: Stack) -> list[str]:
    """Record the AP listener's open/close calls (the one-radio dance) as they happen."""
    seen: list[str] = []
    ap = stack.door.ap
    real_open, real_close = ap.open, ap.close

    async def open_(app: Any) -> None:
        seen.append("up")
        await real_open(app)

    async def close() -> None:
        if ap.up:
            seen.append("down")
        await real_close()

    ap.open = open_  # type: ignore[method-assign]
    ap.close = close  # type: ignore[method-assign]
    return seen


async def open_page(page: Page, stack: Stack) -> None:
    await page.goto(stack.url + "/")
    await expect(page.locator("#networks input[name=network][value=other]")).to_be_attached()


async def choose(page: Page, ssid_hex: str) -> None:
    await page.locator(f'#networks input[name=network][value="{ssid_hex}"]').check()


async def submit(page: Page, passphrase: str | None, setup_code: str = SETUP_CODE) -> None:
    if passphrase is not None:
        await page.locator("#passphrase").fill(passphrase)
    await page.locator("#setup-code").fill(setup_code)
    await page.locator("#submit").click()


async def test_happy_path_ends_online(make_stack: StackFactory, page: Page) -> None:
    stack: Stack = await make_stack()
    creds = stack.backend.scenario.default_credentials
    traffic = Traffic(page)
    await open_page(page, stack)

    networks = page.locator("#networks")
    for sap in stack.backend.scenario.access_points:
        if not sap.ap.hidden and sap.ap.ssid_text:
            await expect(networks).to_contain_text(sap.ap.ssid_text)
    # Strongest first; one choice per SSID (both bands of the home network merge into one).
    values = await networks.locator("input[name=network]").evaluate_all(
        "inputs => inputs.map(i => i.value)"
    )
    assert values[0] == creds.ssid.hex()
    assert values[-1] == "other"
    assert len(values) == len(set(values))
    await expect(page.locator("#open-warning")).to_be_hidden()

    # An open network needs no passphrase: the field goes away and comes back.
    await choose(page, b"Free Street WiFi".hex())
    await expect(page.locator("#passphrase")).to_be_hidden()
    await choose(page, creds.ssid.hex())
    await expect(page.locator("#passphrase")).to_be_visible()
    await expect(page.locator("#passphrase")).to_have_attribute("type", "password")

    assert creds.passphrase is not None
    await submit(page, creds.passphrase)
    await expect(page.locator("#result-state")).to_have_text("online", timeout=OUTCOME_MS)
    await expect(page.locator("#result")).to_be_visible()
    await expect(page.locator("#result")).to_contain_text("The device is online.")
    assert stack.engine.state is State.ONLINE
    assert not stack.door.ap_up  # one radio: the AP stayed down after the join
    await traffic.assert_no_secrets(page, creds.passphrase, SETUP_CODE, SETUP_CODE.replace("-", ""))


async def test_wrong_passphrase_then_right(
    make_stack: StackFactory, page: Page, profile: Profile
) -> None:
    stack: Stack = await make_stack()
    creds = stack.backend.scenario.default_credentials
    assert creds.passphrase is not None and creds.passphrase != WRONG_PASSPHRASE
    toggles = listener_toggles(stack)
    ap_url = stack.url
    traffic = Traffic(page)
    await open_page(page, stack)
    await choose(page, creds.ssid.hex())

    await submit(page, WRONG_PASSPHRASE)
    await expect(page.locator("#result-state")).to_have_text("failed", timeout=OUTCOME_MS)
    await expect(page.locator("#result-code")).to_have_text("WRONG_CREDENTIALS")
    await expect(page.locator("#result-message")).to_have_text(
        profile.code("WRONG_CREDENTIALS").user_message
    )
    await expect(page.locator("#result-next-step")).to_have_text(
        profile.code("WRONG_CREDENTIALS").next_step
    )
    assert stack.engine.state is State.FAILED
    assert toggles == ["down", "up"]  # the AP went down for the join and came back ...
    assert stack.door.ap_up and stack.url == ap_url  # ... on the same URL

    await expect(page.locator("#submit")).to_be_enabled()
    await submit(page, creds.passphrase)
    await expect(page.locator("#result-state")).to_have_text("online", timeout=OUTCOME_MS)
    assert stack.engine.state is State.ONLINE
    assert toggles == ["down", "up", "down"]
    await traffic.assert_no_secrets(
        page, creds.passphrase, WRONG_PASSPHRASE, SETUP_CODE, SETUP_CODE.replace("-", "")
    )


async def test_wrong_setup_code_is_shown(
    make_stack: StackFactory, page: Page, profile: Profile
) -> None:
    stack: Stack = await make_stack()
    creds = stack.backend.scenario.default_credentials
    await open_page(page, stack)
    await choose(page, creds.ssid.hex())
    await submit(page, creds.passphrase, setup_code="1111-2222")

    error = page.locator("#error")
    await expect(error).to_be_visible()
    await expect(error).to_contain_text(profile.code("WRONG_SETUP_CODE").user_message)
    await expect(error).to_have_attribute("data-code", "WRONG_SETUP_CODE")
    await expect(page.locator("#result")).to_be_hidden()
    await expect(page.locator("#submit")).to_be_enabled()
    assert stack.engine.state is State.UNPROVISIONED
    assert stack.door.ap_up


async def test_hidden_network_typed_in_ends_online(make_stack: StackFactory, page: Page) -> None:
    stack: Stack = await make_stack("edge-ssids")
    scenario = stack.backend.scenario
    hidden = next((sap for sap in scenario.access_points if sap.ap.hidden and sap.passphrase), None)
    assert hidden is not None, "scenario edge-ssids lost its hidden network with a passphrase"
    await open_page(page, stack)

    networks = page.locator("#networks")
    # The non-UTF-8 SSID is listed by its bytes; the hidden one is not listed on its own.
    await expect(networks).to_contain_text("<c3 28 ff 41>")
    await expect(networks).to_contain_text("name is not text")
    await expect(networks).not_to_contain_text(hidden.ap.ssid.decode())
    visible = {sap.ap.ssid for sap in scenario.access_points if not sap.ap.hidden}
    await expect(networks.locator("input[name=network]")).to_have_count(len(visible) + 1)

    await expect(page.locator("#ssid-other")).to_be_hidden()
    await choose(page, "other")
    await page.locator("#ssid-other").fill(hidden.ap.ssid.decode())
    await page.locator("#hidden").check()
    await submit(page, hidden.passphrase)
    await expect(page.locator("#result-state")).to_have_text("online", timeout=OUTCOME_MS)
    assert stack.engine.state is State.ONLINE
    creds = stack.store.credentials()
    assert creds is not None and creds.hidden and creds.ssid == hidden.ap.ssid


EXTERNAL = re.compile(r"""(?:https?:)?//[\w.-]|@import|url\(\s*["']?(?!data:)""", re.I)
REFERENCE = re.compile(
    r"""\b(?:src|href|action|srcset|poster|formaction)\s*=\s*["']([^"']*)""", re.I
)


async def test_page_has_no_external_references(make_stack: StackFactory) -> None:
    stack: Stack = await make_stack()
    async with aiohttp.ClientSession() as http, http.get(stack.url + "/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        html = await response.text()
    assert "http://" not in html.lower() and "https://" not in html.lower()
    assert not EXTERNAL.findall(html)
    for target in REFERENCE.findall(html):
        assert target.startswith(("data:", "#")) or target == "", target
