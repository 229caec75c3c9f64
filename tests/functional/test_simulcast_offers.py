"""Simulcast offers over WHIP: accepted layers answered, bad ones refused with clear errors,
rids without their header extension received as one stream; nothing half made."""

from __future__ import annotations

import pytest

from gateway.config import Config
from gateway.signaling.simulcast import RID_URI
from tests.conftest import RunningGateway
from tests.support.media import NumberedVideoTrack
from tests.support.peers import wait_for
from tests.support.requests import SDP, call, offer_sdp
from tests.support.signaling import WsClient, ws_publish, ws_subscribe

RID_EXTMAP = f"a=extmap:10 {RID_URI}\r\n"


def with_simulcast(offer: str, lines: str, extension: bool = True) -> str:
    """The offer's video section given rids (and the rid extension), as Chromium sends."""
    head, video = offer.split("m=video", 1)
    first, rest = video.split("\r\n", 1)
    extra = (RID_EXTMAP if extension else "") + lines.replace("\n", "\r\n")
    return f"{head}m=video{first}\r\n{extra}{rest}"


LAYERS = "a=rid:q send\na=rid:h send\na=simulcast:send q;h\n"


async def test_a_simulcast_offer_is_answered_with_its_layers(gateway: RunningGateway) -> None:
    offer = with_simulcast(await offer_sdp(), LAYERS)
    async with gateway.http.post(f"{gateway.base}/whip/sim", data=offer, headers=SDP) as response:
        answer = await response.text()
        assert response.status == 201, answer
        location = response.headers["Location"]
    assert "a=rid:q recv" in answer and "a=simulcast:recv q;h" in answer
    assert RID_URI in answer  # the extension that carries the rid is accepted
    (track,) = gateway.registry.rooms["sim"].publishers
    assert set(track.layers) == {"q", "h"} and track.describe()["layers"][0]["rid"] == "q"
    status, _, _ = await call(gateway, "DELETE", location)
    assert status == 200
    assert track.closed and all(layer.closed for layer in track.layers.values()) is True


@pytest.mark.parametrize(
    ("lines", "code"),
    [
        ("a=rid:q send\na=simulcast:send q;x\n", "unknown-rid"),
        (
            "a=rid:a send\na=rid:b send\na=rid:c send\na=rid:d send\na=simulcast:send a;b;c;d\n",
            "too-many-layers",
        ),
        ("a=rid:q send\na=rid:h send\na=simulcast:send q;q\n", "invalid-sdp"),
        ("a=rid:q! send\na=simulcast:send q\n", "invalid-sdp"),
    ],
)
async def test_bad_simulcast_offers_are_refused(
    gateway: RunningGateway, lines: str, code: str
) -> None:
    offer = with_simulcast(await offer_sdp(), lines)
    status, body, _ = await call(gateway, "POST", "/whip/bad", data=offer, headers=SDP)
    assert (status, body["error"]) == (400, code), body
    assert "bad" not in gateway.registry.rooms and not gateway.registry.sessions


async def test_rids_without_their_extension_are_one_stream(gateway: RunningGateway) -> None:
    offer = with_simulcast(await offer_sdp(), LAYERS, extension=False)
    async with gateway.http.post(f"{gateway.base}/whip/plain", data=offer, headers=SDP) as response:
        answer = await response.text()
        assert response.status == 201, answer
    assert "a=simulcast" not in answer and "a=rid" not in answer
    (track,) = gateway.registry.rooms["plain"].publishers
    assert track.layers == {}


@pytest.fixture
def gateway_config(gateway_config: Config) -> Config:
    gateway_config.media.max_simulcast_layers = 3
    return gateway_config


async def test_a_layer_switch_of_a_plain_stream_is_refused(gateway: RunningGateway) -> None:
    """The WebSocket's layer message, and the HTTP one, on a viewer of one stream."""
    publisher_socket = await WsClient.connect(gateway.http, gateway.base)
    viewer_socket = await WsClient.connect(gateway.http, gateway.base)
    publisher_pc, _ = await ws_publish(publisher_socket, "plain", [NumberedVideoTrack(320, 240)])
    pc, session, received, tasks = await ws_subscribe(viewer_socket, "plain")
    try:
        await wait_for(lambda: len(received.numbers) > 5)
        await viewer_socket.send({"type": "layer", "session": session, "layer": "q", "id": 1})
        error = await viewer_socket.next("error")
        assert (error["code"], error["id"]) == ("not-simulcast", 1), error
        await viewer_socket.send({"type": "layer", "session": session, "max_width": "wide"})
        assert (await viewer_socket.next("error"))["code"] == "invalid-message"
        status, body, _ = await call(
            gateway, "PUT", f"/api/sessions/{session}/layer", json={"layer": None}
        )
        assert (status, body["error"]) == (422, "not-simulcast"), body
        count = len(received.numbers)
        await wait_for(lambda: len(received.numbers) > count + 10)  # it goes on as it was
    finally:
        for task in tasks:
            task.cancel()
        await pc.close()
        await publisher_pc.close()
        await viewer_socket.close()
        await publisher_socket.close()
