"""The access policy seam: one place refuses joins, publishing and subscribing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gateway.app import create_app
from gateway.rooms.policy import AccessPolicy, Request, forbidden
from tests.conftest import loopback_config
from tests.support.media import NumberedVideoTrack
from tests.support.peers import new_peer, wait_for, whep_watch, whip_publish
from tests.support.signaling import WsClient


class ReadOnlyLobby(AccessPolicy):
    """Anyone may watch; nobody may publish in rooms named lobby-*; joins need a name."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Request] = []

    def check(self, request: Request) -> None:
        self.seen.append(request)
        if request.action == "publish" and (request.room or "").startswith("lobby-"):
            raise forbidden(f"publishing in {request.room} is not allowed")
        super().check(request)


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, aiohttp.ClientSession, ReadOnlyLobby]]:
    config = loopback_config()
    policy = ReadOnlyLobby()
    runner = web.AppRunner(create_app(config, policy))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.server.port).start()
    async with aiohttp.ClientSession() as http:
        yield f"http://127.0.0.1:{config.server.port}", http, policy
    await runner.cleanup()


async def test_policy_refusals_are_clear_and_change_nothing(
    served: tuple[str, aiohttp.ClientSession, ReadOnlyLobby],
) -> None:
    base, http, policy = served
    pc = new_peer()
    pc.addTransceiver(NumberedVideoTrack(320, 240), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    async with http.post(
        f"{base}/whip/lobby-1",
        data=pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp"},
    ) as response:
        assert response.status == 403
        assert (await response.json())["error"] == "forbidden"
    await pc.close()
    async with http.get(f"{base}/api/rooms") as response:
        assert (await response.json())["rooms"] == []

    client = await WsClient.connect(http, base)
    await client.send({"type": "join", "room": "lobby-1", "name": "ann"})
    joined = await client.next("joined")
    await client.send({"type": "offer", "sdp": "v=0", "publish": {"0": "camera"}})
    assert (await client.next("error"))["code"] == "forbidden"
    assert [r.action for r in policy.seen] == ["publish", "list", "join", "publish"]
    assert joined["room"]["room"] == "lobby-1"

    # Elsewhere publishing and watching are allowed, and the policy saw each request.
    publisher = await whip_publish(http, base, "stage", [NumberedVideoTrack(320, 240)])
    viewer = await whep_watch(http, base, "stage", kinds=("video",))
    await wait_for(lambda: len(viewer.received.numbers) >= 5)
    assert [(r.action, r.transport) for r in policy.seen[-2:]] == [
        ("publish", "whip"),
        ("subscribe", "whep"),
    ]
    await viewer.close(http, base)
    await publisher.close(http, base)
    await client.close()
