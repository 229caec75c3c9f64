"""One remote endpoint's peer connection, negotiated to publish or to watch a room."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from ..config import Config
from ..errors import GatewayError, bad_request
from ..media import tap
from ..media.publisher import Publisher
from ..media.subscriber import Subscriber
from ..signaling import ice, sdp

if TYPE_CHECKING:
    from .room import Room

logger = logging.getLogger(__name__)

PUBLISHER = "publisher"
SUBSCRIBER = "subscriber"


def _capabilities(kind: str, codec: str, rtx: bool) -> list[RTCRtpCodecCapability]:
    """Every variant of ``codec`` aiortc supports, plus RTX if wanted."""
    caps = RTCRtpSender.getCapabilities(kind).codecs
    wanted = [c for c in caps if c.name.lower() == codec.lower()]
    return wanted + [c for c in caps if rtx and c.name.lower() == "rtx"]


class Session:
    """A peer connection plus what flows over it; ``close()`` releases everything."""

    def __init__(self, room: Room, role: str, config: Config, transport: str) -> None:
        self.id = uuid.uuid4().hex
        self.room = room
        self.role = role
        self.transport = transport  # "whip", "whep" or "ws": who signals for it
        self._config = config
        self.pc = RTCPeerConnection(ice.rtc_configuration(config.ice))
        self.publishers: list[Publisher] = []
        self.subscribers: list[Subscriber] = []
        self.created_at = time.monotonic()
        self.connected_at: float | None = None
        self.closed = False
        self.close_reason: str | None = None
        self.remote_ufrag: str | None = None
        self._remote_candidates_ended = False
        self._on_close: list[Callable[[Session], Any]] = []
        self._connect_timer: asyncio.TimerHandle | None = None
        self._close_task: asyncio.Task[None] | None = None
        self.pc.on("connectionstatechange", self._on_connection_state)

    def on_close(self, callback: Callable[[Session], Any]) -> None:
        self._on_close.append(callback)

    async def accept_publish(self, offer: str) -> str:
        """Negotiate a publishing offer; returns the SDP answer."""
        description = sdp.parse_offer(offer, want="send")
        media = self._config.media
        pending: dict[RTCRtpReceiver, tuple[str, str]] = {}
        for m in description.media:
            if m.kind not in ("audio", "video") or m.port == 0:
                continue
            accepted = media.video_codecs if m.kind == "video" else media.audio_codecs
            offered = [c.name.lower() for c in m.rtp.codecs]
            codec = next((c for c in accepted if c.lower() in offered), None)
            if codec is None:
                raise GatewayError(
                    422,
                    "unsupported-codec",
                    f"no {m.kind} codec in common: the offer has "
                    f"{sdp.offered_codecs(description, m.kind)}, the gateway accepts {accepted}",
                )
            transceiver = self.pc.addTransceiver(m.kind, direction="recvonly")
            # RTX lets the publisher resend what we NACK on a separate stream.
            caps = _capabilities(m.kind, codec, rtx=True)
            transceiver.setCodecPreferences(caps)
            pending[transceiver.receiver] = (m.kind, caps[0].name)
        if not pending:
            raise bad_request("the offer publishes no audio or video", "invalid-sdp")

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            for transceiver in self.pc.getTransceivers():
                if transceiver.receiver.track is track and transceiver.receiver in pending:
                    kind, codec = pending.pop(transceiver.receiver)
                    self.publishers.append(
                        Publisher(
                            kind,
                            codec,
                            transceiver.receiver,
                            media.keyframe_request_interval_ms / 1000,
                        )
                    )

        return await self._answer(offer, description)

    async def accept_subscribe(self, offer: str, publishers: list[Publisher]) -> str:
        """Negotiate a watching offer against the room's published tracks."""
        description = sdp.parse_offer(offer, want="recv")
        media = self._config.media
        available = list(publishers)
        for m in description.media:
            if m.kind not in ("audio", "video") or m.port == 0:
                continue
            publisher = next((p for p in available if p.kind == m.kind), None)
            if publisher is None:
                self.pc.addTransceiver(m.kind, direction="inactive")
                continue
            if publisher.codec.lower() not in [c.name.lower() for c in m.rtp.codecs]:
                raise GatewayError(
                    422,
                    "unsupported-codec",
                    f"the room's {m.kind} is {publisher.codec}, which the offer does not accept "
                    f"(it offers {sdp.offered_codecs(description, m.kind)})",
                )
            available.remove(publisher)
            subscriber = publisher.subscribe(media.viewer_backlog_bytes)
            self.subscribers.append(subscriber)
            transceiver = self.pc.addTransceiver(subscriber, direction="sendonly")
            # No RTX towards viewers: their NACKs are answered with the original packet.
            transceiver.setCodecPreferences(_capabilities(m.kind, publisher.codec, rtx=False))
            tap.attach_sender(
                transceiver.sender,
                subscriber.start,
                subscriber.on_keyframe_request,
                subscriber.on_nack,
            )
        if not self.subscribers:
            raise GatewayError(
                422, "nothing-to-receive", "the offer asks for no kind of media the room publishes"
            )
        return await self._answer(offer, description)

    async def _answer(self, offer: str, description: Any) -> str:
        media = [m for m in description.media if m.ice is not None]
        self.remote_ufrag = media[0].ice.usernameFragment if media else None
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=sdp.strip_mdns_candidates(offer), type="offer")
            )
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except GatewayError:
            raise
        except Exception as exc:
            raise GatewayError(
                422, "negotiation-failed", f"the offer cannot be negotiated: {exc}"
            ) from exc
        self._connect_timer = asyncio.get_running_loop().call_later(
            self._config.ice.connect_timeout_s, self._connect_timed_out
        )
        answer: str = self.pc.localDescription.sdp
        if self._config.ice.announced_address:
            answer = sdp.announce_address(answer, self._config.ice.announced_address)
        return answer

    async def add_candidate(
        self, candidate: str | None, sdp_mid: str | None = None, sdp_mline_index: int | None = None
    ) -> None:
        """A trickled remote candidate; None signals end-of-candidates."""
        if self.closed:
            raise GatewayError(410, "session-closed", "the session has ended")
        if candidate is None or candidate == "":
            if not self._remote_candidates_ended:
                self._remote_candidates_ended = True
                await self._add_to_pc(None)
            return
        parsed = ice.parse_candidate(candidate, sdp_mid, sdp_mline_index)
        if parsed is None or self._remote_candidates_ended:
            return
        await self._add_to_pc(parsed)

    async def _add_to_pc(self, candidate: Any) -> None:
        try:
            await self.pc.addIceCandidate(candidate)
        except ValueError:
            # aioice refuses candidates after end-of-candidates on a shared (bundled)
            # transport; the candidate is redundant there.
            pass

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and self.connected_at is None:
            self.connected_at = time.monotonic()
            if self._connect_timer is not None:
                self._connect_timer.cancel()
                self._connect_timer = None
        elif state in ("failed", "closed"):
            self.close_soon("ice-failed" if state == "failed" else "closed")

    def _connect_timed_out(self) -> None:
        self._connect_timer = None
        if self.connected_at is None:
            self.close_soon("connect-timeout")

    def close_soon(self, reason: str) -> None:
        if not self.closed and self._close_task is None:
            self._close_task = asyncio.ensure_future(self.close(reason))

    async def close(self, reason: str = "closed") -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        if self._connect_timer is not None:
            self._connect_timer.cancel()
            self._connect_timer = None
        for publisher in self.publishers:
            publisher.close()
        for subscriber in self.subscribers:
            subscriber.stop()
        for callback in self._on_close:
            try:
                callback(self)
            except Exception:
                logger.exception("session close callback failed")
        try:
            await self.pc.close()
        except Exception:
            logger.exception("closing peer connection of session %s failed", self.id)
        logger.info(
            "session %s (%s, room %s) closed: %s", self.id, self.role, self.room.name, reason
        )

    @property
    def state(self) -> str:
        return "closed" if self.closed else str(self.pc.connectionState)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "transport": self.transport,
            "state": self.state,
            "tracks": [{"id": p.id, "kind": p.kind, "codec": p.codec} for p in self.publishers],
        }
