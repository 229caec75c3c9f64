"""Liveness: lost once the count stops moving for the timeout, never while it moves."""

from __future__ import annotations

import asyncio

from gateway.media.liveness import Liveness
from tests.support.peers import wait_for


async def test_a_moving_count_is_alive_and_a_still_one_is_lost() -> None:
    count = [0]
    lost: list[float] = []
    liveness = Liveness(0.4, lambda: count[0], lost.append)
    liveness.start()
    for _ in range(12):  # 1.2 s of traffic: three timeouts
        count[0] += 1
        await asyncio.sleep(0.1)
    assert not lost and not liveness.lost
    await wait_for(lambda: bool(lost), timeout=5)
    assert lost[0] >= 0.4 and liveness.lost
    await asyncio.sleep(0.3)
    assert len(lost) == 1  # told once, then it stops polling


async def test_stopped_it_never_calls() -> None:
    lost: list[float] = []
    liveness = Liveness(0.2, lambda: 0, lost.append)
    liveness.start()
    liveness.stop()
    await asyncio.sleep(0.5)
    assert not lost
