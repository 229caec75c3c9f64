"""Everything a session creates is released when it ends: peers, tasks, threads, rooms."""

from __future__ import annotations

import asyncio
import gc
import threading

from gateway.config import Config
from tests.conftest import RunningGateway
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import wait_for, whep_watch, whip_publish


def threads() -> list[str]:
    # The loop's default executor keeps a bounded pool of idle workers ("asyncio_N")
    # once used (encoders, DNS); they belong to the process, not to any session.
    return [t.name for t in threading.enumerate() if not t.name.startswith("asyncio_")]


def census() -> tuple[int, int]:
    return len(threads()), len(asyncio.all_tasks())


async def test_fifty_subscribe_unsubscribe_cycles_leave_nothing_behind(
    gateway: RunningGateway,
) -> None:
    publisher = await whip_publish(
        gateway.http, gateway.base, "cycles", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    warmup = await whep_watch(gateway.http, gateway.base, "cycles")
    await wait_for(lambda: len(warmup.received.numbers) > 5)
    await warmup.close(gateway.http, gateway.base)
    await wait_for(lambda: len(gateway.registry.sessions) == 1)
    await asyncio.sleep(0.5)
    threads_before, tasks_before = census()

    for cycle in range(50):
        viewer = await whep_watch(gateway.http, gateway.base, "cycles", read=cycle % 10 == 0)
        (session,) = [s for s in gateway.registry.sessions.values() if s.role == "subscriber"]
        await wait_for(lambda: session.state == "connected", timeout=20)  # noqa: B023
        if cycle % 10 == 0:
            await wait_for(lambda: len(viewer.received.numbers) > 0)  # noqa: B023
        await viewer.close(gateway.http, gateway.base)
        await wait_for(lambda: len(gateway.registry.sessions) == 1)

    room = gateway.registry.rooms["cycles"]
    assert not room.subscribers
    for track in room.publishers:
        assert track.forwarder.subscribers == []
    stats = await gateway.stats()
    (video,) = [t for t in stats["rooms"][0]["tracks"] if t["kind"] == "video"]
    assert video["subscribers"] == 0 and video["frames_forwarded"] > 0

    # aiortc threads and tasks wind down asynchronously after close.
    async def settled() -> bool:
        gc.collect()
        return census() <= (threads_before, tasks_before)

    for _ in range(100):
        if await settled():
            break
        await asyncio.sleep(0.1)
    assert census()[0] <= threads_before, f"threads leaked: {threads()}"
    assert census()[1] <= tasks_before, f"tasks leaked: {census()[1]} > {tasks_before}"

    await publisher.close(gateway.http, gateway.base)
    await wait_for(lambda: not gateway.registry.sessions and not gateway.registry.rooms)


async def test_publisher_leaving_ends_whep_viewers_and_releases_the_room(
    gateway: RunningGateway, gateway_config: Config
) -> None:
    # Viewers end with their publisher here (test_failover.py keeps them for its
    # return); the grace is read when the room is created.
    gateway_config.rooms.publisher_grace_s = 0
    threads_before = threads()
    publisher = await whip_publish(
        gateway.http, gateway.base, "ending", [NumberedVideoTrack(320, 240), ToneTrack()]
    )
    viewers = [await whep_watch(gateway.http, gateway.base, "ending") for _ in range(3)]
    await wait_for(lambda: all(len(v.received.numbers) > 10 for v in viewers))
    await publisher.close(gateway.http, gateway.base)
    # Every viewer's session ends server-side and its peer sees the connection close.
    await wait_for(lambda: not gateway.registry.sessions and not gateway.registry.rooms)
    await wait_for(
        lambda: all(v.pc.connectionState in ("closed", "failed") for v in viewers), timeout=30
    )
    for viewer in viewers:
        await viewer.close()
    for _ in range(100):
        if threads() == threads_before:
            break
        await asyncio.sleep(0.1)
    assert threads() == threads_before
