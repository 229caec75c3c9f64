"""HTTP requests of the functional tests: real aiortc offers, and calls that return JSON."""

from __future__ import annotations

from typing import Any

from tests.conftest import RunningGateway

from .media import NumberedVideoTrack, ToneTrack
from .peers import new_peer, prefer

SDP = {"Content-Type": "application/sdp"}


async def offer_sdp(direction: str = "sendonly", kinds: dict[str, str] | None = None) -> str:
    """A real aiortc offer, {kind: codec} (default one VP8 video), sending real tracks."""
    pc = new_peer()
    for kind, codec in (kinds or {"video": "VP8"}).items():
        track = NumberedVideoTrack(320, 240) if kind == "video" else ToneTrack()
        transceiver = pc.addTransceiver(
            track if direction == "sendonly" else kind, direction=direction
        )
        prefer(transceiver, kind, codec)
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


async def call(
    gateway: RunningGateway, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body ({} when there is none) and headers of one request."""
    async with gateway.http.request(method, gateway.base + path, **kwargs) as response:
        body = await response.json() if response.content_type == "application/json" else {}
        return response.status, body, dict(response.headers)
