"""A Chromium viewer behind a real rate limit (tc tbf on a veth) gets the simulcast layer
its link carries, chosen from its transport-cc feedback, and climbs back once the limit
is lifted; a viewer on a clean path keeps the top layer throughout. The same with a
single-layer aiortc publisher in a room with a ladder: the narrow viewer gets a layer the
gateway makes.

    gwV-sfu: gateway 192.0.2.1; a Chromium publishing simulcast (WHIP) or an aiortc
        publisher (one layer), and the good viewer
        |  veth, tbf on the gateway's end (gateway -> slow viewer), set mid-test
    gwV-slow: a Chromium with the slow viewer 192.0.2.2
"""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.gateway_process import start_gateway_process
from tests.support.killable_publisher import PublisherProcess
from tests.support.netns import Namespace, network

from .conftest import (
    CAMERA_FPS,
    CAMERA_FRAMES,
    CAMERA_HEIGHT,
    CAMERA_WIDTH,
    CHROMIUM,
    camera_frame,
    launch,
)
from .pages import GATHERED, open_page, open_watcher, wait_js, watch_stats

pytestmark = pytest.mark.timeout(240)

GATEWAY_IP, SLOW_IP = "192.0.2.1", "192.0.2.2"
BASE = f"http://{GATEWAY_IP}:8080"
ROOM = "narrow"
CONFIG = f"""
ice:
  addresses: [{GATEWAY_IP}]
auth:
  allow_anonymous: true  # an address only this test's namespaces reach
log:
  level: warning
"""
MADE_ROOM = "one-layer"
ORIGINAL_LEAST_BPS = 450_000
# The aiortc publisher's 640x480 at 900 kbps, and one made rung.
RUNG = (320, 240)
LADDER_CONFIG = (
    CONFIG
    + f"""
processing:
  ladders:
    - room: {MADE_ROOM}
      rungs: [{{height: {RUNG[1]}, bitrate_kbps: 150}}]
"""
)
# The camera needs a secure context: this address is not one (localhost would be).
SECURE = [f"--unsafely-treat-insecure-origin-as-secure={BASE}"]
TOP = (CAMERA_WIDTH, CAMERA_HEIGHT)  # the publish page sends f (640x480) and h (1/2)
LOWER = (CAMERA_WIDTH // 2, CAMERA_HEIGHT // 2)
# Each layer's bitrate bounded at the publisher (maxBitrate), so that they stay apart: an
# encoder left to itself moves a 320x240 layer between 180 and 350 kbps within seconds.
LAYER_CAPS = {"h": 150_000, "f": 700_000}
# Chromium publishes camera and microphone with simulcast layers h (1/2) and f over WHIP.
PUBLISH = (
    "async ({room, caps, width, height}) => {"
    + GATHERED
    + """
  const stream = await navigator.mediaDevices.getUserMedia({
    video: {width: {exact: width}, height: {exact: height}}, audio: true,
  });
  stream.getVideoTracks()[0].contentHint = "detail";
  const pc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver(stream.getVideoTracks()[0], {
    direction: "sendonly",
    sendEncodings: [
      {rid: "h", scaleResolutionDownBy: 2, maxBitrate: caps.h},
      {rid: "f", maxBitrate: caps.f},
    ],
  });
  pc.addTransceiver(stream.getAudioTracks()[0], {direction: "sendonly"});
  const {location, answer} = await post(`/whip/${room}`, await gathered(pc));
  await pc.setRemoteDescription({type: "answer", sdp: answer});
  window.whip = {pc, location};
}"""
)
BAND = 24  # the noise band's share of the picture height: 1/BAND
SETTLED_S = 3.0


def chromium_in(namespace: Namespace, directory: Path) -> Path:
    """An executable that runs Debian's Chromium inside ``namespace``."""
    wrapper = directory / f"chromium-{namespace.name}"
    wrapper.write_text(f'#!/bin/sh\nexec {" ".join(namespace.command(str(CHROMIUM)))} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


async def session(sfu: Namespace, session_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await sfu.fetch_json(f"{BASE}/api/sessions/{session_id}")
    return body


async def video(sfu: Namespace, session_id: str) -> dict[str, Any]:
    """The viewer's video m-line: the layer it gets, the selection, the link estimate."""
    body = await session(sfu, session_id)
    (entry,) = [v for v in body["receiving"].values() if "layer" in v]
    return {**entry, "link": body["link"]}


async def layers(sfu: Namespace) -> dict[str, dict[str, Any]]:
    try:
        tracks = (await sfu.fetch_json(f"{BASE}/api/rooms/{ROOM}"))["tracks"]
    except AssertionError:
        return {}  # no such room yet (404)
    return {str(layer["rid"]): layer for t in tracks for layer in t.get("layers") or []}


async def until(check: Any, what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.5)


@pytest.fixture(scope="module")
def busy_camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake camera with a band of fresh noise in every frame, so that the layers need
    a few hundred kbps, as a real camera's do (the plain clip encodes to under 100 kbps at
    320x240, where one keyframe fills a rate-limited queue and both layers overlap)."""
    path = tmp_path_factory.mktemp("camera") / "busy.y4m"
    write_busy_camera(path)
    return path


def write_busy_camera(path: Path) -> None:
    """The fake camera's clip at TOP with a band of fresh noise in every frame, to ``path``
    (also bench/simulcast_bw.py's camera)."""
    noise = np.random.default_rng(7)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{TOP[0]} H{TOP[1]} F{CAMERA_FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for index in range(CAMERA_FRAMES):
            luma, u, v = camera_frame(index, *TOP)
            band = slice(TOP[1] // 8, TOP[1] // 8 + TOP[1] // BAND)
            luma[band] = noise.integers(100, 156, luma[band].shape, dtype=np.uint8)
            out.write(b"FRAME\n")
            for plane in (luma, u, v):
                out.write(np.ascontiguousarray(plane).tobytes())


async def test_a_narrow_link_gets_a_lower_layer_and_climbs_back(
    tmp_path: Path, busy_camera: Path
) -> None:
    with network("gwV") as net:
        sfu, slow = net.namespace("sfu"), net.namespace("slow")
        sfu_if, _ = net.link(sfu, f"{GATEWAY_IP}/24", slow, f"{SLOW_IP}/24", "nl")
        gateway = await start_gateway_process(
            CONFIG, tmp_path, host=GATEWAY_IP, port=8080, wrapper=sfu.command()
        )
        try:
            async with (
                launch(chromium_in(sfu, tmp_path), busy_camera, SECURE) as near,
                launch(chromium_in(slow, tmp_path), busy_camera, SECURE) as far,
            ):
                near_context, far_context = await near.new_context(), await far.new_context()
                publisher = await open_page(near_context, BASE + "/", "simulcast publisher")
                await publisher.evaluate(
                    PUBLISH, {"room": ROOM, "caps": LAYER_CAPS, "width": TOP[0], "height": TOP[1]}
                )
                await until(lambda: _flowing(sfu), "both layers flowing with their bitrates", 30)
                good = await open_watcher(near_context, BASE, ROOM)
                narrow = await open_watcher(far_context, BASE, ROOM)
                for page in (good, narrow):
                    await wait_js(page, f"window.watchStats.width === {TOP[0]}", timeout=30)
                good_id = (await watch_stats(good))["sessionId"]
                narrow_id = (await watch_stats(narrow))["sessionId"]
                # What each costs on the link, headers included (audio: half of it).
                rates = {rid: layer["wire_bps"] for rid, layer in (await layers(sfu)).items()}
                audio = (await video(sfu, narrow_id))["link"]["audio_bps"]
                print("layer bitrates", rates, "audio", audio)
                # Below the top layer with the audio, well above the lower one with it.
                limit_kbps = int(min(1.5 * (rates["h"] + audio), 0.9 * (rates["f"] + audio)) / 1000)
                print("limit", limit_kbps, "kbit")
                sfu.rate_limit(sfu_if, f"{limit_kbps}kbit", burst="16kb", latency="300ms")
                limited_at = time.monotonic()
                stepped = await until(
                    lambda: _on_layer(sfu, narrow_id, "h"), "the narrow viewer on layer h", 20
                )
                took = time.monotonic() - limited_at
                print("stepped down after", round(took, 1), "s:", stepped)
                assert stepped["link"]["transport_cc"], stepped  # Chromium's feedback read
                await wait_js(narrow, f"window.watchStats.height === {LOWER[1]}", timeout=10)
                # Where it ends, not the switch's tail: for a second or two after it the path
                # still drains what the top layer left (bench/results/simulcast.md measures
                # that freeze).
                await asyncio.sleep(SETTLED_S)
                before = await watch_stats(narrow)
                started = time.monotonic()
                await asyncio.sleep(5)
                after = await watch_stats(narrow)
                fps = (after["framesDecoded"] - before["framesDecoded"]) / (
                    time.monotonic() - started
                )
                assert fps >= 25, (fps, after)
                assert after["height"] == LOWER[1]
                assert (await video(sfu, narrow_id))["layer"] == "h"
                # The good viewer is on the top layer, never paused. (Under a loaded machine
                # it was seen to step down and back once, when the publisher's f layer
                # stalled for a moment: its switches are printed, not asserted.)
                good_video = await video(sfu, good_id)
                print("good viewer", good_video["selection"], good_video["link"])
                assert good_video["layer"] is None, good_video
                assert good_video["selection"]["pauses"] == 0, good_video
                assert (await watch_stats(good))["height"] == TOP[1]
                sfu.remove_rate_limit(sfu_if)
                lifted_at = time.monotonic()
                back = await until(
                    lambda: _on_layer(sfu, narrow_id, None), "the narrow viewer back on top", 60
                )
                print("back on top after", round(time.monotonic() - lifted_at, 1), "s:", back)
                await wait_js(narrow, f"window.watchStats.height === {TOP[1]}", timeout=15)
        finally:
            await gateway.close()


async def test_a_narrow_link_gets_a_layer_the_gateway_makes(
    tmp_path: Path, fake_camera: Path
) -> None:
    with network("gwM") as net:
        sfu, slow = net.namespace("sfu"), net.namespace("slow")
        sfu_if, _ = net.link(sfu, f"{GATEWAY_IP}/24", slow, f"{SLOW_IP}/24", "nl")
        gateway = await start_gateway_process(
            LADDER_CONFIG, tmp_path, host=GATEWAY_IP, port=8080, wrapper=sfu.command()
        )
        publisher = await PublisherProcess.start(
            BASE, MADE_ROOM, size=TOP, noise=True, bitrate=900_000, wrapper=sfu.command()
        )
        try:
            async with (
                launch(chromium_in(sfu, tmp_path), fake_camera, SECURE) as near,
                launch(chromium_in(slow, tmp_path), fake_camera, SECURE) as far,
            ):
                track = await until(lambda: _made_track(sfu), "the track's made layer offered", 30)
                good = await open_watcher(await near.new_context(), BASE, MADE_ROOM)
                narrow = await open_watcher(await far.new_context(), BASE, MADE_ROOM)
                for page in (good, narrow):
                    await wait_js(page, f"window.watchStats.width === {TOP[0]}", timeout=30)
                good_id = (await watch_stats(good))["sessionId"]
                narrow_id = (await watch_stats(narrow))["sessionId"]
                # The publisher's encoder ramps up (aiortc's follows the gateway's REMB):
                # the original must be well above the made layer for the limit to part them.
                track = await until(
                    lambda: _made_track(sfu, least_bps=ORIGINAL_LEAST_BPS),
                    f"the original at {ORIGINAL_LEAST_BPS} bps or more",
                    30,
                )
                (rung,) = track["made_layers"]
                original = 1.1 * track["ingest"]["received_bps"]  # headers: a tenth
                audio = (await video(sfu, narrow_id))["link"]["audio_bps"]
                print("original", original, "rung", rung, "audio", audio)
                limit_kbps = int(
                    min(1.5 * (rung["wire_bps"] + audio), 0.9 * (original + audio)) / 1000
                )
                assert limit_kbps * 1000 > rung["wire_bps"] + audio, (limit_kbps, rung)
                print("limit", limit_kbps, "kbit")
                sfu.rate_limit(sfu_if, f"{limit_kbps}kbit", burst="16kb", latency="300ms")
                limited_at = time.monotonic()
                stepped = await until(
                    lambda: _on_layer(sfu, narrow_id, rung["rid"]), "the narrow viewer made", 20
                )
                print("stepped down after", round(time.monotonic() - limited_at, 1), "s:", stepped)
                assert stepped["made"], stepped
                await wait_js(narrow, f"window.watchStats.height === {RUNG[1]}", timeout=10)
                await asyncio.sleep(SETTLED_S)  # where it ends, not the switch's tail
                before = await watch_stats(narrow)
                started = time.monotonic()
                await asyncio.sleep(5)
                after = await watch_stats(narrow)
                fps = (after["framesDecoded"] - before["framesDecoded"]) / (
                    time.monotonic() - started
                )
                assert fps >= 25, (fps, after)
                assert (after["width"], after["height"]) == RUNG
                (ladder,) = [
                    r
                    for r in (await sfu.fetch_json(f"{BASE}/api/renditions"))["renditions"]
                    if r["pipeline"] == "@ladder"
                ]
                assert ladder["subscribers"] == 1 and ladder["decoders"] == 1, ladder
                good_video = await video(sfu, good_id)
                assert good_video["layer"] is None and not good_video.get("made"), good_video
                assert (await watch_stats(good))["height"] == TOP[1]
                sfu.remove_rate_limit(sfu_if)
                lifted_at = time.monotonic()
                back = await until(
                    lambda: _on_layer(sfu, narrow_id, None), "the narrow viewer on the original", 60
                )
                print("original after", round(time.monotonic() - lifted_at, 1), "s:", back)
                await wait_js(narrow, f"window.watchStats.height === {TOP[1]}", timeout=15)
                # Nobody on the made layer: it is made no more.
                await until(lambda: _no_ladder(sfu), "the made layer stopped", 10)
        finally:
            await publisher.kill()
            await gateway.close()


async def _made_track(sfu: Namespace, least_bps: float = 0) -> dict[str, Any] | None:
    try:
        room = await sfu.fetch_json(f"{BASE}/api/rooms/{MADE_ROOM}")
    except AssertionError:
        return None  # no such room yet (404)
    for track in room["tracks"]:
        if track["kind"] == "video" and track.get("made_layers"):
            ingest = track.get("ingest") or {}
            if ingest.get("received_bps", 0) >= least_bps:
                return dict(track)
    return None


async def _no_ladder(sfu: Namespace) -> bool:
    renditions = (await sfu.fetch_json(f"{BASE}/api/renditions"))["renditions"]
    return not any(r["pipeline"] == "@ladder" for r in renditions)


async def _flowing(sfu: Namespace) -> bool:
    found = await layers(sfu)
    return {"f", "h"} <= {rid for rid, layer in found.items() if layer["bitrate_bps"] > 0}


async def _on_layer(sfu: Namespace, session_id: str, rid: str | None) -> dict[str, Any] | None:
    current = await video(sfu, session_id)
    settled = current.get("switching_to", "none") == "none" and not current["selection"]["paused"]
    if current["layer"] == rid and settled:
        return current
    return None
