"""server.workers: one front port, two worker processes (cluster nodes over a private
redis-server): requests go to the room's worker, viewers past a worker's cap to another one
that relays, and the WebSocket follows its room."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.gateway_process import GatewayProcess, start_gateway_process
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import wait_for, whep_watch, whip_publish
from tests.support.signaling import WsClient, ws_publish, ws_subscribe

pytestmark = pytest.mark.timeout(120)

CONFIG = """
server:
  drain_timeout_s: 0
  workers: 2
  max_viewers: 1
ice:
  addresses: [127.0.0.1]
log:
  level: info
"""


@pytest.fixture
async def front(tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    gateway = await start_gateway_process(CONFIG, tmp_path, timeout_s=60)
    try:
        yield gateway
    finally:
        assert await gateway.stop() == 0, gateway.log_text()[-3000:]


async def get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_viewers_past_a_workers_cap_are_served_by_another(
    front: GatewayProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        ready = await get(http, f"{front.base}/readyz")
        assert ready["workers_ready"] == [0, 1], ready
        publisher = await whip_publish(
            http, front.base, "wide", [NumberedVideoTrack(320, 240), ToneTrack()]
        )
        viewers = []
        try:
            # The first viewer fits on the room's worker (cap 1); the second is sent on to
            # the other worker, which relays the room: both through the front's one port.
            for _ in range(2):
                viewers.append(await whep_watch(http, front.base, "wide"))
            await wait_for(lambda: all(len(v.received.numbers) > 30 for v in viewers), timeout=30)
            for viewer in viewers:  # the publisher's frames, in order, at both workers
                assert viewer.received.numbers == sorted(viewer.received.numbers)
            # Loads as the workers' heartbeats (every 2 s) tell them: both numbers, each from
            # its own worker's last heartbeat (one CI run saw the relay's before the viewer's).
            for _ in range(125):
                described = await get(http, f"{front.base}/api/cluster")
                loads = {n["id"]: n["load"] for n in described["nodes"]}
                if sorted(load["relays_out"] for load in loads.values()) == [0, 1] and sorted(
                    load["viewers"] for load in loads.values()
                ) == [1, 1]:
                    break
                await asyncio.sleep(0.2)
            assert len(loads) == 2, described
            homes = [n for n in described["nodes"] if n["rooms"] == ["wide"]]
            assert len(homes) == 1, described
            # The home serves the first viewer and feeds the other worker, which serves the
            # second: over the frame pipe (no WebRTC viewer of the home for it).
            assert sorted(load["viewers"] for load in loads.values()) == [1, 1], loads
            (home,) = homes
            assert loads[home["id"]]["relays_out"] == 1, loads
            (other,) = [n for n in described["nodes"] if n["id"] != home["id"]]
            stats = await get(http, f"{other['url']}/api/stats")
            assert stats["cluster"]["relays"]["piped"] == 1, stats["cluster"]
            rooms = (await get(http, f"{front.base}/api/rooms"))["rooms"]
            assert [r["room"] for r in rooms] == ["wide"]  # once, as its home has it
            # The front's stats are both workers' summed: the room at its home and as the
            # other's copy, each with its viewer; every worker's sessions counted.
            total = await get(http, f"{front.base}/api/stats")
            assert total["workers"] == {"answered": [0, 1], "missing": []}, total["workers"]
            by_node = {r["node"]: r for r in total["rooms"]}
            assert set(by_node) == set(loads), total["rooms"]
            assert by_node[home["id"]]["copy"] is False and by_node[other["id"]]["copy"] is True
            assert [r["subscribers"] for r in total["rooms"]] == [1, 1]
            each = [await get(http, f"{n['url']}/api/stats") for n in described["nodes"]]
            assert total["sessions"] == sum(s["sessions"] for s in each) >= 4
            assert [w["worker"] for w in total["cluster"]["workers"]] == [0, 1]
        finally:
            for viewer in viewers:
                # DELETE through the front, to the worker holding the session.
                await viewer.close(http, front.base)
            await publisher.close(http, front.base)


async def test_the_websocket_follows_its_room(front: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http:
        publishing = await WsClient.connect(http, front.base)
        first, _session = await ws_publish(
            publishing, "talk", [NumberedVideoTrack(320, 240), ToneTrack()]
        )
        second_socket = await WsClient.connect(http, front.base)
        second, _other = await ws_publish(
            second_socket, "chat", [NumberedVideoTrack(320, 240), ToneTrack()]
        )
        watching = await WsClient.connect(http, front.base)
        try:
            await watching.send({"type": "watch", "room": "talk"})
            state = await watching.next("room-state")
            assert state["publisher"] is not None, state
            pc, _sub, received, tasks = await ws_subscribe(watching, "talk")
            await wait_for(lambda: len(received.numbers) > 30, timeout=30)
            for task in tasks:
                task.cancel()
            await pc.close()
            described = await get(http, f"{front.base}/api/cluster")
            homed = sorted(room for n in described["nodes"] for room in n["rooms"])
            assert homed == ["chat", "talk"]
            # Placed by load: the two rooms went to the two workers.
            assert all(len(n["rooms"]) == 1 for n in described["nodes"]), described
        finally:
            await first.close()
            await second.close()
            for socket in (publishing, second_socket, watching):
                await socket.close()


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the front's workers and its redis-server)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def command_line(pid: int) -> str:
    return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()


async def test_a_worker_that_dies_is_started_again(front: GatewayProcess) -> None:
    workers = [p for p in children(front.process.pid) if "-m gateway" in command_line(p)]
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    async with aiohttp.ClientSession() as http:
        for _ in range(150):
            await asyncio.sleep(0.2)
            again = [p for p in children(front.process.pid) if "-m gateway" in command_line(p)]
            if len(again) == 2 and workers[0] not in again:
                async with http.get(f"{front.base}/readyz") as response:
                    body = await response.json()
                if body.get("workers_ready") == [0, 1]:
                    break
            elif len(again) == 1:
                # Meanwhile the front sends nothing to the dead worker: the other serves.
                async with http.get(f"{front.base}/readyz") as response:
                    assert (await response.json())["workers_ready"] in ([0], [1], [0, 1])
        else:
            raise AssertionError(f"the worker was not started again: {front.log_text()[-2000:]}")
        publisher = await whip_publish(http, front.base, "again", [NumberedVideoTrack(320, 240)])
        await publisher.close(http, front.base)
    assert "worker 0 exited" in front.log_text() or "worker 1 exited" in front.log_text()


async def test_killing_a_worker_ends_only_its_sessions(front: GatewayProcess) -> None:
    """The room's home worker keeps its publisher and viewer; the other worker, which serves
    the second viewer through a relay, is killed: only that viewer's stream stops."""
    async with aiohttp.ClientSession() as http:
        publisher = await whip_publish(
            http, front.base, "split", [NumberedVideoTrack(320, 240), ToneTrack()]
        )
        viewers = [await whep_watch(http, front.base, "split") for _ in range(2)]
        try:
            await wait_for(lambda: all(len(v.received.numbers) > 15 for v in viewers), timeout=30)
            described = await get(http, f"{front.base}/api/cluster")
            home = next(n["id"] for n in described["nodes"] if n["rooms"] == ["split"])
            other = next(n["id"] for n in described["nodes"] if n["id"] != home)
            index = int(other.rsplit("-w", 1)[1])
            (pid,) = [
                p for p in children(front.process.pid) if f"worker-{index}.yaml" in command_line(p)
            ]
            os.kill(pid, signal.SIGKILL)
            seen = [len(v.received.numbers) for v in viewers]
            await asyncio.sleep(3)
            grew = [
                len(v.received.numbers) - before for v, before in zip(viewers, seen, strict=True)
            ]
            # The home's viewer goes on at ~30 fps; the killed worker's gets nothing more.
            assert grew[0] > 45 and grew[1] <= 3, grew
        finally:
            for viewer in viewers:
                await viewer.close()
            await publisher.close(http, front.base)
