"""Benchmark: what checking access tokens costs, per request and per WebSocket message.

Every figure is measured beside the same work with auth off, in the same run:

- **verify**: ``AccessPolicy.authenticate`` + ``check`` in a tight loop, in this process
  (a policy with auth on and an HS256 token, beside one with auth off);
- **http-get**: ``GET /api/rooms`` on two gateway processes, one with auth on (with a
  ``Bearer`` token) and one with auth off (no header);
- **whip**: ``POST /whip/{room}`` + ``DELETE`` of the session (the SDP work dominates);
- **ws-ping**, **ws-watch**: messages on one open socket (authenticated once, or auth off):
  ``ping``/``pong``, and ``watch`` + ``unwatch`` (``watch`` passes the access policy);
- **ws-open**: open a socket, ``auth`` with the token (auth off: the same message, which
  then verifies nothing), close.

Gateway CPU is the gateway process's threads' CPU time (/proc/PID/task/*/schedstat) over
each batch; wall is the client's time per operation, one at a time. Batches alternate between the two gateways,
``--repeats`` times; the report gives medians and the spread.

    .venv/bin/python -m bench.auth              # ~1 min: writes bench/results/auth.{md,json}
    .venv/bin/python -m bench.auth --repeats 3 --requests 200
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import aiohttp
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from gateway.auth.minting import mint
from gateway.config import AuthKey, AuthSettings
from gateway.rooms.policy import AccessPolicy, Request

from .broadcast import free_port, run_header, wait_quiet
from .control import PYTHON, ROOT, Process
from .media import OUT_DIR
from .peers import loopback_only, new_peer, prefer
from .stats import cpu_sample, machine_cpu_ticks

logger = logging.getLogger("bench")

RESULTS = Path(__file__).parent / "results"
KEY = "bench"
SECRET = "a benchmark secret, long enough for HS256 keys"
GRANT = {"roomJoin": True, "room": "*", "roomList": True}
ROOM = "bench"
MODES = ("off", "on")


@dataclass
class Gateway:
    mode: str
    process: Process
    base: str

    @property
    def pid(self) -> int:
        return self.process.pid


def gateway_yaml(mode: str, run_dir: Path) -> str:
    """One gateway's config: loopback ICE, limits out of the way (they are not what is
    measured), and with auth on a single HS256 key."""
    text = (
        "server:\n  drain_timeout_s: 0\nice:\n  addresses: [127.0.0.1]\nlog:\n  level: warning\n"
        f"recording:\n  directory: {run_dir / 'recordings'}\n"
        "limits:\n"
        "  sessions_per_ip_per_s: 100000.0\n  sessions_per_ip_burst: 100000\n"
        "  sessions_per_identity_per_s: 100000.0\n  sessions_per_identity_burst: 100000\n"
        "  ws_messages_per_s: 100000.0\n  ws_messages_burst: 100000\n"
        "  max_sockets_per_ip: 10000\n"
    )
    if mode == "on":
        text += f'auth:\n  enabled: true\n  keys:\n    - key: {KEY}\n      secret: "{SECRET}"\n'
    return text


async def start_gateway(mode: str, run_dir: Path, http: aiohttp.ClientSession) -> Gateway:
    config = run_dir / f"gateway-{mode}.yaml"
    config.write_text(gateway_yaml(mode, run_dir))
    port = free_port()
    process = await Process.start(
        f"gateway-{mode}",
        [PYTHON, "-m", "gateway", "--config", str(config), "--port", str(port)],
        run_dir / "logs",
    )
    gateway = Gateway(mode, process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.proc.returncode is not None:
            raise RuntimeError(f"gateway-{mode} exited:\n{process.tail()}")
        try:
            async with http.get(f"{gateway.base}/healthz") as response:
                if response.status == 200:
                    return gateway
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"gateway-{mode} did not answer /healthz")


# -- operations ------------------------------------------------------------------------------


def bearer(mode: str, token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if mode == "on" else {}


async def make_offer() -> str:
    """A real aiortc offer (VP8 + Opus, sendonly), made once and posted again and again:
    its sessions are deleted before they could connect."""
    pc = new_peer()
    for track in (VideoStreamTrack(), AudioStreamTrack()):
        transceiver = pc.addTransceiver(track, direction="sendonly")
        prefer(transceiver, track.kind, "VP8" if track.kind == "video" else "opus")
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


Op = Callable[[], Awaitable[None]]


class Phase:
    """One kind of operation, set up per batch on one gateway."""

    name = ""
    unit = "op"

    def __init__(self, http: aiohttp.ClientSession, token: str, offer: str) -> None:
        self.http, self.token, self.offer = http, token, offer

    async def open(self, gateway: Gateway) -> Op:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class HttpGet(Phase):
    name, unit = "http-get", "request"

    async def open(self, gateway: Gateway) -> Op:
        url, headers = f"{gateway.base}/api/rooms", bearer(gateway.mode, self.token)

        async def op() -> None:
            async with self.http.get(url, headers=headers) as response:
                assert response.status == 200, await response.text()
                await response.read()

        return op


class Whip(Phase):
    name, unit = "whip", "POST + DELETE"

    async def open(self, gateway: Gateway) -> Op:
        headers = bearer(gateway.mode, self.token)

        async def op() -> None:
            async with self.http.post(
                f"{gateway.base}/whip/{ROOM}",
                data=self.offer,
                headers={"Content-Type": "application/sdp", **headers},
            ) as response:
                assert response.status == 201, await response.text()
                location = response.headers["Location"]
            async with self.http.delete(gateway.base + location, headers=headers) as response:
                assert response.status == 200, await response.text()

        return op


class Socket(Phase):
    """A socket opened (and authenticated) before the batch; messages one at a time."""

    ws: aiohttp.ClientWebSocketResponse | None = None

    async def connect(self, gateway: Gateway) -> aiohttp.ClientWebSocketResponse:
        ws = await self.http.ws_connect(gateway.base.replace("http", "ws", 1) + "/ws")
        assert (await ws.receive_json())["type"] == "hello"
        # With auth off the same `auth` message is sent: it then verifies nothing.
        await ws.send_json({"type": "auth", "token": self.token})
        reply = await ws.receive_json()
        assert reply["type"] == "authenticated", reply
        return ws

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
            self.ws = None


class WsPing(Socket):
    name, unit = "ws-ping", "ping + pong"

    async def open(self, gateway: Gateway) -> Op:
        ws = self.ws = await self.connect(gateway)

        async def op() -> None:
            await ws.send_str('{"type": "ping", "id": 1}')
            assert (await ws.receive_json())["type"] == "pong"

        return op


class WsWatch(Socket):
    name, unit = "ws-watch", "watch + unwatch"

    async def open(self, gateway: Gateway) -> Op:
        ws = self.ws = await self.connect(gateway)

        async def op() -> None:
            await ws.send_str(f'{{"type": "watch", "room": "{ROOM}"}}')
            reply = await ws.receive_json()
            assert reply["type"] == "room-state", reply
            await ws.send_str(f'{{"type": "unwatch", "room": "{ROOM}"}}')  # no reply

        return op


class WsOpen(Socket):
    name, unit = "ws-open", "open + auth + close"

    async def open(self, gateway: Gateway) -> Op:
        async def op() -> None:
            ws = await self.connect(gateway)
            await ws.close()

        return op


PHASES: list[type[Phase]] = [HttpGet, Whip, WsPing, WsWatch, WsOpen]


def schedstat_ns(pid: int) -> int:
    """CPU time of a process's living threads in ns (/proc/PID/task/*/schedstat): finer
    than /proc/PID/stat's 10 ms ticks, but blind to threads that exit meanwhile."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass  # the thread ended between listing and reading
    return total


