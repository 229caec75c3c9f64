"""Remote ICE candidates are checked before aioice uses them; offers are bounded before parsing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCIceCandidate, RTCPeerConnection, VideoStreamTrack

from gateway.errors import GatewayError
from gateway.signaling.candidates import MAX_FOUNDATION, MAX_PRIORITY, check_candidate
from gateway.signaling.ice import parse_candidate, restrict_host_addresses
from gateway.signaling.sdp import parse_offer


def candidate(**changes: object) -> RTCIceCandidate:
    values: dict[str, object] = {
        "component": 1,
        "foundation": "842163049",
        "ip": "192.168.1.20",
        "port": 50001,
        "priority": 2122260223,
        "protocol": "udp",
        "type": "host",
        **changes,
    }
    return RTCIceCandidate(**values)  # type: ignore[arg-type]


def refusal(**changes: object) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        check_candidate(candidate(**changes))
    assert (info.value.status, info.value.code) == (400, "invalid-candidate")
    return info.value


# --- check_candidate ------------------------------------------------------------------------


@pytest.mark.parametrize("port", [1, 9, 50001, 65535])
def test_ports_in_range_are_accepted(port: int) -> None:
    check_candidate(candidate(port=port))


@pytest.mark.parametrize("port", [0, -1, 65536, 99999, "5000", None])
def test_ports_out_of_range_are_refused(port: object) -> None:
    assert f"port {port} is not 1-65535" in refusal(port=port).message


@pytest.mark.parametrize("component", [1, 2, 256])
def test_components_in_range_are_accepted(component: int) -> None:
    check_candidate(candidate(component=component))


@pytest.mark.parametrize("component", [0, 257, -1, "1"])
def test_components_out_of_range_are_refused(component: object) -> None:
    assert "component must be 1-256" in refusal(component=component).message


@pytest.mark.parametrize("priority", [0, 1, MAX_PRIORITY])
def test_priorities_in_range_are_accepted(priority: int) -> None:
    check_candidate(candidate(priority=priority))


@pytest.mark.parametrize("priority", [-1, MAX_PRIORITY + 1, 2**63, 1.5])
def test_priorities_out_of_range_are_refused(priority: object) -> None:
    assert f"priority must be 0-{2**32 - 1}" in refusal(priority=priority).message


@pytest.mark.parametrize("foundation", ["1", "f" * MAX_FOUNDATION])
def test_foundations_of_1_to_64_characters_are_accepted(foundation: str) -> None:
    assert MAX_FOUNDATION == 64
    check_candidate(candidate(foundation=foundation))


@pytest.mark.parametrize("foundation", ["", "f" * (MAX_FOUNDATION + 1), "f" * 10_000])
def test_foundations_too_short_or_long_are_refused(foundation: str) -> None:
    error = refusal(foundation=foundation)
    assert "foundation must be 1-64 characters" in error.message
    assert len(error.message) < 200  # a huge foundation is not echoed whole


@pytest.mark.parametrize("kind", ["host", "srflx", "prflx", "relay"])
def test_known_types_are_accepted(kind: str) -> None:
    check_candidate(candidate(type=kind))


@pytest.mark.parametrize("kind", ["HOST", "bogus", ""])
def test_unknown_types_are_refused(kind: str) -> None:
    assert f"unknown type {kind!r}" in refusal(type=kind).message


@pytest.mark.parametrize(
    "address", ["192.168.1.20", "203.0.113.9", "10.0.0.1", "127.0.0.1", "2001:db8::5", "::1"]
)
def test_unicast_addresses_are_accepted(address: str) -> None:
    check_candidate(candidate(ip=address))


@pytest.mark.parametrize(
    "address", ["224.0.0.1", "239.255.255.250", "ff02::1", "0.0.0.0", "::", "255.255.255.255"]
)
def test_multicast_broadcast_and_unspecified_are_refused(address: str) -> None:
    assert "is not a unicast address a peer can use" in refusal(ip=address).message


@pytest.mark.parametrize("host", ["example.com", "localhost", "gateway.internal", "10.0.0.300"])
def test_host_names_are_refused(host: str) -> None:
    assert f"{host!r} is not an IP address" in refusal(ip=host).message


def test_refusal_names_the_candidate() -> None:
    assert refusal(foundation="abc", port=0).message.startswith("candidate 'abc': port 0")


@pytest.mark.parametrize(
    ("line", "detail"),
    [
        ("candidate:1 1 udp 2122260223 192.168.1.20 0 typ host", "port 0"),
        ("candidate:1 1 udp 2122260223 192.168.1.20 99999 typ host", "port 99999"),
        ("candidate:1 1 udp 2122260223 224.0.0.1 5000 typ host", "not a unicast"),
        ("candidate:1 1 udp 2122260223 ff02::1 5000 typ host", "not a unicast"),
        ("candidate:1 1 udp 2122260223 example.com 5000 typ host", "not an IP address"),
        ("candidate:1 1 udp 4294967296 192.168.1.20 5000 typ host", "priority"),
        ("candidate:1 0 udp 2122260223 192.168.1.20 5000 typ host", "component"),
        ("candidate:1 1 udp 2122260223 192.168.1.20 5000 typ gateway", "unknown type"),
    ],
)
def test_trickled_candidates_are_checked(line: str, detail: str) -> None:
    with pytest.raises(GatewayError) as info:
        parse_candidate(line, "0", 0)
    assert info.value.code == "invalid-candidate"
    assert detail in info.value.message


# --- offers: m-line and candidate limits ----------------------------------------------------


@pytest.fixture
async def offer() -> AsyncIterator[str]:
    """A real aiortc publishing offer (one video section, one loopback candidate)."""
    saved = aioice.ice.get_host_addresses
    restrict_host_addresses(["127.0.0.1"])
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        yield pc.localDescription.sdp
    finally:
        await pc.close()
        aioice.ice.get_host_addresses = saved


def with_sections(sdp: str, count: int) -> str:
    """The offer with its media section repeated ``count`` times, all bundled."""
    lines = sdp.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("m="))
    session, section = lines[:start], lines[start:]
    session = [
        "a=group:BUNDLE " + " ".join(str(i) for i in range(count))
        if line.startswith("a=group:BUNDLE")
        else line
        for line in session
    ]
    out = list(session)
    for i in range(count):
        for line in section:
            if line == "a=mid:0":
                out.append(f"a=mid:{i}")
            elif i > 0 and line.startswith(("a=candidate:", "a=ssrc", "a=msid:")):
                continue
            else:
                out.append(line)
    return "\r\n".join(out) + "\r\n"


def with_candidates(sdp: str, extra: int, port: int = 5000) -> str:
    """The offer with ``extra`` more host candidates in its first section."""
    added = [
        f"a=candidate:x{i} 1 udp 2122260223 10.0.{i // 250}.{i % 250 + 1} {port} typ host"
        for i in range(extra)
    ]
    out: list[str] = []
    for line in sdp.splitlines():
        if line == "a=end-of-candidates" and added:
            out.extend(added)
            added = []
        out.append(line)
    return "\r\n".join(out) + "\r\n"


def offer_refusal(sdp: str, **limits: int) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        parse_offer(sdp, want="send", **limits)
    return info.value


async def test_m_line_limit_is_inclusive(offer: str) -> None:
    assert len(parse_offer(with_sections(offer, 16), want="send").media) == 16
    error = offer_refusal(with_sections(offer, 17))
    assert (error.status, error.code) == (400, "too-many-m-lines")
    assert "the offer has 17 media sections; at most 16 are accepted" in error.message
    assert len(parse_offer(with_sections(offer, 3), want="send", max_m_lines=3).media) == 3
    assert offer_refusal(with_sections(offer, 4), max_m_lines=3).code == "too-many-m-lines"


async def test_500_m_lines_are_refused(offer: str) -> None:
    error = offer_refusal(with_sections(offer, 500))
    assert error.code == "too-many-m-lines"
    assert "500 media sections" in error.message


def test_m_lines_are_counted_before_the_offer_is_parsed() -> None:
    # Sections aiortc's parser cannot read: within the limit the parser refuses them,
    # past it the count does, so the count came first.
    broken = "v=0\r\n" + "m=video notaport UDP/TLS/RTP/SAVPF 96\r\n" * 16
    assert offer_refusal(broken).code == "invalid-sdp"
    assert offer_refusal(broken + "m=video x y z\r\n").code == "too-many-m-lines"
    assert offer_refusal("v=0\r\n" + "m=video x y z\r\n" * 500).code == "too-many-m-lines"


async def test_candidate_limit_is_inclusive(offer: str) -> None:
    assert offer.count("a=candidate:") == 1
    accepted = parse_offer(with_candidates(offer, 63), want="send")
    assert len(accepted.media[0].ice_candidates) == 64
    error = offer_refusal(with_candidates(offer, 64))
    assert (error.status, error.code) == (400, "too-many-candidates")
    assert "the offer has 65 candidates; at most 64 are accepted" in error.message
    assert offer_refusal(with_candidates(offer, 2), max_candidates=2).code == (
        "too-many-candidates"
    )


async def test_candidates_are_counted_before_they_are_checked(offer: str) -> None:
    # Each added candidate has port 0: checked one by one, they would be invalid-candidate.
    assert offer_refusal(with_candidates(offer, 3, port=0)).code == "invalid-candidate"
    assert offer_refusal(with_candidates(offer, 64, port=0)).code == "too-many-candidates"


async def test_candidates_in_an_offer_are_checked(offer: str) -> None:
    error = offer_refusal(with_candidates(offer, 1, port=65536))
    assert (error.status, error.code) == (400, "invalid-candidate")
    assert "port 65536" in error.message
    multicast = offer.replace(" 127.0.0.1 ", " 224.0.0.1 ", 1)
    assert "not a unicast address" in offer_refusal(multicast).message


async def test_mdns_candidates_in_an_offer_are_not_checked(offer: str) -> None:
    mdns = offer.replace(" 127.0.0.1 ", " 4f9c6c7a-3e8b-4d54-9e2b-2b7f0e5a1c11.local ", 1)
    assert len(parse_offer(mdns, want="send").media) == 1
