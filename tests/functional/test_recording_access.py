"""Recordings with auth on: only a record grant for the room starts, lists, plays or
deletes them; a <video> plays them through a short-lived signed URL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config
from tests.conftest import RunningGateway
from tests.support.media import NumberedVideoTrack
from tests.support.peers import wait_for, whip_publish
from tests.support.tokens import bearer, secure_config, token

from .recording_checks import play


@pytest.fixture
def gateway_config(tmp_path: Path) -> Config:
    config = secure_config()
    config.recording.directory = str(tmp_path / "recordings")
    return config


async def api(
    gateway: RunningGateway, method: str, path: str, who: str | None = None
) -> tuple[int, Any]:
    headers = bearer(who) if who else {}
    async with gateway.http.request(method, gateway.base + path, headers=headers) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.read()


async def record(gateway: RunningGateway, room: str, who: str) -> str:
    """A short real recording of ``room``; its id."""
    publisher = await whip_publish(
        gateway.http, gateway.base, room, [NumberedVideoTrack(320, 240)], token=token("cam", room)
    )
    status, body = await api(gateway, "POST", f"/api/rooms/{room}/recording", who)
    assert status == 201, body
    recording_id: str = body["started"][0]["id"]
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        _, state = await api(gateway, "GET", f"/api/rooms/{room}/recording", who)
        if sum(r["frames_written"] for r in state["recordings"]) >= 30:
            break
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.2)
    status, _ = await api(gateway, "DELETE", f"/api/rooms/{room}/recording", who)
    assert status == 200
    await publisher.close(gateway.http, gateway.base)
    return recording_id


async def test_recordings_need_a_record_grant_for_their_room(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    recorder = token("rec", "demo", roomRecord=True)
    other = await record(gateway, "other", token("rec2", "other", roomRecord=True))
    mine = await record(gateway, "demo", recorder)

    # Without a token: nothing, not even the list.
    for method, path in (
        ("GET", "/api/recordings"),
        ("GET", f"/api/recordings/{mine}"),
        ("GET", f"/api/recordings/{mine}/file"),
        ("DELETE", f"/api/recordings/{mine}"),
        ("POST", "/api/rooms/demo/recording"),
    ):
        status, body = await api(gateway, method, path)
        assert (status, body["error"]) == (401, "token-required"), path
    # A participant of the room without roomRecord: refused, and the list shows nothing.
    member = token("ann", "demo")
    assert (await api(gateway, "POST", "/api/rooms/demo/recording", member))[0] == 403
    assert (await api(gateway, "GET", f"/api/recordings/{mine}/file", member))[0] == 403
    assert (await api(gateway, "DELETE", f"/api/recordings/{mine}", member))[0] == 403
    status, body = await api(gateway, "GET", "/api/recordings", member)
    assert (status, body) == (200, {"recordings": []})

    # The recorder of demo sees demo's recording only, and plays it by its signed URL.
    status, body = await api(gateway, "GET", "/api/recordings", recorder)
    assert [r["id"] for r in body["recordings"]] == [mine]
    assert (await api(gateway, "GET", f"/api/recordings/{other}", recorder))[0] == 403
    url = body["recordings"][0]["url"]
    status, media = await api(gateway, "GET", url)  # no bearer: the signature suffices
    assert status == 200
    path = tmp_path / "played.webm"
    path.write_bytes(media)
    assert len(play(path).numbers) >= 20  # decoded frames, read back from what was served
    for tampered in (
        url.replace(mine, other),
        url[:-4] + ("0000" if not url.endswith("0000") else "1111"),
        url.replace("expires=", "expires=9"),
    ):
        status, body = await api(gateway, "GET", tampered)
        assert status == 403 and body["error"] == "bad-signature", tampered

    status, _ = await api(gateway, "DELETE", f"/api/recordings/{mine}", recorder)
    assert status == 204
    admin = token("op", admin=True)
    status, body = await api(gateway, "GET", "/api/recordings", admin)
    assert [r["id"] for r in body["recordings"]] == [other]
    await wait_for(lambda: not gateway.registry.sessions)
