"""Probe: padding at a rate on the wire for a while, then nothing."""

from __future__ import annotations

import asyncio

from gateway.media.probe import Probe
from gateway.media.subscriber import MAX_PADDING, PADDING_OVERHEAD


class Padded:
    """Stands in for a Subscriber: counts the padding asked of it."""

    stopped = False

    def __init__(self) -> None:
        self.asked: list[int] = []

    def pad(self, size: int) -> int:
        self.asked.append(size)
        return size


async def test_pads_at_the_rate_for_its_duration_then_stops() -> None:
    padded = Padded()
    probe = Probe(padded, 400_000, duration_s=0.5)  # type: ignore[arg-type]
    await asyncio.sleep(0.7)
    assert not probe.running
    packets = sum(size // MAX_PADDING for size in padded.asked)
    wire = probe.bytes_sent + packets * PADDING_OVERHEAD
    # 400 kbit/s for 0.5 s is 25 kB on the wire; the last part owed stays unsent.
    assert 20_000 <= wire <= 25_000, (wire, padded.asked)
    assert all(size % MAX_PADDING == 0 for size in padded.asked)  # full packets only


async def test_close_stops_it_at_once() -> None:
    padded = Padded()
    probe = Probe(padded, 400_000, duration_s=5.0)  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    probe.close()
    sent = len(padded.asked)
    await asyncio.sleep(0.1)
    assert len(padded.asked) == sent and not probe.running
