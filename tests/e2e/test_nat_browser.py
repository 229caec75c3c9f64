"""Chromium behind a hostile NAT (network namespaces) publishes and watches through coturn.

Chromium runs inside the client namespace (a wrapper: ``ip netns exec ... chromium``;
Playwright drives it over a pipe from here), the web app's publish and watch pages come
from the gateway in the "public" namespace (tests/support/nat_world.py).
"""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.support.nat_world import BASE, TURN_IP, NatWorld, nat_world, start_gateway
from tests.support.tokens import token

from .conftest import CAMERA_HEIGHT, CAMERA_WIDTH, CHROMIUM_FLAGS
from .pages import open_page, start_publisher, wait_js, with_token

pytestmark = [pytest.mark.browser, pytest.mark.timeout(150)]

# Every peer connection a page makes, so the test can read its selected candidate pair.
RECORD_PEERS = """
window.__peers = [];
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = class extends Native {
  constructor(...args) { super(...args); window.__peers.push(this); }
};
"""

SELECTED_PAIRS = """async () => {
  const pairs = [];
  for (const pc of window.__peers) {
    const report = await pc.getStats();
    report.forEach((entry) => {
      if (entry.type !== "transport" || !entry.selectedCandidatePairId) return;
      const pair = report.get(entry.selectedCandidatePairId);
      const local = report.get(pair.localCandidateId), remote = report.get(pair.remoteCandidateId);
      pairs.push({local: local.candidateType, localAddress: local.address,
                  remote: remote.candidateType, bytesReceived: pair.bytesReceived,
                  bytesSent: pair.bytesSent});
    });
  }
  return pairs;
}"""


def namespace_wrapper(namespace_command: list[str], directory: Path) -> Path:
    """An executable that starts Debian's Chromium inside the namespace."""
    wrapper = directory / "chromium-in-namespace"
    wrapper.write_text(f'#!/bin/sh\nexec {" ".join(namespace_command)} /usr/bin/chromium "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


@pytest.fixture
async def nat_browser(
    tmp_path: Path, chromium: Path, fake_camera: Path
) -> AsyncIterator[tuple[Browser, NatWorld]]:
    with nat_world(tmp_path) as world:
        world.hostile()
        wrapper = namespace_wrapper(world.client.command(), tmp_path)
        gateway = await start_gateway(world, tmp_path)
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=str(wrapper),
                    headless=True,
                    args=[
                        *CHROMIUM_FLAGS,
                        f"--use-file-for-fake-video-capture={fake_camera}",
                        # getUserMedia needs a secure context; this origin is plain http.
                        f"--unsafely-treat-insecure-origin-as-secure={BASE}",
                    ],
                )
                try:
                    yield browser, world
                finally:
                    await browser.close()
        finally:
            await gateway.close()


async def selected_pairs(page: Page) -> list[dict[str, Any]]:
    pairs: list[dict[str, Any]] = await page.evaluate(SELECTED_PAIRS)
    return pairs


async def test_chromium_behind_hostile_nat_publishes_and_watches_through_turn(
    nat_browser: tuple[Browser, NatWorld],
) -> None:
    browser, world = nat_browser
    access = token("chromium", room="nat-web", canPublish=True, canSubscribe=True)
    context = await browser.new_context()
    await context.add_init_script(RECORD_PEERS)
    publisher = await start_publisher(context, BASE, "nat-web", access)
    viewer = await open_page(
        context, with_token(f"{BASE}/watch.html?room=nat-web", access), "watch"
    )
    await wait_js(viewer, "window.watchStats && window.watchStats.framesDecoded > 30", 60)
    await wait_js(
        viewer,
        f"window.watchStats.width === {CAMERA_WIDTH} && window.watchStats.height === {CAMERA_HEIGHT}",
        60,
    )
    first = await viewer.evaluate("window.watchStats.framesDecoded")
    await wait_js(viewer, f"window.watchStats.framesDecoded > {first + 30}", 30)
    # Both of Chromium's connections go through its relay on coturn: the NAT lets
    # nothing else through.
    for page in (publisher, viewer):
        pairs = await selected_pairs(page)
        assert pairs, "no selected candidate pair"
        for pair in pairs:
            assert pair["local"] == "relay", pairs
            assert pair["localAddress"] == TURN_IP, pairs
    publisher_pairs = await selected_pairs(publisher)
    viewer_pairs = await selected_pairs(viewer)
    assert max(p["bytesSent"] for p in publisher_pairs) > 20_000, publisher_pairs
    assert max(p["bytesReceived"] for p in viewer_pairs) > 20_000, viewer_pairs
    # coturn granted the relays to the REST credentials the gateway minted for the token.
    usernames = await asyncio.to_thread(world.coturn.allocations)
    assert any(name.endswith(":chromium") for name in usernames), usernames
    await context.close()
