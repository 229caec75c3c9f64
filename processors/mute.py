"""mute: silence audio while ``muted`` is on (switchable live, the stream keeps flowing)."""

from __future__ import annotations

import numpy as np

from processors.base import AudioProcessor, FrameContext, Param, Pcm


class Mute(AudioProcessor):
    """Replace the samples by silence, keeping frames (and timing) flowing to the viewers.

    Parameters:
        muted (bool, default True): False passes audio through unchanged.
    """

    name = "mute"
    schema = (Param("muted", bool, True, doc="silence while true"),)

    def process(self, samples: Pcm, ctx: FrameContext) -> Pcm:
        if not ctx.params["muted"]:
            return samples
        return np.zeros_like(samples)
