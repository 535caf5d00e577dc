"""The watch page in real headless Chromium (Debian's /usr/bin/chromium through Playwright): it
shows each phase as it happens during a slowed-down onboarding, and the failure card with the
code's documentation for a captive portal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from device_sim.doors.native.flow import provision
from device_sim.network.scenario import load_scenario
from device_sim.profile import load_profile
from device_sim.security.secret import Secret

from .conftest import Device

pytestmark = [pytest.mark.asyncio(loop_scope="session")]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEP_MS = 10_000


@pytest_asyncio.fixture(loop_scope="session")
async def page(require: Callable[[str | None], None]) -> AsyncIterator[Page]:
    require(None if CHROMIUM.exists() else f"{CHROMIUM} is missing (apt-get install chromium)")
    async with async_playwright() as p:
        browser: Browser = await p.chromium.launch(
            executable_path=str(CHROMIUM), args=ARGS, timeout=STEP_MS * 2
        )
        try:
            page = await (await browser.new_context()).new_page()
            page.set_default_timeout(STEP_MS)
            yield page
        finally:
            await browser.close()


async def _onboard(device: Device, ready: dict, scenario: str, setup_code: Secret) -> dict:
    creds = load_scenario(scenario).default_credentials
    return await provision(
        device.profile,
        device.target_softap(ready),
        setup_code=setup_code,
        ssid=creds.ssid,
        passphrase=Secret(creds.passphrase or ""),
        outcome_timeout=30,
    )


@pytest.mark.parametrize(
    ("scenario", "slow", "outcome"),
    [
        ("typical-home", [], "online"),  # ~3 s of real delays
        ("slow-dhcp", ["--time-scale", "0.05", "--timeout-scale", "0.05"], "failed"),
    ],
)
async def test_the_page_shows_each_phase_as_it_happens(
    device: Device, page: Page, setup_code: Secret, scenario: str, slow: list[str], outcome: str
) -> None:
    ready = await device.start(
        scenario,
        *slow,
        "--watch",
        "--watch-listen",
        "127.0.0.1:0",
        zero_delay=False,
        doors="softap-only",
    )
    await page.goto(ready["watch"] + "/")
    await expect(page.locator("#link")).to_have_text("live")
    onboarding = asyncio.ensure_future(_onboard(device, ready, scenario, setup_code))
    dhcp = page.locator('#timeline tr[data-phase="dhcp"]')
    await expect(dhcp).to_have_count(1, timeout=20_000)
    # dhcp is on the page while the device still works: no outcome row yet
    assert not onboarding.done()
    if outcome != "online":  # slow-dhcp: the time DHCP has taken, against its (scaled) timeout
        await expect(page.locator("#elapsed")).to_contain_text(" s of ")
    assert await page.locator(f'#timeline tr[data-phase="{outcome}"]').count() == 0
    assert (await onboarding)["state"] == outcome
    await expect(page.locator(f'#timeline tr[data-phase="{outcome}"]')).to_have_count(1)
    await expect(page.locator("#state")).to_have_text(outcome)
    await expect(page.locator("#past li")).to_have_count(1)
    if outcome == "online":
        await expect(page.locator("#card")).to_be_hidden()
    else:
        await expect(page.locator("#card-title")).to_have_text("104 NO_DHCP_LEASE")


async def test_the_failure_card_for_a_captive_portal(
    device: Device, page: Page, setup_code: Secret
) -> None:
    ready = await device.start(
        "captive-portal", "--watch", "--watch-listen", "127.0.0.1:0", doors="softap-only"
    )
    await page.goto(ready["watch"] + "/")
    await expect(page.locator("#link")).to_have_text("live")
    result = await _onboard(device, ready, "captive-portal", setup_code)
    assert result["code_name"] == "CAPTIVE_PORTAL"
    entry = load_profile().code("CAPTIVE_PORTAL")
    card = page.locator("#card")
    await expect(card).to_be_visible()
    await expect(page.locator("#card-title")).to_have_text(f"{entry.id} CAPTIVE_PORTAL")
    await expect(page.locator("#card-next")).to_have_text(entry.next_step)
    await expect(page.locator("#card-reproduce")).to_contain_text(
        "device-sim demo --scenario captive-portal"
    )
    # The failed phase and the failure's own words (where the portal redirects), and the
    # header keeps the failed phase over the AP's rescan, with the device's name and id.
    await expect(page.locator("#card-at")).to_have_text("captive_portal")
    detail = next(e["detail"] for e in result["events"] if e["phase"] == "failed")
    assert detail
    await expect(page.locator("#card-detail")).to_have_text(detail)
    await expect(page.locator("#phase-label")).to_have_text("failed at")
    await expect(page.locator("#phase")).to_have_text("captive_portal")
    await expect(page.locator("#who")).to_contain_text(ready["device_id"])
    # a late visitor (a reload) sees the same from the backlog, and the past onboarding from
    # the device's log (GET /history), listed once
    await page.reload()
    await expect(page.locator("#card-title")).to_have_text(f"{entry.id} CAPTIVE_PORTAL")
    await expect(page.locator("#past li")).to_have_count(1)
    await expect(page.locator("#past li")).to_contain_text("failed (CAPTIVE_PORTAL)")


async def test_the_page_shows_a_loss_the_retries_and_the_reopened_doors_live(
    device: Device, page: Page, setup_code: Secret
) -> None:
    """An online device whose router is gone: the page shows the loss with its card, each
    retry with when the next one comes, the doors reopening, and back online."""
    ready = await device.start(
        "engineering-wifi",
        "--watch",
        "--watch-listen",
        "127.0.0.1:0",
        "--reconnect-initial",
        "0.1",
        "--reconnect-max",
        "0.4",
        "--reopen-after",
        "1",
        doors="softap-only",
    )
    await page.goto(ready["watch"] + "/")
    await expect(page.locator("#link")).to_have_text("live")
    assert (await _onboard(device, ready, "engineering-wifi", setup_code))["state"] == "online"
    from device_sim.control import control_request

    await control_request(
        device.state_dir, "fault", {"action": "add", "name": "router-off", "step": "link"}
    )
    lost = page.locator('#timeline tr[data-phase="link_lost"]')
    await expect(lost).to_have_count(1)
    await expect(lost).to_contain_text("LINK_LOST")
    await expect(page.locator("#card-title")).to_have_text("116 LINK_LOST")
    await expect(page.locator('#timeline tr[data-phase="reconnect"]').first).to_contain_text(
        "retry 1 in"
    )
    reopen = page.locator('#timeline tr[data-phase="reopen"]')
    await expect(reopen).to_have_count(1)
    await expect(reopen).to_contain_text("the doors reopen")
    await expect(page.locator("#life")).not_to_be_empty()
    await control_request(device.state_dir, "fault", {"action": "remove", "name": "router-off"})
    await expect(page.locator("#state")).to_have_text("online", timeout=20_000)
    await expect(page.locator("#card")).to_be_hidden()
    await expect(page.locator("#life")).to_be_empty()
