"""Benchmark: what moving encoded frames from one process to another costs, per frame.

A broadcast larger than one worker process needs the publisher's worker to hand every encoded
frame to each other worker that has viewers of it (issue 12). The candidates for that local
pipe, each measured here with the same paced stream of real-sized frames (a mix of 100 or more
~1.5 Mbps 30 fps tracks: ~5.5 KB delta frames, a 40 KB keyframe every 2 s per track):

- **inproc** (the baseline, in the same run): sender and receiver in one process, one function
  call per frame: what forwarding costs today, with nothing crossing a process boundary;
- **unix-dgram**: an ``AF_UNIX``/``SOCK_DGRAM`` socket, one datagram per frame (header + frame);
- **shm-ring**: a ``multiprocessing.shared_memory`` ring buffer of frames, and a one-byte
  datagram per burst to wake the reader;
- **udp-rtp**: RTP-sized datagrams (12-byte header + up to 1188 bytes) to a UDP socket on
  127.0.0.1, one per packet: what relaying RTP between workers or nodes would cost, before
  SRTP.

The sender paces frames in 5 ms ticks at ``--rates`` frames/s; the reader runs an asyncio loop
(as a worker would), parses each header and checks the sequence numbers of every track. CPU is
``time.process_time()`` of each side over the stream, per frame, in microseconds; the report
gives medians over ``--repeats`` runs, with modes interleaved so machine noise hits them alike.

    .venv/bin/python -m bench.pipe                  # ~2 min: writes bench/results/pipe.{md,json}
    .venv/bin/python -m bench.pipe --rates 3000 --seconds 3 --repeats 1   # smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from statistics import median
from typing import Any

from .broadcast import run_header
from .stats import machine_cpu_ticks

RESULTS = Path(__file__).parent / "results"
MODES = ("inproc", "unix-dgram", "shm-ring", "udp-rtp")

HEADER = struct.Struct("!IIIB")  # track, sequence number, timestamp, flags
END = 0xFF  # flags of the last message
KEYFRAME = 0x01
RTP = struct.Struct("!BBHII")  # version/flags, marker/payload type, seq, timestamp, ssrc
RTP_PAYLOAD = 1188
TICK_S = 0.005
FPS = 30
DELTA_BYTES = 5500
KEYFRAME_BYTES = 40000
KEYFRAME_EVERY = 60  # frames of one track: every 2 s
RING_BYTES = 32 * 1024 * 1024
RING_DATA = 64  # ring: write index at 0, read index at 8, frames from here
RECORD = struct.Struct("!I")  # a ring record's length; WRAP: continue at RING_DATA
WRAP = 0xFFFFFFFF


@dataclass
class Frames:
    """The stream: frame ``i`` belongs to track ``i % tracks``; payloads from a fixed pool."""

    tracks: int
    delta: bytes = field(default_factory=lambda: os.urandom(DELTA_BYTES))
    key: bytes = field(default_factory=lambda: os.urandom(KEYFRAME_BYTES))

    def frame(self, i: int) -> tuple[int, int, int, int, bytes]:
        track, seq = i % self.tracks, i // self.tracks
        # Keyframes of the tracks are spread out, as independent publishers' are.
        key = (seq + track) % KEYFRAME_EVERY == 0
        return track, seq, seq * 3000, KEYFRAME if key else 0, self.key if key else self.delta


@dataclass
class Tally:
    """What the reader saw."""

    frames: int = 0
    bytes: int = 0
    lost: int = 0
    next_seq: dict[int, int] = field(default_factory=dict)

    def add(self, track: int, seq: int, size: int) -> None:
        expected = self.next_seq.get(track, 0)
        if seq > expected:
            self.lost += seq - expected
        self.next_seq[track] = seq + 1
        self.frames += 1
        self.bytes += size


def paced(rate: int, seconds: float, send: Callable[[int], None], flush: Callable[[], None]) -> int:
    """Calls ``send(i)`` for frames 0.. at ``rate`` per second in TICK_S bursts; returns the
    number sent."""
    total = int(rate * seconds)
    start = time.monotonic()
    sent = 0
    while sent < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            send(sent)
            sent += 1
        flush()
        time.sleep(max(0.0, start + sent / rate + TICK_S - time.monotonic()))
    return sent


# --- the sending side --------------------------------------------------------------------------


def sender(
    mode: str, address: str, rate: int, seconds: float, tracks: int, out: Connection
) -> None:
    frames = Frames(tracks)
    flush: Callable[[], None] = lambda: None  # noqa: E731
    sock: socket.socket
    if mode == "unix-dgram":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        sock.connect(address)

        def send(i: int) -> None:
            track, seq, ts, flags, payload = frames.frame(i)
            sock.sendmsg([HEADER.pack(track, seq, ts, flags), payload])

        def end() -> None:
            sock.send(HEADER.pack(0, 0, 0, END))

    elif mode == "udp-rtp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        host, port = address.rsplit(":", 1)
        sock.connect((host, int(port)))
        packet_seq = [0] * tracks

        def send(i: int) -> None:
            track, _, ts, _, payload = frames.frame(i)
            view = memoryview(payload)
            for offset in range(0, len(payload), RTP_PAYLOAD):
                marker = 0x80 if offset + RTP_PAYLOAD >= len(payload) else 0
                header = RTP.pack(0x80, marker | 96, packet_seq[track] & 0xFFFF, ts, track)
                packet_seq[track] += 1
                sock.sendmsg([header, view[offset : offset + RTP_PAYLOAD]])

        def end() -> None:
            sock.send(RTP.pack(0x80, 0x80 | 127, 0, 0, 0))

    elif mode == "shm-ring":
        ring_name, wake_path = address.split("|")
        ring = SharedMemory(ring_name)
        buf = ring.buf
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.connect(wake_path)
        index = struct.Struct("=Q")
        state = {"write": RING_DATA, "dropped": 0}

        def put(header: bytes, payload: bytes) -> None:
            size = RECORD.size + len(header) + len(payload)
            write = state["write"]
            read = index.unpack_from(buf, 8)[0]
            if write + size > RING_BYTES:  # no room before the end: wrap (if the reader has)
                if read > write or read == RING_DATA:
                    state["dropped"] += 1
                    return
                RECORD.pack_into(buf, write, WRAP)
                write = RING_DATA
            free = (read - write - 1) if read > write else (RING_BYTES - write)
            if size > free:
                state["dropped"] += 1  # the reader is a whole ring behind: drop, never wait
                return
            RECORD.pack_into(buf, write, len(header) + len(payload))
            start = write + RECORD.size
            buf[start : start + len(header)] = header
            buf[start + len(header) : start + len(header) + len(payload)] = payload
            state["write"] = write + size
            index.pack_into(buf, 0, state["write"])  # published last: the record is complete

        def send(i: int) -> None:
            track, seq, ts, flags, payload = frames.frame(i)
            put(HEADER.pack(track, seq, ts, flags), payload)

        def flush() -> None:
            sock.send(b"!")

        def end() -> None:
            put(HEADER.pack(0, 0, 0, END), b"")
            flush()

    else:
        raise ValueError(mode)
    started = time.process_time()
    sent = paced(rate, seconds, send, flush)
    end()
    cpu_s = time.process_time() - started
    dropped = state["dropped"] if mode == "shm-ring" else 0
    out.send({"sent": sent, "cpu_s": cpu_s, "dropped": dropped})
    sock.close()
    if mode == "shm-ring":
        del buf
        ring.close()


# --- the receiving side ------------------------------------------------------------------------


def receiver(mode: str, directory: str, out: Connection) -> None:
    asyncio.run(_receive(mode, directory, out))


async def _receive(mode: str, directory: str, out: Connection) -> None:
    loop = asyncio.get_running_loop()
    tally = Tally()
    done: asyncio.Future[None] = loop.create_future()
    started: list[float] = []
    ring: SharedMemory | None = None

    def first() -> None:
        if not started:
            started.append(time.process_time())

    if mode == "unix-dgram":
        path = os.path.join(directory, "frames.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024 * 1024)
        sock.bind(path)
        sock.setblocking(False)
        address = path

        def readable() -> None:
            first()
            while True:
                try:
                    data = sock.recv(KEYFRAME_BYTES + 64)
                except BlockingIOError:
                    return
                track, seq, _, flags = HEADER.unpack_from(data)
                if flags == END:
                    done.set_result(None)
                    return
                tally.add(track, seq, len(data) - HEADER.size)

    elif mode == "udp-rtp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024 * 1024)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        sizes: dict[int, int] = {}
        frame_seq: dict[int, int] = {}

        def readable() -> None:
            first()
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    return
                _, marker_pt, _, _, track = RTP.unpack_from(data)
                if marker_pt & 0x7F == 127:
                    done.set_result(None)
                    return
                sizes[track] = sizes.get(track, 0) + len(data) - RTP.size
                if marker_pt & 0x80:  # the frame's last packet
                    seq = frame_seq.get(track, 0)
                    frame_seq[track] = seq + 1
                    tally.add(track, seq, sizes.pop(track))

    elif mode == "shm-ring":
        ring = SharedMemory(create=True, size=RING_BYTES)
        buf = ring.buf
        index = struct.Struct("=Q")
        index.pack_into(buf, 0, RING_DATA)
        index.pack_into(buf, 8, RING_DATA)
        path = os.path.join(directory, "wake.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.setblocking(False)
        address = f"{ring.name}|{path}"

        def readable() -> None:
            first()
            try:
                while True:
                    sock.recv(16)
            except BlockingIOError:
                pass
            read = index.unpack_from(buf, 8)[0]
            write = index.unpack_from(buf, 0)[0]
            while read != write:
                (length,) = RECORD.unpack_from(buf, read)
                if length == WRAP:
                    read = RING_DATA
                    continue
                start = read + RECORD.size
                track, seq, _, flags = HEADER.unpack_from(buf, start)
                # A real reader would hand buf[start:start+length] on (one copy, to bytes).
                payload = bytes(buf[start + HEADER.size : start + length])
                read = start + length
                if flags == END:
                    done.set_result(None)
                    break
                tally.add(track, seq, len(payload))
            index.pack_into(buf, 8, read)

    else:
        raise ValueError(mode)
    loop.add_reader(sock.fileno(), readable)
    out.send({"address": address})
    await done
    cpu_s = time.process_time() - started[0]
    loop.remove_reader(sock.fileno())
    sock.close()
    out.send({"frames": tally.frames, "bytes": tally.bytes, "lost": tally.lost, "cpu_s": cpu_s})
    if ring is not None:
        del buf
        ring.close()
        ring.unlink()


def inproc(rate: int, seconds: float, tracks: int) -> dict[str, Any]:
    """Both sides in this process: the receiver's work as a plain call per frame."""
    frames = Frames(tracks)
    tally = Tally()

    def send(i: int) -> None:
        track, seq, ts, flags, payload = frames.frame(i)
        header = HEADER.pack(track, seq, ts, flags)
        got_track, got_seq, _, _ = HEADER.unpack_from(header)
        tally.add(got_track, got_seq, len(payload))

    started = time.process_time()
    sent = paced(rate, seconds, send, lambda: None)
    cpu_s = time.process_time() - started
    return {"sent": sent, "frames": tally.frames, "lost": tally.lost, "cpu_s": cpu_s}


