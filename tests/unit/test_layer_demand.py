"""Which simulcast layers a publisher is asked to send: those anyone takes, the largest while
the track itself is watched, all until their sizes are known; stopped only after a while."""

from __future__ import annotations

from gateway.media.feed import FrameHandler
from gateway.media.layer_demand import IDLE_CHECKS, LayerDemand
from gateway.media.publisher import Publisher


class NoFeed:
    def start(self, on_frames: FrameHandler) -> None:
        pass

    def request_keyframe(self, ssrc: int) -> None:
        pass

    def counters(self) -> dict[str, int]:
        return {}


def track() -> Publisher:
    main = Publisher("video", "VP8", NoFeed(), 0.5)
    main.layers = {rid: Publisher("video", "VP8", NoFeed(), 0.5) for rid in ("q", "h", "f")}
    return main


SIZES = {"q": 160 * 90.0, "h": 320 * 180.0, "f": 640 * 360.0}


async def test_only_what_is_watched_is_sent() -> None:
    main = track()
    told: list[dict[str, bool]] = []
    sizes: dict[str, float | None] = dict(SIZES)
    demand = LayerDemand(main, sizes.get, told.append)
    main.subscribe(1 << 20)  # a viewer of the track: it follows the largest layer
    for _ in range(IDLE_CHECKS):
        demand.check()
    assert told == [{"q": True, "h": False, "f": True}]  # the smallest always goes on
    # A viewer pins h: it is asked for at once, on the next check.
    viewer = main.layers["h"].subscribe(1 << 20)
    demand.check()
    assert told[-1] == {"q": True, "h": True, "f": True}
    viewer.stop()
    demand.check()
    assert told[-1]["h"] is True  # not stopped at the first idle check
    demand.check()
    assert told[-1]["h"] is False and demand.changes == 3


async def test_nothing_is_stopped_while_a_size_is_unknown() -> None:
    main = track()
    told: list[dict[str, bool]] = []
    sizes: dict[str, float | None] = {**SIZES, "f": None}
    demand = LayerDemand(main, sizes.get, told.append)
    for _ in range(IDLE_CHECKS + 2):
        demand.check()
    assert told == [] and demand.active == {"q": True, "h": True, "f": True}


async def test_a_track_nobody_watches_needs_only_its_smallest_layer() -> None:
    main = track()
    told: list[dict[str, bool]] = []
    demand = LayerDemand(main, dict(SIZES).get, told.append)
    for _ in range(IDLE_CHECKS):
        demand.check()
    assert told == [{"q": True, "h": False, "f": False}]
