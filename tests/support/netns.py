"""Network namespaces joined by veth pairs: real NAT, firewalls and rate limits for tests (root)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# Linux limits interface names to 15 characters (IFNAMSIZ - 1).
MAX_IFNAME = 15


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(["ip", *args], check=check)


def _run(command: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(command), capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}"
        )
    return result


def require_root() -> None:
    """Fail (never skip) with what is missing: namespaces need root, ip and iptables."""
    if os.geteuid() != 0:
        raise RuntimeError("network namespace tests need root (ip netns add)")
    for tool in ("ip", "tc", "iptables"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing (Debian: apt-get install iproute2 iptables)")


def namespaces(prefix: str) -> list[str]:
    """The namespaces named ``prefix-*`` (as ``Network`` names them)."""
    listed = _ip("netns", "list").stdout.splitlines()
    return [line.split()[0] for line in listed if line.startswith(prefix + "-")]


def remove_leftovers(prefix: str) -> None:
    """Delete namespaces a killed earlier run left behind (their veths go with them)."""
    for name in namespaces(prefix):
        _ip("netns", "del", name, check=False)


@dataclass
class Namespace:
    """One network namespace: run commands in it, address, route, filter and shape it."""

    name: str

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside this namespace (for Popen, Playwright wrappers and the like)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(self.command(*argv), check=check)

    def python(self, *argv: str) -> list[str]:
        """This test run's Python (the venv) inside the namespace."""
        return self.command(sys.executable, *argv)

    def sysctl(self, key: str, value: str) -> None:
        # /proc/sys/net is per namespace when read from a process inside it.
        path = "/proc/sys/" + key.replace(".", "/")
        self.run("sh", "-c", f"echo {value} > {path}")

    def route(self, destination: str, via: str) -> None:
        """``destination`` ("default" or a network) through the gateway ``via``."""
        self.run("ip", "route", "add", destination, "via", via)

    def iptables(self, *rule: str) -> None:
        """One iptables command, e.g. ``iptables("-t", "nat", "-A", "POSTROUTING", ...)``."""
        self.run("iptables", "-w", *rule)

    def flush_firewall(self) -> None:
        """Every rule of the filter and nat tables gone (and their conntrack entries)."""
        for table in ("filter", "nat"):
            self.iptables("-t", table, "-F")
        # Established mappings would outlive the rules that made them.
        self.run("sh", "-c", "command -v conntrack >/dev/null && conntrack -F || true")

    def masquerade(self, out_interface: str, random_fully: bool = False) -> None:
        """Source NAT of everything leaving through ``out_interface`` onto its address.

        Plain MASQUERADE keeps a flow's source port when it is free (endpoint-independent
        mapping: a STUN server-reflexive address works for other peers too);
        ``random_fully`` picks a random port per flow (a symmetric-like NAT on which a
        server-reflexive address is useless for anyone but the STUN server).
        """
        rule = ["-t", "nat", "-A", "POSTROUTING", "-o", out_interface, "-j", "MASQUERADE"]
        self.iptables(*rule, *(["--random-fully"] if random_fully else []))

    def drop_forwarded_udp(self, destination: str, except_port: int | None = None) -> None:
        """Routed UDP to ``destination`` dropped (but for ``except_port``): direct media
        paths fail, only a relay on the allowed port works."""
        rule = ["-A", "FORWARD", "-p", "udp", "-d", destination]
        if except_port is not None:
            rule += ["!", "--dport", str(except_port)]
        self.iptables(*rule, "-j", "DROP")

    def rate_limit(
        self, interface: str, rate: str, burst: str = "16kb", latency: str = "10s"
    ) -> None:
        """A token bucket on ``interface``'s egress (tc tbf), e.g. rate="300kbit".

        A long ``latency`` lets the queue hold more than a UDP socket's send buffer, so a
        sender is slowed down (its socket would block) instead of its datagrams dropped.
        """
        self.run(
            "tc", "qdisc", "replace", "dev", interface, "root", "tbf",
            "rate", rate, "burst", burst, "latency", latency,
        )  # fmt: skip

    def remove_rate_limit(self, interface: str) -> None:
        self.run("tc", "qdisc", "del", "dev", interface, "root", check=False)

    async def fetch_json(self, url: str, token: str | None = None) -> Any:
        """GET ``url`` from inside the namespace (an HTTP server only reachable there)."""
        script = (
            "import json, sys, urllib.request\n"
            "request = urllib.request.Request(sys.argv[1])\n"
            "if len(sys.argv) > 2: request.add_header('Authorization', 'Bearer ' + sys.argv[2])\n"
            "print(urllib.request.urlopen(request, timeout=20).read().decode())\n"
        )
        process = await asyncio.create_subprocess_exec(
            *self.python("-c", script, url, *([token] if token else [])),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 40)
        if process.returncode != 0:
            raise AssertionError(f"GET {url} in {self.name}: {err.decode()[-2000:]}")
        return json.loads(out)


@dataclass
class Network:
    """Namespaces and the veth pairs between them, all named with ``prefix``; closing
    (or leaving the ``network()`` context) deletes every one, whatever happened."""

    prefix: str
    created: list[Namespace] = field(default_factory=list)

    def namespace(self, suffix: str) -> Namespace:
        name = f"{self.prefix}-{suffix}"
        _ip("netns", "add", name)
        namespace = Namespace(name)
        self.created.append(namespace)
        namespace.run("ip", "link", "set", "lo", "up")
        return namespace

    def link(
        self, a: Namespace, a_address: str, b: Namespace, b_address: str, name: str
    ) -> tuple[str, str]:
        """A veth pair ``<prefix><name>a`` in ``a`` and ``...b`` in ``b``, addressed
        (CIDR, e.g. "10.1.0.1/24") and up; returns the two interface names.

        Created directly inside the namespaces: nothing appears in the caller's.
        """
        a_if, b_if = f"{self.prefix}{name}a", f"{self.prefix}{name}b"
        if len(a_if) > MAX_IFNAME:
            raise ValueError(f"interface name {a_if!r} is longer than {MAX_IFNAME} characters")
        _ip(
            "link", "add", a_if, "netns", a.name, "type", "veth",
            "peer", "name", b_if, "netns", b.name,
        )  # fmt: skip
        for namespace, interface, address in ((a, a_if, a_address), (b, b_if, b_address)):
            namespace.run("ip", "addr", "add", address, "dev", interface)
            namespace.run("ip", "link", "set", interface, "up")
        return a_if, b_if

    def close(self) -> None:
        for namespace in reversed(self.created):
            _ip("netns", "del", namespace.name, check=False)
        self.created.clear()
        remove_leftovers(self.prefix)


@contextmanager
def network(prefix: str) -> Iterator[Network]:
    """A fresh set of namespaces named ``prefix-*`` (leftovers of a killed run removed
    first), deleted again on exit."""
    require_root()
    remove_leftovers(prefix)
    net = Network(prefix)
    try:
        yield net
    finally:
        net.close()
