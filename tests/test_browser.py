"""The demo page in real headless Chromium (Debian's, driven by Playwright) against the two-pool
stack: users see each other's room messages live and not each other's private notices, the
page shows who is online, and it reconnects by itself after the websocket pool restarts and
shows what was published meanwhile. A screenshot of the page is kept in var/artifacts/."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from conftest import REPO
from devstack.stack import Deployment, Stack
from helpers import login, post_form, unique_facility

pytestmark = [pytest.mark.stack, pytest.mark.deployments(Deployment.TWO_POOLS)]

CHROMIUM = os.environ.get("WSLOOP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # the suite runs as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # this machine's closed network refuses the rest
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "var/artifacts"
TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} not found: apt-get install chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def page_as(browser: Browser, stack: Stack, user: str, room: str) -> tuple[BrowserContext, Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 760})
    context.add_cookies(
        [{"name": "sessionid", "value": login(stack, user), "url": stack.config.base_url}]
    )
    page = context.new_page()
    page.goto(f"{stack.config.base_url}/chat/{room}/")
    expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=TIMEOUT_MS)
    return context, page


def say(page: Page, text: str) -> None:
    page.fill("#chat-form input[name=text]", text)
    page.click("#chat-form button")


def test_two_users_chat_live_and_keep_private_notices_private(browser, stack):
    room = "lobby"  # only what is published while the pages are open shows up
    alice_context, alice = page_as(browser, stack, "alice", room)
    bob_context, bob = page_as(browser, stack, "bob", room)
    carol_context, carol = page_as(browser, stack, "carol", room)
    try:
        expect(alice.locator("#online li[data-user=bob]")).to_be_visible(timeout=TIMEOUT_MS)
        say(alice, "hi bob, the build is green")
        expect(bob.locator("#messages")).to_contain_text("alicehi bob", timeout=TIMEOUT_MS)
        say(bob, "great, shipping it")
        expect(alice.locator("#messages")).to_contain_text("bobgreat", timeout=TIMEOUT_MS)
        say(carol, "count me in for the review")
        expect(bob.locator("#messages")).to_contain_text("carolcount me in", timeout=TIMEOUT_MS)

        alice.select_option("#notify-form select", "user")
        alice.fill("#notify-form input[name=name]", "bob")
        alice.fill("#notify-form input[name=text]", "for bob only")
        alice.click("#notify-form button")
        expect(bob.locator("#notices")).to_contain_text("for bob only", timeout=TIMEOUT_MS)

        alice.fill("#notify-form input[name=name]", "green")
        alice.select_option("#notify-form select", "group")
        alice.fill("#notify-form input[name=text]", "to the green group")
        alice.click("#notify-form button")
        expect(carol.locator("#notices")).to_contain_text("to the green group", timeout=TIMEOUT_MS)

        alice.fill("#announce-form input[name=text]", "deploy at five")
        alice.click("#announce-form button")
        for page in (alice, bob, carol):
            expect(page.locator("#notices")).to_contain_text("deploy at five", timeout=TIMEOUT_MS)
        # The notices above reached their audience: by now any leak would have arrived too.
        expect(alice.locator("#notices")).not_to_contain_text("for bob only")
        expect(carol.locator("#notices")).not_to_contain_text("for bob only")
        expect(bob.locator("#notices")).not_to_contain_text("to the green group")
        expect(bob.locator("#announce-form")).to_have_count(0)  # staff only

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        bob.screenshot(path=str(ARTIFACTS / "demo-bob.png"))
    finally:
        for context in (alice_context, bob_context, carol_context):
            context.close()


def test_the_page_reconnects_after_a_pool_restart_and_shows_what_it_missed(browser, stack):
    room = unique_facility("room")
    context, page = page_as(browser, stack, "bob", room)
    alice = login(stack, "alice")
    try:
        post_form(stack, f"/chat/{room}/send", alice, {"text": "before the restart"})
        expect(page.locator("#messages")).to_contain_text("before the restart", timeout=TIMEOUT_MS)
        stack.stop_service("wsloop")
        expect(page.locator("#status")).to_have_attribute("data-state", "reconnecting")
        for number in range(3):  # Django still serves: these go to history while no socket is up
            status, _ = post_form(stack, f"/chat/{room}/send", alice, {"text": f"missed {number}"})
            assert status == 200
        stack.start_service("wsloop")
        stack.wait_for_app()
        expect(page.locator("#status")).to_have_text(
            "live · recovered 3 missed", timeout=TIMEOUT_MS * 3
        )
        expect(page.locator("#messages li")).to_have_text(
            ["alicebefore the restart", "alicemissed 0", "alicemissed 1", "alicemissed 2"]
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo-recovered.png"))
    finally:
        context.close()


def test_a_message_sent_between_the_render_and_the_connect_is_on_the_page(browser, stack):
    """The page is rendered with its room's position; its socket is held back (Playwright's
    websocket routing) while alice posts, then let through: the page resumes from the position
    it was rendered with and shows the message."""
    room = unique_facility("room")
    held = []

    def hold_back(route):  # a function of our own: Playwright marks the handler it is given
        held.append(route)

    context = browser.new_context(viewport={"width": 1280, "height": 760})
    context.add_cookies(
        [{"name": "sessionid", "value": login(stack, "bob"), "url": stack.config.base_url}]
    )
    context.route_web_socket(re.compile(rf".*/ws/chat-{room}\?.*"), hold_back)
    try:
        page = context.new_page()
        page.goto(f"{stack.config.base_url}/chat/{room}/")
        while not held:
            page.wait_for_timeout(20)
        assert "since=" in held[0].url
        post_form(stack, f"/chat/{room}/send", login(stack, "alice"), {"text": "after the render"})
        held[0].connect_to_server()
        expect(page.locator("#status")).to_have_text(
            "live · recovered 1 missed", timeout=TIMEOUT_MS
        )
        expect(page.locator("#messages li")).to_have_text(["aliceafter the render"])
    finally:
        context.close()
