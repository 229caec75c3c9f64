"""gain: make audio louder or quieter by a number of decibels, clipping at full scale."""

from __future__ import annotations

import numpy as np

from processors.base import AudioProcessor, FrameContext, Param, Pcm


class Gain(AudioProcessor):
    """Multiply samples by 10^(gain_db/20); int16 saturates at -32768..32767, float at -1..1.

    Parameters:
        gain_db (float, -60..30, default 6.0): positive is louder.
    """

    name = "gain"
    schema = (Param("gain_db", float, 6.0, -60.0, 30.0, doc="decibels, positive is louder"),)

    def process(self, samples: Pcm, ctx: FrameContext) -> Pcm:
        factor = np.float32(10.0 ** (float(ctx.params["gain_db"]) / 20.0))
        scaled = samples.astype(np.float32) * factor
        if samples.dtype == np.int16:
            # Clipping (rather than wrapping around) is what a loud sound should do.
            out: Pcm = np.clip(np.rint(scaled), -32768, 32767).astype(np.int16)
        else:
            out = np.clip(scaled, -1.0, 1.0).astype(samples.dtype)
        return out