def run_once(mode: str, rate: int, seconds: float, tracks: int) -> dict[str, Any]:
    if mode == "inproc":
        got = inproc(rate, seconds, tracks)
        return {
            "sent": got["sent"],
            "received": got["frames"],
            "lost": got["lost"],
            "dropped": 0,
            "sender_us": got["cpu_s"] * 1e6 / got["sent"],
            "receiver_us": 0.0,
        }
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-pipe-") as directory:
        recv_parent, recv_child = context.Pipe()
        send_parent, send_child = context.Pipe()
        reader = context.Process(target=receiver, args=(mode, directory, recv_child))
        reader.start()
        try:
            if not recv_parent.poll(30):
                raise RuntimeError(f"{mode}: the receiver did not start")
            address = recv_parent.recv()["address"]
            writer = context.Process(
                target=sender, args=(mode, address, rate, seconds, tracks, send_child)
            )
            writer.start()
            if not send_parent.poll(seconds + 60):
                raise RuntimeError(f"{mode}: the sender did not finish")
            sent = send_parent.recv()
            writer.join(10)
            if not recv_parent.poll(30):
                raise RuntimeError(f"{mode}: the receiver never saw the end")
            got = recv_parent.recv()
        finally:
            reader.join(10)
            if reader.is_alive():
                reader.kill()
    return {
        "sent": sent["sent"],
        "received": got["frames"],
        "lost": got["lost"],
        "dropped": sent["dropped"],
        "sender_us": sent["cpu_s"] * 1e6 / sent["sent"],
        "receiver_us": got["cpu_s"] * 1e6 / max(got["frames"], 1),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    sender_us = [r["sender_us"] for r in runs]
    receiver_us = [r["receiver_us"] for r in runs]
    return {
        "sender_us": round(median(sender_us), 2),
        "receiver_us": round(median(receiver_us), 2),
        "total_us": round(median(s + r for s, r in zip(sender_us, receiver_us, strict=True)), 2),
        "spread_total_us": [
            round(min(s + r for s, r in zip(sender_us, receiver_us, strict=True)), 2),
            round(max(s + r for s, r in zip(sender_us, receiver_us, strict=True)), 2),
        ],
        "lost": sum(r["lost"] for r in runs),
        "dropped": sum(r["dropped"] for r in runs),
        "frames": sum(r["received"] for r in runs),
        "machine_busy_cores": median(r["machine_busy_cores"] for r in runs),
    }


def report(results: dict[str, Any]) -> str:
    lines = [
        "# Moving encoded frames between processes (bench/pipe.py)",
        "",
        f"`{results['command']}` on {results['date']}, "
        f"{results['machine']['nproc']} CPUs ({results['machine']['cpu_model']}); medians of {results['repeats']} runs "
        f"of {results['seconds']} s per mode and rate, modes interleaved.",
        "",
        "CPU per frame in microseconds (`time.process_time()` of each side over the stream). "
        "`inproc` is the baseline from the same run: the same frames handed over by a "
        "function call in one process. *extra* is a mode's total minus the baseline's: what "
        "the process boundary costs per frame.",
        "",
        "| frames/s | mode | sender µs | receiver µs | total µs | extra µs | spread | lost | dropped "
        "| machine busy (cores) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for rate, modes in results["rates"].items():
        base = modes["inproc"]["total_us"]
        for mode in MODES:
            m = modes[mode]
            lines.append(
                f"| {rate} | {mode} | {m['sender_us']} | {m['receiver_us']} | {m['total_us']} | "
                f"{round(m['total_us'] - base, 2)} | {m['spread_total_us'][0]}-"
                f"{m['spread_total_us'][1]} | {m['lost']} | {m['dropped']} | "
                f"{m['machine_busy_cores']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="3000,9000", help="frames/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=RESULTS / "pipe.json")
    parser.add_argument("--md", type=Path, default=RESULTS / "pipe.md")
    args = parser.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",")]
    results: dict[str, Any] = {
        **run_header("bench.pipe"),
        "seconds": args.seconds,
        "repeats": args.repeats,
        "frame_bytes": {"delta": DELTA_BYTES, "keyframe": KEYFRAME_BYTES},
        "rates": {},
    }
    for rate in rates:
        tracks = max(1, rate // FPS)
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
        for repeat in range(args.repeats):
            order = MODES if repeat % 2 == 0 else tuple(reversed(MODES))
            for mode in order:
                before = machine_cpu_ticks()
                run = run_once(mode, rate, args.seconds, tracks)
                after = machine_cpu_ticks()
                # The whole machine, this run's processes included: other work shows up here.
                run["machine_busy_cores"] = round(
                    (after[0] - before[0]) / max(after[1] - before[1], 1) * (os.cpu_count() or 1),
                    2,
                )
                runs[mode].append(run)
                print(f"{rate}/s {mode}: {runs[mode][-1]}", flush=True)
        results["rates"][str(rate)] = {mode: summarize(runs[mode]) for mode in MODES}
        results["rates"][str(rate)]["runs"] = runs
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    args.md.write_text(report(results))
    print(report(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
