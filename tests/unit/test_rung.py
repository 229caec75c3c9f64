"""Server-made ladder rungs: their picture sizes, scaling, and which rooms get which ladder."""

from __future__ import annotations

import av
import numpy as np

from gateway.config import Config, Ladder, LadderRung
from gateway.processing.ladder import wire_bitrate
from gateway.processing.renditions import Renditions
from gateway.processing.rung import Rung


def test_a_rungs_width_keeps_the_aspect_ratio_and_is_even() -> None:
    assert Rung(360, 500_000).size(1280, 720) == (640, 360)
    assert Rung(240, 300_000).size(640, 360) == (426, 240)
    assert Rung(120, 100_000).size(640, 360) == (214, 120)
    assert Rung(180, 100_000).size(480, 640) == (136, 180)  # portrait
    assert Rung(180, 100_000).rid == "180p"


def test_scaling_makes_the_rung_in_yuv420p_and_passes_a_frame_already_its_size() -> None:
    rgb = av.VideoFrame.from_ndarray(np.full((360, 640, 3), 200, np.uint8), format="rgb24")
    scaled = Rung(180, 100_000).scale(rgb)
    assert (scaled.width, scaled.height, scaled.format.name) == (320, 180, "yuv420p")
    assert Rung(180, 100_000).scale(scaled) is scaled


def test_the_first_matching_ladder_applies_largest_rung_first() -> None:
    config = Config()
    config.processing.ladders = [
        Ladder("class-*", [LadderRung(180, 150), LadderRung(360, 500)]),
        Ladder("*", [LadderRung(240, 300)]),
    ]
    renditions = Renditions(config)
    assert renditions.ladder("class-1") == (Rung(360, 500_000), Rung(180, 150_000))
    assert renditions.ladder("lobby") == (Rung(240, 300_000),)
    assert Renditions(Config()).ladder("lobby") == ()


def test_a_made_layers_cost_counts_headers() -> None:
    # 30 frames/s, each at least one packet of 62 bytes of headers, plus one per 1100 bytes.
    assert wire_bitrate(0, 30) == 30 * 62 * 8
    assert 170_000 < wire_bitrate(150_000, 30) < 180_000
