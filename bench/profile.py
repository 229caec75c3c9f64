"""Sampling profile of a running process with py-spy, summarized as top functions.

py-spy (``pip install -e .[bench]``) reads the target's memory from outside; with
``--nonblocking`` it does not pause it. Samples where every thread is idle are not recorded,
so ``active`` (samples / (duration x rate)) approximates the busy fraction of the loop.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def py_spy_path() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


async def record(pid: int, seconds: float, out: Path, rate: int = 200) -> dict[str, Any]:
    """Profile ``pid`` for ``seconds``; returns the summary (or the reason there is none)."""
    tool = py_spy_path()
    if tool is None:
        return {"error": "py-spy is not installed (pip install -e '.[bench]')"}
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        tool, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
        "--format", "raw", "--output", str(out), "--nonblocking",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), seconds + 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"error": "py-spy did not finish in time"}
    raw = _read(out)
    if proc.returncode != 0 or raw is None:
        return {"error": f"py-spy failed: {output.decode(errors='replace')[-500:]}"}
    summary = summarize(raw, seconds * rate)
    summary["raw_file"] = str(out)
    return summary


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match['func']} ({file})"


def _area(frame: str) -> str:
    """A coarse owner for a leaf frame: which library the time is spent in."""
    text = frame.lower()
    for needle, area in (
        ("pylibsrtp", "SRTP (pylibsrtp)"),
        ("aiortc/rtcrtpsender", "aiortc RTP sender"),
        ("aiortc/rtcrtpreceiver", "aiortc RTP receiver"),
        ("aiortc/codecs", "aiortc codecs (encode, decode, packetize)"),
        ("aiortc/rtp.py", "aiortc RTP/RTCP (de)serialize"),
        ("aiortc/rtcdtlstransport", "aiortc DTLS transport (SRTP/RTCP routing)"),
        ("aiortc/rate", "aiortc bitrate estimator"),
        ("aiortc/", "aiortc other"),
        ("aioice", "aioice (ICE/UDP)"),
        ("asyncio", "asyncio event loop / UDP sendto"),
        ("gateway/", "gateway"),
        ("aiohttp", "aiohttp"),
        ("av/", "PyAV"),
    ):
        if needle in text:
            return area
    return "other"


def summarize(raw: str, expected_samples: float) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    total_time: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        stack, count = match[1], int(match[2])
        frames = [f for f in stack.split(";") if f]
        # py-spy's raw format starts with the process/thread; keep Python frames only.
        frames = [f for f in frames if "(" in f]
        if not frames:
            continue
        samples += count
        names = [_short(f) for f in frames]
        self_time[names[-1]] += count
        areas[_area(frames[-1])] += count
        for name in set(names):
            total_time[name] += count

    def top(counter: Counter[str], n: int) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": c, "percent": round(100 * c / max(samples, 1), 1)}
            for name, c in counter.most_common(n)
        ]

    return {
        "samples": samples,
        "active_fraction": round(samples / max(expected_samples, 1), 3),
        "top_self": top(self_time, 20),
        "top_inclusive": top(total_time, 25),
        "by_area_self": top(areas, 15),
    }
