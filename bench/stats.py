"""Process and kernel counters from /proc, and small statistics helpers."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0-100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class CpuSample:
    """utime+stime of a whole process (all threads, living and exited) at one instant."""

    cpu_s: float
    user_s: float
    threads: int
    wall: float


def cpu_sample(pid: int, wall: float) -> CpuSample:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # After the ")" of comm: state is field 3, utime 14, stime 15, num_threads 20 (1-based).
    utime, stime, threads = int(fields[11]), int(fields[12]), int(fields[17])
    return CpuSample((utime + stime) / CLOCK_TICKS, utime / CLOCK_TICKS, threads, wall)


def cpu_ms_per_s(start: CpuSample, end: CpuSample) -> float:
    return (end.cpu_s - start.cpu_s) * 1000 / max(end.wall - start.wall, 1e-9)


def user_ms_per_s(start: CpuSample, end: CpuSample) -> float:
    return (end.user_s - start.user_s) * 1000 / max(end.wall - start.wall, 1e-9)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def udp_counters() -> dict[str, int]:
    """The kernel's UDP counters (RcvbufErrors counts datagrams dropped on full sockets)."""
    lines = [
        line for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")
    ]
    names, values = lines[0].split()[1:], lines[1].split()[1:]
    return {name: int(value) for name, value in zip(names, values, strict=True)}


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def machine_info() -> dict[str, Any]:
    """What every result file records about the machine it was measured on."""
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": os.uname().release,
        "loadavg_at_start": os.getloadavg(),
    }


def read_sysctl(name: str) -> int | None:
    try:
        return int(Path("/proc/sys/" + name.replace(".", "/")).read_text().split()[0])
    except (OSError, ValueError):
        return None


def write_sysctl(name: str, value: int) -> bool:
    try:
        Path("/proc/sys/" + name.replace(".", "/")).write_text(str(value))
    except OSError:
        return False
    return True
