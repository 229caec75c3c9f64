"""One sending transceiver of a session, and the Subscriber that currently feeds it."""

from __future__ import annotations

import asyncio
from typing import Any

from aiortc import MediaStreamTrack, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError

from . import tap
from .subscriber import Subscriber


class IdleTrack(MediaStreamTrack):
    """What aiortc's sender holds: media is written by the Subscriber, never pulled.

    aiortc's send loop waits in ``recv()`` for the slot's whole life. A slot outlives
    its subscribers (a viewer may switch tracks on one transceiver), so this track,
    not the Subscriber, is what aiortc sees and eventually stops.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Any:
        await asyncio.shield(self._ended)
        raise MediaStreamError

    def stop(self) -> None:
        if not self._ended.done():
            self._ended.set_result(None)
        super().stop()


class SenderSlot:
    """Routes aiortc's sender events (started, PLI/FIR, NACK) to the current Subscriber."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.track = IdleTrack(kind)
        self.output: tap.RtpOutput | None = None
        self.subscriber: Subscriber | None = None
        # The last subscriber that wrote here: the next one continues its sequence
        # numbers (SRTP refuses to protect an index it has passed) and timeline.
        self._last: Subscriber | None = None
        # A subscriber waiting for its source's keyframe to take over (switch()).
        self._standby: Subscriber | None = None
        self._max_fps: float | None = None

    @property
    def max_fps(self) -> float | None:
        """The viewer's frame-rate cap, kept by every subscriber that feeds this slot."""
        return self._max_fps

    @max_fps.setter
    def max_fps(self, fps: float | None) -> None:
        self._max_fps = fps
        for subscriber in (self.subscriber, self._standby):
            if subscriber is not None:
                subscriber.max_fps = fps

    def bind(self, transceiver: RTCRtpTransceiver) -> None:
        tap.attach_sender(transceiver.sender, self._started, self._keyframe_request, self._nack)

    def assign(self, subscriber: Subscriber | None) -> None:
        """Feed this transceiver from ``subscriber`` (None: nothing, the slot idles)."""
        self._drop_standby()
        previous = self.subscriber
        if previous is subscriber:
            return
        if subscriber is not None:
            subscriber.max_fps = self._max_fps
        if previous is not None:
            previous.stop()
            self._last = previous
        if subscriber is not None and self._last is not None:
            subscriber.continue_from(self._last)
        self.subscriber = subscriber
        if subscriber is not None and self.output is not None:
            subscriber.start(self.output)

    def switch(self, subscriber: Subscriber) -> None:
        """Feed this transceiver from ``subscriber`` as of its source's next keyframe; the
        current subscriber goes on until then (a simulcast layer switch with no gap). Not
        yet connected, or nothing current: at once, as ``assign``."""
        if self.output is None or self.subscriber is None or self.kind != "video":
            self.assign(subscriber)
            return
        self._drop_standby()
        self._standby = subscriber
        subscriber.max_fps = self._max_fps
        subscriber.stand_by(self.output, lambda: self._take_over(subscriber))

    def _take_over(self, subscriber: Subscriber) -> None:
        if self._standby is not subscriber:
            return
        self._standby = None
        previous = self.subscriber
        if previous is not None:
            previous.stop()
            self._last = previous
            subscriber.continue_from(previous)
        self.subscriber = subscriber

    def _drop_standby(self) -> None:
        if self._standby is not None:
            self._standby.stop()
            self._standby = None

    @property
    def standby(self) -> Subscriber | None:
        return self._standby

    def close(self) -> None:
        self.assign(None)
        self.track.stop()

    def _started(self, output: tap.RtpOutput) -> None:
        # aiortc calls the sender's send() again on every renegotiation.
        if self.output is not None:
            return
        self.output = output
        if self.subscriber is not None:
            self.subscriber.start(output)

    def _keyframe_request(self) -> None:
        if self.subscriber is not None:
            self.subscriber.on_keyframe_request()

    def _nack(self, sequence_number: int) -> None:
        if self.subscriber is not None:
            self.subscriber.on_nack(sequence_number)
