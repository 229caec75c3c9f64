"""A real coturn TURN server on loopback, with REST-API credentials and a log to read back."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from aioice import stun

REALM = "gateway.test"
# One line per allocation coturn grants, e.g.
# "session 001000000000000001: new, realm=<gateway.test>, username=<1796316934:alice>, lifetime=600"
_ALLOCATION = re.compile(r"session \d+: new, realm=<[^>]*>, username=<([^>]*)>")


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (coturn listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


@dataclass
class Coturn:
    process: subprocess.Popen[bytes]
    port: int
    secret: str
    log_path: Path
    host: str = "127.0.0.1"

    @property
    def turn_url(self) -> str:
        return f"turn:{self.host}:{self.port}?transport=udp"

    @property
    def stun_url(self) -> str:
        return f"stun:{self.host}:{self.port}"

    def log(self) -> str:
        """coturn's log so far (blocking file I/O: call it off the event loop)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def allocations(self) -> list[str]:
        """The usernames of the allocations coturn granted, in order (blocking)."""
        return _ALLOCATION.findall(self.log())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _config(
    directory: Path,
    port: int,
    secret: str,
    host: str = "127.0.0.1",
    peers: str = "127.0.0.1",
) -> str:
    return "\n".join(
        [
            f"listening-ip={host}",
            f"listening-port={port}",
            f"relay-ip={host}",
            "use-auth-secret",
            f"static-auth-secret={secret}",
            f"realm={REALM}",
            "no-tls",
            "no-dtls",
            "no-cli",
            # No RFC 5780 alternate port (port+1): one listener, nothing else bound.
            "no-rfc5780",
            # coturn refuses to relay to loopback peers unless told; and relays only there:
            # every other address is denied, so the test cannot send off this machine.
            "allow-loopback-peers",
            "no-multicast-peers",
            "denied-peer-ip=0.0.0.0-255.255.255.255",
            f"allowed-peer-ip={peers}",
            f"log-file={directory / 'turn.log'}",
            "simple-log",
            "no-stdout-log",
            "verbose",
            f"pidfile={directory / 'turn.pid'}",
            f"userdb={directory / 'turndb'}",
            "",
        ]
    )


def _answers_stun(port: int) -> bool:
    """Whether a STUN Binding request to the port gets a success response."""
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        sock.sendto(bytes(request), ("127.0.0.1", port))
        try:
            data = sock.recv(2048)
        except (TimeoutError, ConnectionRefusedError):
            return False
    response = stun.parse_message(data)
    return (
        response.transaction_id == request.transaction_id
        and response.message_class == stun.Class.RESPONSE
    )


def start_coturn(directory: Path, timeout: float = 15.0) -> Coturn:
    """Start Debian's turnserver in ``directory`` and return once it answers STUN.

    Blocking: call it from a synchronous fixture, while no event loop runs.
    """
    binary = shutil.which("turnserver") or "/usr/bin/turnserver"
    if not os.access(binary, os.X_OK):
        raise RuntimeError(
            "coturn is not installed (Debian: apt-get install coturn; ./dev.sh does)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(24)
    for _attempt in range(3):
        port = _free_port()
        config = directory / "turnserver.conf"
        config.write_text(_config(directory, port, secret))
        with open(directory / "turnserver.out", "wb") as out:
            process = subprocess.Popen(
                [binary, "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        server = Coturn(process, port, secret, directory / "turn.log")
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            if _answers_stun(port):
                return server
        server.stop()
        # Exited: most likely the port was taken between choosing and binding; retry.
    raise RuntimeError(f"coturn did not start; its log:\n{server.log()[-2000:]}")


def start_coturn_in_namespace(
    command: list[str],
    directory: Path,
    host: str,
    peers: str,
    port: int = 3478,
    timeout: float = 15.0,
) -> Coturn:
    """Start turnserver with ``command`` as prefix (e.g. ``ip netns exec NS``), listening
    and relaying on ``host`` and relaying only to ``peers`` (an address or a range
    "A-B"). Returns once its log says the UDP listener is open (this process may not
    reach ``host``). Blocking: call it from a synchronous fixture."""
    binary = shutil.which("turnserver") or "/usr/bin/turnserver"
    directory.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(24)
    config = directory / "turnserver.conf"
    config.write_text(_config(directory, port, secret, host, peers))
    with open(directory / "turnserver.out", "wb") as out:
        process = subprocess.Popen(
            [*command, binary, "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Coturn(process, port, secret, directory / "turn.log", host)
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if re.search(rf"UDP listener opened on\s*:\s*{re.escape(host)}:{port}", server.log()):
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"coturn did not start; its log:\n{server.log()[-2000:]}")
