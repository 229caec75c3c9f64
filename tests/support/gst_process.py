"""Runs tests/support/gst_client.py (GStreamer webrtcbin) under the system python."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

CLIENT = Path(__file__).parent / "gst_client.py"
# Debian's PyGObject and GStreamer bindings are not in the project's virtualenv.
SYSTEM_PYTHON = "/usr/bin/python3"


class GstClient:
    """One gst_client.py subprocess; the test owns it and ``result()`` always reaps it.

    A publisher runs until ``result()`` closes its stdin (or ``seconds`` pass); a viewer
    until it has decoded ``frames`` video frames and as many audio buffers (or ``seconds``).
    """

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(
        cls,
        mode: str,
        url: str,
        codec: str,
        seconds: float,
        *,
        setup: str = "actpass",
        trickle: bool = False,
        frames: int | None = None,
    ) -> GstClient:
        args = [mode, url, "--codec", codec, "--seconds", str(seconds), "--setup", setup]
        if trickle:
            args.append("--trickle")
        if frames is not None:
            args += ["--frames", str(frames)]
        process = await asyncio.create_subprocess_exec(
            SYSTEM_PYTHON,
            str(CLIENT),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def result(self, timeout: float = 60.0) -> dict[str, Any]:
        """Stops a publisher (closes its stdin), waits for the client's JSON line."""
        assert self.process.stdin is not None
        self.process.stdin.close()  # communicate() without input leaves it open
        try:
            out, err = await asyncio.wait_for(self.process.communicate(), timeout)
        finally:
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
        lines = out.decode().strip().splitlines()
        assert self.process.returncode == 0 and lines, err.decode()[-3000:]
        result: dict[str, Any] = json.loads(lines[-1])
        assert result["error"] is None, result["error"]
        return result


def media_sections(sdp: str) -> list[list[str]]:
    sections: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        if sections:
            sections[-1].append(line)
    return sections


def check_answer(answer: str) -> None:
    """Every m-line answered with media, and each candidate listed once in the answer."""
    sections = media_sections(answer)
    assert [s[0].split()[0] for s in sections] == ["m=video", "m=audio"]
    for section in sections:
        assert "a=inactive" not in section, section[0]
    candidates = [line for line in answer.splitlines() if line.startswith("a=candidate:")]
    assert candidates, "the answer has no candidates"
    assert len(candidates) == len(set(candidates)), "a candidate is listed twice"
