"""Built-in audio processors on known samples: gain scales and clips, mute zeroes."""

from __future__ import annotations

import numpy as np
import pytest

from processors.base import FrameContext, ParamError, Processor
from processors.gain import Gain
from processors.mute import Mute


def run(processor: Processor, samples: np.ndarray) -> np.ndarray:
    samples.flags.writeable = False
    out = processor.process(samples, FrameContext(params=processor.params, sample_rate=48000))  # type: ignore[attr-defined]
    assert isinstance(out, np.ndarray)
    return out


def test_gain_scales_int16_and_clips() -> None:
    samples = np.array([[1000, -1000, 20000], [0, 16384, -30000]], np.int16)
    out = run(Gain(gain_db=6.0206), samples)  # x2
    assert out.dtype == np.int16
    assert out.tolist() == [[2000, -2000, 32767], [0, 32767, -32768]]


def test_gain_attenuates_float() -> None:
    samples = np.array([[0.5, -0.8], [1.0, 0.0]], np.float32)
    out = run(Gain(gain_db=-6.0206), samples)
    assert out.dtype == np.float32
    assert np.allclose(out, [[0.25, -0.4], [0.5, 0.0]], atol=1e-4)


def test_gain_clips_float_at_full_scale() -> None:
    out = run(Gain(gain_db=20.0), np.array([[0.5, -0.5]], np.float32))
    assert out.tolist() == [[1.0, -1.0]]


def test_gain_refuses_out_of_range() -> None:
    with pytest.raises(ParamError, match="gain_db"):
        Gain(gain_db=100.0)


def test_mute_zeroes_and_unmute_passes() -> None:
    samples = np.array([[5, -7], [9, 11]], np.int16)
    processor = Mute()
    assert run(processor, samples).tolist() == [[0, 0], [0, 0]]
    processor.update(muted=False)
    assert run(processor, samples).tolist() == [[5, -7], [9, 11]]
