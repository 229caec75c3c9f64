"""Each simulcast video a session receives (or single-layer video with server-made
layers), on the layer its viewer's link carries: the estimate (media/viewer_link.py) read
every half second, the layer chosen under the viewer's own cap (media/layer_choice.py),
the switch made at the layer's keyframe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import GatewayError
from ..limits.meter import RateMeter
from ..media.layer_choice import LayerChoice
from ..media.probe import Probe
from ..media.publisher import Publisher
from ..media.sender_slot import SenderSlot
from ..media.subscriber import Subscriber
from ..media.viewer_link import ViewerLink
from ..processing.ladder import MadeLayers
from ..processing.output import RenditionOutput

TICK_S = 0.5
UDP_IP_OVERHEAD = 8 + 20
# The estimate is not let grow past what the viewer could use: this many times the top
# layers' bitrates (a little room to step up into), and at least this much.
HEADROOM = 1.5
LEAST_CEILING_BPS = 500_000
# A layer's bitrate is judged by its recent peak, falling this much per tick (~4%/s):
# an encoder's output swings by half within seconds (keyframes, motion, its own
# estimate), and a layer chosen in a trough would not fit a second later.
PEAK_DECAY = 0.98
# A made layer's ladder names the track's own picture so: no rid can be empty.
ORIGINAL = ""
# The viewer's feedback on a probe's last packets arrives about this long after them.
PROBE_FEEDBACK_S = 0.3
# A probe pads this much past the next layer's rate: what it shows then holds the layer
# with a little room (its rate swings).
PROBE_OVERSHOOT = 1.1


@dataclass
class Cap:
    """What a viewer allows on one m-line: a layer by rid, or the largest picture within a
    size; neither: the track's best layer."""

    rid: str | None = None
    max_width: int | None = None
    max_height: int | None = None
    max_fps: float | None = None  # applied by the slot (temporal layers left out)


@dataclass
class _Choice:
    choice: LayerChoice
    cap: Cap
    target: str | None = None  # the rid chosen (None: the track's best, followed layer)


@dataclass
class _Probing:
    probe: Probe
    cuts: int  # the estimate's cuts and overuses when it started: more is a failure
    overuses: int
    needs_bps: float  # what must get through for it to pass: audio and the wanted layer
    carried_bps: float = 0.0  # the most that got through in a feedback window meanwhile


