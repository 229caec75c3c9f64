"""SIGTERM drains: new sessions refused, clients told, recordings finalized, then exit 0."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import drain
from gateway.config import ConfigError, load
from gateway.drain import RETRY_AFTER_S
from tests.conftest import RunningGateway
from tests.support.gateway_process import GatewayProcess, start_gateway_process
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import Publisher, Viewer, new_peer, wait_for, whep_watch, whip_publish
from tests.support.signaling import WsClient, ws_publish

from .recording_checks import assert_plays_in_order, live_recording, play

pytestmark = pytest.mark.timeout(240)


async def start_gateway(
    http: aiohttp.ClientSession, tmp_path: Path, drain_timeout_s: float
) -> GatewayProcess:
    gateway = await start_gateway_process(
        f"server:\n  drain_timeout_s: {drain_timeout_s}\n"
        "ice:\n  addresses: [127.0.0.1]\nlog:\n  level: warning\n"
        f"recording:\n  directory: {tmp_path / 'recordings'}\n  auto_record: ['drain-*']\n",
        tmp_path,
    )
    async with http.get(f"{gateway.base}/readyz") as response:
        assert response.status == 200 and await response.json() == {"status": "ready"}
    return gateway


async def live_room(
    http: aiohttp.ClientSession, gateway: GatewayProcess, room: str
) -> tuple[Publisher, Viewer, dict[str, Any]]:
    """A publisher being recorded for about a second, and a viewer decoding its frames."""
    publisher = await whip_publish(
        http, gateway.base, room, [NumberedVideoTrack(320, 240, fps=30), ToneTrack()]
    )
    viewer = await whep_watch(http, gateway.base, room)
    await wait_for(lambda: len(viewer.received.numbers) > 30, timeout=30)
    for _ in range(300):
        try:
            recording = await live_recording(http, gateway.base, room)
            if recording["frames_written"] >= 60:
                return publisher, viewer, recording
        except ValueError:
            pass  # not recording yet
        await asyncio.sleep(0.1)
    raise AssertionError("the recording does not progress")


async def offer_sdp(kind: str) -> str:
    pc = new_peer()
    try:
        direction = "sendonly" if kind == "whip" else "recvonly"
        pc.addTransceiver("video", direction=direction)
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


async def assert_refused_draining(http: aiohttp.ClientSession, base: str, room: str) -> None:
    """New WHIP and WHEP sessions get 503 draining with Retry-After; probes say so."""
    for kind in ("whip", "whep"):
        async with http.post(
            f"{base}/{kind}/{room}",
            data=await offer_sdp(kind),
            headers={"Content-Type": "application/sdp"},
        ) as response:
            assert response.status == 503, kind
            body = await response.json()
            assert body["error"] == "draining" and body["retry_after"] == RETRY_AFTER_S
            assert response.headers["Retry-After"] == str(RETRY_AFTER_S)
    async with http.get(f"{base}/readyz") as response:
        assert response.status == 503
        assert await response.json() == {"status": "draining"}  # nothing more: it is open
    async with http.get(f"{base}/healthz") as response:
        assert response.status == 200  # alive all the same


async def test_sigterm_drains_then_exits_zero(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    drain_s = 4.0
    gateway = await start_gateway(http, tmp_path, drain_s)
    viewer: Viewer | None = None
    publisher: Publisher | None = None
    try:
        publisher, viewer, recording = await live_room(http, gateway, "drain-1")
        watcher = await WsClient.connect(http, gateway.base)
        await watcher.send({"type": "watch", "room": "drain-1"})
        assert (await watcher.next("room-state"))["publisher"] is not None

        gateway.process.send_signal(signal.SIGTERM)
        signalled_at = time.monotonic()
        going = await watcher.next("going-away", timeout=10)
        assert going == {"type": "going-away", "reason": "shutdown", "retry_after": RETRY_AFTER_S}
        await assert_refused_draining(http, gateway.base, "drain-1")
        # An open socket's new sessions are refused too.
        await watcher.request({"type": "join", "room": "drain-2", "name": "late"})
        refused = await watcher.next("error")
        assert refused["code"] == "draining", refused

        # The live viewer keeps its frames for the drain time, then its session closes.
        received = viewer.received
        await wait_for(lambda: received.arrival[-1] > signalled_at + drain_s / 2, timeout=drain_s)
        code = await asyncio.wait_for(gateway.process.wait(), timeout=drain_s + 20)
        exited_after = time.monotonic() - signalled_at
        await wait_for(lambda: watcher.ws.closed, timeout=10)  # closed by the gateway
    finally:
        await gateway.close()
        if viewer is not None:
            await viewer.close()
        if publisher is not None:
            await publisher.close()
    log = gateway.log.read_text()
    assert code == 0, log
    # Sessions were given the drain time (no one left by themselves), not much more.
    assert exited_after >= drain_s - 0.5, exited_after
    assert "draining: 2 session(s)" in log and "closing 2 session(s)" in log, log

    path = tmp_path / "recordings" / recording["file"]
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["state"] == "complete" and sidecar["reason"] == "shutdown", sidecar
    got = play(path)
    assert_plays_in_order(got, 320, 240)
    assert got.audio_times, "no audio"
    assert got.duration_s == pytest.approx(sidecar["duration_s"], abs=0.1)


async def test_second_sigterm_exits_at_once(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    drain_s = 120.0
    gateway = await start_gateway(http, tmp_path, drain_s)
    viewer: Viewer | None = None
    publisher: Publisher | None = None
    try:
        publisher, viewer, recording = await live_room(http, gateway, "drain-3")
        gateway.process.send_signal(signal.SIGTERM)
        for _ in range(100):
            async with http.get(f"{gateway.base}/readyz") as response:
                if response.status == 503:
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the gateway does not drain")
        gateway.process.send_signal(signal.SIGTERM)
        # The publisher and viewer would hold it for drain_s: it goes well before.
        code = await asyncio.wait_for(gateway.process.wait(), timeout=20)
    finally:
        await gateway.close()
        if viewer is not None:
            await viewer.close()
        if publisher is not None:
            await publisher.close()
    log = gateway.log.read_text()
    assert code == 1, log  # the drain was cut short
    assert "second signal" in log, log
    # The drain began by finalizing the recording: it is complete all the same.
    path = tmp_path / "recordings" / recording["file"]
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["state"] == "complete" and sidecar["reason"] == "shutdown", sidecar
    assert_plays_in_order(play(path), 320, 240)


async def test_draining_refuses_every_new_session(gateway: RunningGateway) -> None:
    async with gateway.http.get(f"{gateway.base}/readyz") as response:
        assert response.status == 200 and await response.json() == {"status": "ready"}
    publisher = await whip_publish(
        gateway.http, gateway.base, "busy", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    viewer = await whep_watch(gateway.http, gateway.base, "busy")
    early = await WsClient.connect(gateway.http, gateway.base)
    try:
        await wait_for(lambda: len(viewer.received.numbers) > 10)
        gateway.registry.drain.begin()
        assert (await early.next("going-away"))["reason"] == "shutdown"
        await assert_refused_draining(gateway.http, gateway.base, "busy")
        # A socket opened while draining is told at once; it can start nothing.
        late = await WsClient.connect(gateway.http, gateway.base)
        try:
            assert (await late.next("going-away"))["retry_after"] == RETRY_AFTER_S
            for message in (
                {"type": "join", "room": "busy", "name": "late"},
                {"type": "publish", "room": "other", "sdp": await offer_sdp("whip")},
                {"type": "subscribe", "room": "busy", "sdp": await offer_sdp("whep")},
                {"type": "record-start", "room": "busy"},
            ):
                request_id = await late.request(message)
                reply = await late.next("error")
                assert reply["id"] == request_id and reply["code"] == "draining", reply
                assert reply["retry_after"] == RETRY_AFTER_S
        finally:
            await late.close()
        async with gateway.http.post(f"{gateway.base}/api/rooms/busy/recording") as response:
            assert response.status == 503 and (await response.json())["error"] == "draining"
        # What was live stays live: the viewer still decodes new frames.
        seen = len(viewer.received.numbers)
        await wait_for(lambda: len(viewer.received.numbers) > seen + 15)
        assert len(gateway.registry.sessions) == 2
    finally:
        await early.close()
        await viewer.close(gateway.http, gateway.base)
        await publisher.close(gateway.http, gateway.base)


def test_drain_timeout_is_validated() -> None:
    assert load(None, environ={}).server.drain_timeout_s == 10.0
    assert load(None, environ={"GATEWAY_SERVER_DRAIN_TIMEOUT_S": "0"}).server.drain_timeout_s == 0
    for bad in ("-1", "nan", "1e9"):
        with pytest.raises(ConfigError, match=r"server\.drain_timeout_s"):
            load(None, environ={"GATEWAY_SERVER_DRAIN_TIMEOUT_S": bad})


async def test_drain_ends_once_sessions_end_by_themselves(gateway: RunningGateway) -> None:
    gateway.registry.drain.timeout_s = 120.0
    client = await WsClient.connect(gateway.http, gateway.base)
    pc, session = await ws_publish(client, "leaving", [NumberedVideoTrack(320, 240), ToneTrack()])
    viewer = await whep_watch(gateway.http, gateway.base, "leaving")
    try:
        await wait_for(lambda: len(viewer.received.numbers) > 10)
        draining = asyncio.ensure_future(drain(gateway.app))
        await client.next("going-away")
        # Told to go, the clients go: the drain does not wait its 120 s.
        await viewer.close(gateway.http, gateway.base)
        await client.send({"type": "leave", "session": session})
        ended = await client.next("session-ended")
        assert ended["session"] == session and ended["reason"] == "left"
        await asyncio.wait_for(draining, timeout=20)
        assert not gateway.registry.sessions
    finally:
        await pc.close()
        await client.close()
