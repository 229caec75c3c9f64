"""One node's copy of a room homed elsewhere: a WHEP viewer of the home node whose tracks
are published here, so local viewers are served without crossing to the home node."""

from __future__ import annotations

import contextlib
import logging

import aiohttp
from aiortc import RTCSessionDescription
from aiortc.sdp import SessionDescription

from ..errors import GatewayError
from ..rooms.negotiation import DEFAULT_SOURCE
from ..rooms.session import Session

logger = logging.getLogger(__name__)

RELAY = "relay"  # the role and transport of a relay session
RELAY_HEADER = "X-Gateway-Relay"  # on a relay's WHEP POST: the node it comes from
PULL_TIMEOUT_S = 10.0


class RelaySession(Session):
    """The gateway as the offering side: it asks the home node (``POST /whep/{room}``) for
    every track of the room, and each received track becomes a Publisher here.

    Loss and keyframes are repaired across it as with any viewer: this side's receivers
    NACK and send PLIs (asked by local viewers through the Publisher's KeyframeRequester),
    the home node's Subscriber answers them. One relay per room per node, whatever the
    number of viewers here.
    """

    origin: str = ""
    origin_location: str | None = None
    _http: aiohttp.ClientSession | None = None
    _token: str | None = None
    _node_id: str = ""

    async def pull(
        self, http: aiohttp.ClientSession, origin: str, token: str | None, node_id: str
    ) -> None:
        self.origin, self._http, self._token, self._node_id = origin, http, token, node_id
        for kind in ("video", "audio"):
            self.pc.addTransceiver(kind, direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())  # candidates gathered
        try:
            async with http.post(
                f"{origin}/whep/{self.room.name}",
                data=self.pc.localDescription.sdp,
                headers={**self._headers("application/sdp"), RELAY_HEADER: self._node_id},
                timeout=aiohttp.ClientTimeout(total=PULL_TIMEOUT_S),
                allow_redirects=False,
            ) as response:
                body = await response.text()
                if response.status != 201:
                    raise GatewayError(
                        502,
                        "relay-failed",
                        f"the room's home node {origin} answered {response.status}: {body[:300]}",
                    )
                self.origin_location = response.headers.get("Location")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise GatewayError(
                502, "relay-failed", f"the room's home node {origin} cannot be reached: {exc}"
            ) from exc
        # What each m-line carries is known from the answer; the track events that
        # setRemoteDescription fires make a Publisher of each (Session._on_track).
        answer = SessionDescription.parse(body)
        by_mid = {m.rtp.muxId: m for m in answer.media}
        for transceiver in self.pc.getTransceivers():
            media = by_mid.get(transceiver.mid or "")
            if media is None or media.direction != "sendonly":
                continue  # the room has no track of that kind
            codec = next(c.name for c in media.rtp.codecs if c.name.lower() != "rtx")
            self.media.expect_track(
                transceiver.receiver, media.kind, codec, DEFAULT_SOURCE[media.kind], media.rtp.muxId
            )
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        except Exception as exc:
            raise GatewayError(
                502, "relay-failed", f"the home node's answer cannot be used: {exc}"
            ) from exc
        if not self.publishers:
            raise GatewayError(404, "no-publisher", f"room {self.room.name!r} has no publisher")

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        if content_type is not None:
            headers["Content-Type"] = content_type
        return headers

    async def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        await super().close(reason)
        # The home node learns at once (rather than by ICE consent) that this copy is gone.
        if self._http is not None and self.origin_location and not self._http.closed:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self._http.delete(
                    self.origin + self.origin_location,
                    headers=self._headers(),
                    timeout=aiohttp.ClientTimeout(total=2.0),
                ):
                    pass