async def measure(gateway: Gateway, phase: Phase, count: int) -> dict[str, float]:
    op = await phase.open(gateway)
    await op()  # warm: first-use costs (imports, caches) are not per-operation costs
    ticks0 = machine_cpu_ticks()
    cpu0 = cpu_sample(gateway.pid, time.monotonic())
    sched0 = schedstat_ns(gateway.pid)
    started, client0 = time.perf_counter(), time.process_time()
    for _ in range(count):
        await op()
    wall, client = time.perf_counter() - started, time.process_time() - client0
    sched1 = schedstat_ns(gateway.pid)
    cpu1 = cpu_sample(gateway.pid, time.monotonic())
    ticks1 = machine_cpu_ticks()
    await phase.close()
    busy = (ticks1[0] - ticks0[0]) / max(ticks1[1] - ticks0[1], 1) * (os.cpu_count() or 1)
    gateway_ms = (sched1 - sched0) / 1e6
    return {
        "gateway_cpu_ms_per_op": gateway_ms / count,
        # The same from /proc/PID/stat (every thread, exited ones too; 10 ms ticks).
        "gateway_stat_cpu_ms_per_op": (cpu1.cpu_s - cpu0.cpu_s) * 1000 / count,
        "wall_ms_per_op": wall * 1000 / count,
        "client_cpu_ms_per_op": client * 1000 / count,
        # Whatever else ran on the machine meanwhile, in cores (busy - gateway - client).
        "other_cores": max(0.0, busy - (gateway_ms / 1000 + client) / max(wall, 1e-9)),
    }