class LayerSelection:
    """Owned by a SessionMedia: its slots (by mid), the subscribe call of its viewers, and
    ``tell(message)`` for the viewer (layer chosen, video paused or resumed)."""

    def __init__(
        self,
        slots: dict[str, SenderSlot],
        subscribe: Callable[[Publisher | RenditionOutput], Subscriber],
        tell: Callable[[dict[str, Any]], None],
        adapt: bool,
    ) -> None:
        self._slots = slots
        self._subscribe = subscribe
        self._tell = tell
        self._adapt = adapt  # media.adapt_layers: off, only the viewers' own caps apply
        self.link = ViewerLink(self._sent_bytes)
        self._audio = RateMeter(self._audio_bytes)
        self._choices: dict[str, _Choice] = {}
        self._outputs: set[int] = set()
        self._peaks: dict[tuple[str, str], float] = {}  # (mid, rid) -> peak bitrate
        self.transport_cc: dict[str, int] = {}  # mid -> negotiated extension id
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self.audio_bps = 0.0  # audio sent to the viewer, on the wire
        self.made_refused = 0  # a made layer not started (the processing limit)
        self._probes: dict[str, _Probing] = {}  # mid -> the probe before its step up
        # Mids stepped down (or paused): once the switch is made, what was sent before it
        # is not judged for congestion (the old layer's queue drains; SendLog.forgive).
        self._stepped_down: set[str] = set()

    def _sent_bytes(self) -> int:
        return sum(s.output.bytes_sent for s in self._slots.values() if s.output is not None)

    def _audio_bytes(self) -> float:
        """Audio sent, on the wire: small packets, for which UDP and IP add half again."""
        return float(
            sum(
                s.output.bytes_sent + s.output.packets_sent * UDP_IP_OVERHEAD
                for s in self._slots.values()
                if s.output is not None and s.kind == "audio"
            )
        )

    def start(self) -> None:
        if self._timer is None and not self._closed:
            self._timer = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def close(self) -> None:
        self._closed = True
        for running in self._probes.values():
            running.probe.close()
        self._probes.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def set_cap(self, mid: str, cap: Cap) -> None:
        """The viewer's own cap on ``mid``; the choice starts again at its top."""
        self._choices[mid] = _Choice(LayerChoice(), cap, cap.rid)

    def forget(self, mid: str) -> None:
        self._choices.pop(mid, None)
        self._peaks = {key: peak for key, peak in self._peaks.items() if key[0] != mid}
        running = self._probes.pop(mid, None)
        if running is not None:
            running.probe.close()

    def _tick(self) -> None:
        self._timer = None
        try:
            self.check()
        finally:
            self.start()

    def check(self) -> None:
        """Attach new senders to the link, then re-choose every simulcast video's layer."""
        for mid, slot in self._slots.items():
            output = slot.output
            if output is not None and id(output) not in self._outputs:
                self._outputs.add(id(output))
                self.link.add_output(output, self.transport_cc.get(mid))
        ladders = {mid: ladder for mid in self._slots if (ladder := self._ladder(mid))}
        top = sum(rates[-1] for _, rates, _ in ladders.values())
        audio_bps = self.audio_bps = self._audio.rate() * 8
        estimate = self.link.estimate
        estimate.ceiling_bps = max(HEADROOM * top, LEAST_CEILING_BPS) + audio_bps
        if not self._adapt:
            return
        budget = (estimate.bps - audio_bps) / max(len(ladders), 1)
        for mid, (track, rates, rids) in ladders.items():
            self._choose(mid, track, rates, rids, budget)

    def _ladder(self, mid: str) -> tuple[Publisher, list[float], list[str | None]] | None:
        """The layered track ``mid`` receives, and its layers' bitrates and rids, smallest
        first, up to the viewer's cap (None as the top rid: the track itself, that is its
        followed layer, or the original picture of a track with made layers)."""
        slot = self._slots[mid]
        current = slot.subscriber.source if slot.subscriber is not None else None
        track = layered_track(current)
        if slot.kind != "video" or track is None or current is None:
            return None
        if track.layers and track.layer_info is not None:
            layers = [info for info in track.layer_info() if info["resolution"]]
        elif (maker := made_layers(track)) is not None and (made := maker.info()):
            original = {
                "rid": ORIGINAL,
                "resolution": track.resolution,
                "wire_bps": maker.top_wire_bps(),
                "flowing": True,
            }
            layers = [*made, original]
        else:
            return None
        entry = self._choices.get(mid)
        if entry is None:
            # Subscribed to a layer by name (WHEP ?layer=RID): that is the viewer's cap.
            rid = getattr(current, "rid", None)
            entry = self._choices[mid] = _Choice(LayerChoice(), Cap(rid), rid)
        cap = entry.cap
        sized = sorted(
            (w * h, str(info["rid"]), info) for info in layers for w, h in [info["resolution"]]
        )
        ladder: list[tuple[float, str | None]] = []
        for _, rid, info in sized:
            width, height = info["resolution"]
            if cap.max_width is not None and width > cap.max_width and ladder:
                break
            if cap.max_height is not None and height > cap.max_height and ladder:
                break
            if info["flowing"] or rid == cap.rid:
                ladder.append((self._peak(mid, rid, float(info["wire_bps"])), rid))
            if rid == cap.rid:
                break
        if cap.rid is not None and all(rid != cap.rid for _, rid in ladder):
            ladder.append((0.0, cap.rid))  # asked for, its size not yet known
        if not ladder:
            return None
        if (cap.rid, cap.max_width, cap.max_height) == (None, None, None) and track.layers:
            followed = next((str(i["rid"]) for i in layers if i["followed"]), None)
            if ladder[-1][1] == followed:
                ladder[-1] = (ladder[-1][0], None)  # the track itself: it follows this one
        rids = [None if rid == ORIGINAL else rid for _, rid in ladder]
        return track, [rate for rate, _ in ladder], rids

    def _peak(self, mid: str, rid: str, rate: float) -> float:
        key = (mid, rid)
        peak = max(rate, self._peaks.get(key, 0.0) * PEAK_DECAY)
        self._peaks[key] = peak
        return peak

    def _choose(
        self,
        mid: str,
        track: Publisher,
        rates: list[float],
        rids: list[str | None],
        budget: float,
    ) -> None:
        slot = self._slots[mid]
        if slot.standby is not None or slot.subscriber is None:
            return  # a switch is under way: judged again once it is made
        if mid in self._stepped_down:
            self._stepped_down.discard(mid)
            if self.link.send_log is not None:
                self.link.send_log.forgive()
        entry = self._choices[mid]
        choice = entry.choice
        source = slot.subscriber.source
        received = None if source is track else getattr(source, "rid", None)
        if received in rids:
            choice.place(rids.index(received))
        # A step up is probed first where the viewer's feedback can judge the padding.
        choice.probing = self.link.send_log is not None
        self._judge_probe(mid, choice)
        was_paused = choice.paused
        before = choice.level
        level = choice.choose(rates, budget)
        if before is not None and (level is None or level < before):
            self._stepped_down.add(mid)
        if choice.probe is not None and mid not in self._probes and level is not None:
            estimate = self.link.estimate
            wanted = PROBE_OVERSHOOT * rates[choice.probe]
            self._probes[mid] = _Probing(
                Probe(slot.subscriber, max(wanted - rates[level], 0.0)),
                estimate.cuts,
                estimate.overuses,
                0.9 * (self.audio_bps + wanted),
            )
        if level is None:
            if not was_paused:
                if received != rids[0] and not self._move(slot, track, rids[0], at_once=True):
                    return
                assert slot.subscriber is not None
                slot.subscriber.pause()
                entry.target = rids[0]
                self._tell({"type": "video-paused", "mid": mid, "reason": "bandwidth"})
            return
        rid = rids[level]
        if was_paused:
            slot.subscriber.resume()
            self._tell({"type": "video-resumed", "mid": mid})
        if received != rid:
            if not self._move(slot, track, rid):
                return
            if track.layers_wanted is not None:
                track.layers_wanted()
        if rid != entry.target:
            entry.target = rid
            self._tell({"type": "layer-chosen", "mid": mid, "layer": rid, "reason": "bandwidth"})

    def _judge_probe(self, mid: str, choice: LayerChoice) -> None:
        """A probe ends when the estimate answers it with a cut (the link did not carry
        it), when its feedback is in with none (it did), or when the choice dropped it."""
        running = self._probes.get(mid)
        if running is None:
            return
        estimate = self.link.estimate
        running.carried_bps = max(running.carried_bps, estimate.received_bps)
        congested = estimate.cuts > running.cuts or estimate.overuses > running.overuses
        over = time.monotonic() >= running.probe.ends_at + PROBE_FEEDBACK_S
        if congested or over or choice.probe is None:
            running.probe.close()
            del self._probes[mid]
            if choice.probe is not None:
                # It passes with no congestion, and the padded rate measured through.
                carried = not congested and running.carried_bps >= running.needs_bps
                if carried:
                    estimate.probed(running.carried_bps)
                choice.probed(carried)

    def _move(
        self, slot: SenderSlot, track: Publisher, rid: str | None, at_once: bool = False
    ) -> bool:
        """Put ``slot`` on layer ``rid`` of ``track``: at the layer's keyframe, or
        ``at_once`` (to pause it there). False when a made layer cannot be started."""
        try:
            target = layer_target(track, rid)
        except GatewayError:
            self.made_refused += 1
            return False
        subscriber = self._subscribe(target)
        if at_once:
            slot.assign(subscriber)
        else:
            slot.switch(subscriber)
        return True

    def stats(self, mid: str) -> dict[str, Any] | None:
        entry = self._choices.get(mid)
        if entry is None:
            return None
        choice = entry.choice
        return {
            "target": entry.target,
            "paused": choice.paused,
            "switches": choice.switches,
            "pauses": choice.pauses,
            "failed_steps": choice.failed_steps,
            "hold_s": choice.hold_s,
            "probes": choice.probes,
            "probing": choice.probe is not None,
            "cap": {k: v for k, v in vars(entry.cap).items() if v is not None},
        }


def layered_track(source: object) -> Publisher | None:
    """The track whose layers ``source`` is one of (a simulcast layer's track, a made
    layer's track), or ``source`` itself if it is a track; None for a processed output."""
    if isinstance(source, Publisher):
        return source.layer_of or source
    if isinstance(source, RenditionOutput) and source.rung is not None:
        return source.source
    return None


def layer_target(track: Publisher, rid: str | None) -> Publisher | RenditionOutput:
    """What a viewer of ``track`` subscribes to for layer ``rid`` (None: the track itself):
    a simulcast layer's track, or a made layer (started now if nobody takes it; raises
    unknown-layer, or too-many-renditions at the processing limit)."""
    if rid is None:
        return track
    layer = track.layers.get(rid)
    if layer is not None:
        return layer
    maker = made_layers(track)
    if maker is None:
        raise GatewayError(404, "unknown-layer", f"track {track.id} has no layer {rid!r}")
    return maker.output(rid)


def made_layers(track: Publisher) -> MadeLayers | None:
    """The layers the gateway makes of ``track`` (a single-layer video in a room with a
    ladder), if any."""
    maker = track.made_layers
    return maker if isinstance(maker, MadeLayers) else None