# -- verification alone ----------------------------------------------------------------------


async def verify_loop(count: int, repeats: int, token: str) -> dict[str, Any]:
    """authenticate + check of a token in a tight loop, beside the same with auth off."""
    policies = {
        "off": AccessPolicy(AuthSettings()),
        "on": AccessPolicy(AuthSettings(enabled=True, keys=[AuthKey(KEY, SECRET)])),
    }
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for repeat in range(repeats):
        for mode in MODES if repeat % 2 == 0 else MODES[::-1]:
            policy = policies[mode]
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(count):
                principal = await policy.authenticate(token)
                policy.check(Request("list", None, "http", principal))
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            runs[mode].append(
                {"cpu_us_per_op": cpu * 1e6 / count, "wall_us_per_op": wall * 1e6 / count}
            )
    return {"count": count, "runs": runs, "summary": summarize(runs, "cpu_us_per_op")}


def summarize(runs: dict[str, list[dict[str, float]]], key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode in MODES:
        values = [r[key] for r in runs[mode]]
        out[mode] = {"median": median(values), "min": min(values), "max": max(values)}
        wall_key = key.replace("cpu", "wall").replace("gateway_", "")
        out[mode]["wall_median"] = median(r[wall_key] for r in runs[mode])
    out["added"] = out["on"]["median"] - out["off"]["median"]
    out["added_wall"] = out["on"]["wall_median"] - out["off"]["wall_median"]
    return out


# -- report ----------------------------------------------------------------------------------


def markdown(results: dict[str, Any]) -> str:
    m, v, g = results["machine"], results["versions"], results["git"]
    lines = [
        "# Access-token benchmark",
        "",
        "Generated by `bench/auth.py` (see bench/README.md, section Access tokens).",
        "",
        f"- Command: `{results['command']}`",
        f"- Date: {results['date']}, took {results['duration_s']} s",
        f"- Code measured: git {g.get('head')}, gateway/ sha256 {g.get('gateway_sha256')}, "
        f"uncommitted in gateway/: {len(g.get('uncommitted', []))} files",
        f"- Machine: {m['nproc']} cores ({m['cpu_model']}), {m['memory_gb']} GiB, kernel "
        f"{m['kernel']}, load average at start "
        + ", ".join(f"{x:.2f}" for x in m["loadavg_at_start"])
        + f"; other work before the run: {m['other_load_before_cores']} cores. Shared: noisy.",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- Settings: {results['settings']}",
        "",
        "Auth **on**: HS256 token (`iss` names the key, a `video` grant with roomJoin on `*` "
        "and roomList), checked by the gateway's AccessPolicy; **off**: `auth.enabled: false`, "
        "the same requests without a token. Gateway CPU = CPU time of the gateway process's "
        "threads over a batch (/proc/PID/task/*/schedstat, ns) / operations; the 10 ms-tick "
        "/proc/PID/stat figure, which also counts threads that exited, is in the JSON "
        "(`gateway_stat_cpu_ms_per_op`). Wall = the client's time per "
        "operation, one at a time on one connection. Medians over the repeats, "
        "(min-max) beside.",
        "",
        "## Token verification alone (in-process)",
        "",
        "| | auth off | auth on | added by the token |",
        "|---|---:|---:|---:|",
    ]
    s = results["verify"]["summary"]
    lines.append(
        "| `authenticate` + `check`, CPU µs per call | "
        f"{s['off']['median']:.2f} ({s['off']['min']:.2f}-{s['off']['max']:.2f}) | "
        f"{s['on']['median']:.1f} ({s['on']['min']:.1f}-{s['on']['max']:.1f}) | "
        f"{s['added']:.1f} |"
    )
    lines.append(
        f"| wall µs per call | {s['off']['wall_median']:.2f} | {s['on']['wall_median']:.1f} | "
        f"{s['added_wall']:.1f} |"
    )
    lines += [
        "",
        "## Through the gateway",
        "",
        "| operation | n per batch | gateway CPU-ms/op: off | on | added | wall ms/op: off | on "
        "| added | other work (cores, max) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for phase in results["phases"]:
        s = phase["summary"]
        other = max(r["other_cores"] for mode in MODES for r in phase["runs"][mode])
        lines.append(
            f"| {phase['name']} ({phase['unit']}) | {phase['count']} | "
            f"{s['off']['median']:.3f} ({s['off']['min']:.3f}-{s['off']['max']:.3f}) | "
            f"{s['on']['median']:.3f} ({s['on']['min']:.3f}-{s['on']['max']:.3f}) | "
            f"{s['added']:+.3f} | {s['off']['wall_median']:.3f} | {s['on']['wall_median']:.3f} "
            f"| {s['added_wall']:+.3f} | {other:.2f} |"
        )
    lines += ["", "## Notes", ""]
    lines += [f"- {note}" for note in results["notes"]]
    return "\n".join(lines) + "\n"


def notes(results: dict[str, Any]) -> list[str]:
    verify = results["verify"]["summary"]
    by_name = {p["name"]: p["summary"] for p in results["phases"]}
    out = [
        f"Verifying a token (PyJWT HS256 decode, grant parsing, the policy check) costs "
        f"{verify['added']:.0f} µs of CPU per call more than the open policy "
        f"({verify['off']['median']:.2f} µs): a core verifies about "
        f"{1e6 / max(verify['on']['median'], 1e-9):,.0f} tokens per second.",
    ]
    if "http-get" in by_name:
        s = by_name["http-get"]
        out.append(
            f"An authenticated GET /api/rooms costs {s['on']['median']:.3f} gateway CPU-ms "
            f"against {s['off']['median']:.3f} without auth ({s['added']:+.3f} ms, "
            f"{100 * s['added'] / max(s['off']['median'], 1e-9):+.0f}%). Verifying the "
            f"token accounts for {verify['added'] / 1000:.3f} ms of that (the in-process "
            "figure above); the rest, not broken down here, comes with it (the header to "
            "read, colder caches than in a tight loop)."
        )
    if "whip" in by_name:
        s = by_name["whip"]
        out.append(
            f"WHIP POST + DELETE: {s['on']['median']:.2f} vs {s['off']['median']:.2f} "
            f"gateway CPU-ms ({s['added']:+.2f}): a new peer connection (SDP, ICE, DTLS "
            "certificate) dwarfs the token, checked twice (POST and DELETE)."
        )
    for name in ("ws-ping", "ws-watch"):
        if name in by_name:
            s = by_name[name]
            out.append(
                f"{name}: {s['on']['median']:.3f} vs {s['off']['median']:.3f} gateway "
                f"CPU-ms per exchange ({s['added']:+.3f}). A socket's token is verified once, "
                "by its `auth` message; later messages only pass the policy's check of the "
                "principal it holds (`watch` does, `ping` does not)."
            )
    if "ws-open" in by_name:
        s = by_name["ws-open"]
        out.append(
            f"Opening a socket and authenticating it: {s['on']['median']:.3f} vs "
            f"{s['off']['median']:.3f} gateway CPU-ms ({s['added']:+.3f}): the one token "
            f"verification a socket costs ({verify['added'] / 1000:.3f} ms in-process) and "
            "what comes with it."
        )
    out.append(
        "Differences smaller than the spread of a row (min-max) are noise: the machine has "
        "2 shared cores, and other work ran beside the run (last column)."
    )
    return out


# -- main ------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> int:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = OUT_DIR / f"auth-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        **run_header("bench.auth"),
        "settings": {
            "repeats": args.repeats,
            "verify": args.verify,
            "requests": args.requests,
            "whip": args.whip,
            "messages": args.messages,
            "sockets": args.sockets,
        },
        "run_dir": str(run_dir.relative_to(ROOT)),
    }
    results["machine"]["other_load_before_cores"] = await wait_quiet(args.wait_quiet)
    token = mint(KEY, SECRET, "bench", GRANT, ttl_s=3600)
    logger.info("verify loop")
    results["verify"] = await verify_loop(args.verify, args.repeats, token)
    loopback_only()
    offer = await make_offer()
    counts = {
        "http-get": args.requests,
        "whip": args.whip,
        "ws-ping": args.messages,
        "ws-watch": args.messages,
        "ws-open": args.sockets,
    }
    gateways: list[Gateway] = []
    try:
        async with aiohttp.ClientSession() as http:
            for mode in MODES:
                gateways.append(await start_gateway(mode, run_dir, http))
            results["phases"] = []
            for phase_type in PHASES:
                phase = phase_type(http, token, offer)
                count = counts[phase.name]
                logger.info("%s: %d per batch, %d repeats", phase.name, count, args.repeats)
                runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
                for repeat in range(args.repeats):
                    # Alternate which goes first, so drift on the machine hits both alike.
                    for gateway in gateways if repeat % 2 == 0 else gateways[::-1]:
                        runs[gateway.mode].append(await measure(gateway, phase, count))
                results["phases"].append(
                    {
                        "name": phase.name,
                        "unit": phase.unit,
                        "count": count,
                        "runs": runs,
                        "summary": summarize(runs, "gateway_cpu_ms_per_op"),
                    }
                )
    finally:
        for gateway in gateways:
            await gateway.process.stop()
    results["duration_s"] = round(time.monotonic() - started, 1)
    results["notes"] = notes(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out_json = Path(args.json) if args.json else RESULTS / "auth.json"
    out_md = Path(args.md) if args.md else RESULTS / "auth.md"
    out_json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    out_md.write_text(markdown(results))
    logger.info("wrote %s and %s (%.0f s)", out_md, out_json, results["duration_s"])
    return 0


def render(path: str, args: argparse.Namespace) -> int:
    """Rewrite the Markdown (and notes) of a results file without measuring again."""
    results = json.loads(Path(path).read_text())
    results["notes"] = notes(results)
    Path(path).write_text(json.dumps(results, indent=2, default=str) + "\n")
    out_md = Path(args.md) if args.md else RESULTS / "auth.md"
    out_md.write_text(markdown(results))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.auth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=5, help="batches per mode (5)")
    parser.add_argument("--verify", type=int, default=10000, help="calls per verify batch")
    parser.add_argument("--requests", type=int, default=3000, help="GETs per batch (3000)")
    parser.add_argument("--whip", type=int, default=60, help="POST+DELETE per batch (60)")
    parser.add_argument("--messages", type=int, default=3000, help="WS exchanges per batch")
    parser.add_argument("--sockets", type=int, default=300, help="sockets per batch (300)")
    parser.add_argument("--wait-quiet", type=float, default=20.0, help="seconds, at most")
    parser.add_argument("--json", help="output path (default bench/results/auth.json)")
    parser.add_argument("--md", help="output path (default bench/results/auth.md)")
    parser.add_argument("--render", metavar="JSON", help="only redo the Markdown of a run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.render:
        return render(args.render, args)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
