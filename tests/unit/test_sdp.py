"""SDP checks before aiortc sees an offer, and candidate-line edits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import AudioStreamTrack

from gateway.errors import GatewayError
from gateway.signaling.ice import restrict_host_addresses
from gateway.signaling.sdp import (
    announce_address,
    candidate_lines,
    candidates_once,
    offered_codecs,
    parse_offer,
    strip_candidates,
    strip_mdns_candidates,
)


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    saved = aioice.ice.get_host_addresses
    restrict_host_addresses(["127.0.0.1"])
    yield
    aioice.ice.get_host_addresses = saved


async def aiortc_offer(direction: str) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        if direction == "sendonly":
            pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
            pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        else:
            pc.addTransceiver("video", direction=direction)
            pc.addTransceiver("audio", direction=direction)
        await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
        return sdp
    finally:
        await pc.close()


@pytest.fixture
async def publish_offer() -> AsyncIterator[str]:
    yield await aiortc_offer("sendonly")


@pytest.fixture
async def watch_offer() -> AsyncIterator[str]:
    yield await aiortc_offer("recvonly")


def rejected(sdp: str, want: str = "send") -> GatewayError:
    with pytest.raises(GatewayError) as info:
        parse_offer(sdp, want=want)
    return info.value


def without(sdp: str, prefix: str) -> str:
    return "\r\n".join(line for line in sdp.splitlines() if not line.startswith(prefix)) + "\r\n"


# --- parse_offer ----------------------------------------------------------------------------


async def test_accepts_a_real_publishing_offer(publish_offer: str) -> None:
    description = parse_offer(publish_offer, want="send")
    assert [m.kind for m in description.media] == ["video", "audio"]
    assert {m.direction for m in description.media} == {"sendonly"}
    assert offered_codecs(description, "video") == ["VP8", "rtx", "H264"]
    assert offered_codecs(description, "audio") == ["opus", "G722", "PCMU", "PCMA"]
    assert offered_codecs(description, "application") == []


async def test_accepts_a_real_watching_offer(watch_offer: str) -> None:
    description = parse_offer(watch_offer, want="recv")
    assert {m.direction for m in description.media} == {"recvonly"}


async def test_sendrecv_offer_can_publish_and_watch() -> None:
    offer = await aiortc_offer("sendrecv")
    assert parse_offer(offer, want="send").media
    assert parse_offer(offer, want="recv").media


async def test_offer_with_leading_whitespace_is_accepted(publish_offer: str) -> None:
    assert parse_offer("\r\n  " + publish_offer, want="send").media


async def test_watching_offer_cannot_publish(watch_offer: str) -> None:
    error = rejected(watch_offer, want="send")
    assert (error.status, error.code) == (422, "wrong-direction")
    assert "recvonly" in error.message and "publish" in error.message


async def test_publishing_offer_cannot_watch(publish_offer: str) -> None:
    error = rejected(publish_offer, want="recv")
    assert (error.status, error.code) == (422, "wrong-direction")
    assert "sendonly" in error.message and "watch" in error.message


async def test_rejected_media_sections_do_not_count_for_direction(publish_offer: str) -> None:
    # Port 0 marks a rejected section: only the audio section (recvonly) is live.
    lines = publish_offer.splitlines()
    video = next(i for i, line in enumerate(lines) if line.startswith("m=video"))
    lines[video] = "m=video 0 " + lines[video].split(" ", 2)[2]
    audio = [i for i, line in enumerate(lines) if line == "a=sendonly"][1]
    lines[audio] = "a=recvonly"
    error = rejected("\r\n".join(lines) + "\r\n", want="send")
    assert error.code == "wrong-direction"


@pytest.mark.parametrize("body", ["", "   ", "\r\n\r\n"])
def test_empty_offer(body: str) -> None:
    error = rejected(body)
    assert (error.status, error.code) == (400, "invalid-sdp")
    assert "empty" in error.message


@pytest.mark.parametrize(
    "body", ["hello", '{"type": "offer"}', "o=- 1 1 IN IP4 0.0.0.0\r\nv=0\r\n"]
)
def test_body_not_starting_with_v0(body: str) -> None:
    error = rejected(body)
    assert (error.status, error.code) == (400, "invalid-sdp")
    assert "v=0" in error.message


@pytest.mark.parametrize(
    "body",
    [
        "v=0x\r\n",
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96\r\n",
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 300\r\n",
        "v=0\r\nm=video\r\n",
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp\r\n",
    ],
)
def test_garbage_that_cannot_be_parsed(body: str) -> None:
    error = rejected(body)
    assert (error.status, error.code) == (400, "invalid-sdp")
    assert "cannot be parsed" in error.message


def test_offer_without_media() -> None:
    error = rejected("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")
    assert (error.status, error.code) == (400, "invalid-sdp")
    assert "no audio or video" in error.message


def test_data_channel_only_offer_has_no_media() -> None:
    sdp = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n"
        "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n"
    )
    error = rejected(sdp)
    assert error.code == "invalid-sdp"
    assert "no audio or video" in error.message


async def test_offer_without_ice_ufrag(publish_offer: str) -> None:
    error = rejected(without(publish_offer, "a=ice-ufrag"))
    assert (error.status, error.code) == (400, "invalid-sdp")
    assert "ice-ufrag" in error.message


async def test_offer_without_ice_pwd(publish_offer: str) -> None:
    error = rejected(without(publish_offer, "a=ice-pwd"))
    assert error.code == "invalid-sdp"
    assert "ICE credentials" in error.message


async def test_offer_without_fingerprint(publish_offer: str) -> None:
    error = rejected(without(publish_offer, "a=fingerprint"))
    assert (error.status, error.code) == (400, "invalid-sdp")
    assert "fingerprint" in error.message


async def test_offer_with_a_plain_rtp_profile(publish_offer: str) -> None:
    error = rejected(publish_offer.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"))
    assert (error.status, error.code) == (400, "invalid-sdp")
    assert "RTP/AVP" in error.message


async def test_credentials_at_session_level_are_accepted(publish_offer: str) -> None:
    # Firefox puts the fingerprint (and sometimes ICE credentials) in the session part.
    lines = publish_offer.splitlines()
    shared = [
        line
        for line in lines
        if line.startswith(("a=ice-ufrag", "a=ice-pwd", "a=fingerprint:sha-256"))
    ]
    shared = list(dict.fromkeys(shared))
    body = [line for line in lines if line not in shared and not line.startswith("a=fingerprint")]
    first_media = next(i for i, line in enumerate(body) if line.startswith("m="))
    sdp = "\r\n".join(body[:first_media] + shared + body[first_media:]) + "\r\n"
    description = parse_offer(sdp, want="send")
    assert all(m.ice is not None and m.ice.usernameFragment for m in description.media)
    assert all(m.dtls is not None and len(m.dtls.fingerprints) == 1 for m in description.media)


# --- candidate edits ------------------------------------------------------------------------

BROWSER_SDP = (
    "v=0\r\n"
    "o=- 1 2 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=mid:0\r\n"
    "a=candidate:1 1 udp 2113937151 4f9c6c7a-3e8b-4d54-9e2b-2b7f0e5a1c11.local 50000 typ host generation 0\r\n"
    "a=candidate:2 1 udp 2113939711 192.168.1.20 50001 typ host generation 0 network-cost 999\r\n"
    "a=candidate:3 1 udp 1677729535 203.0.113.9 61000 typ srflx raddr 0.0.0.0 rport 0 generation 0\r\n"
    "a=end-of-candidates\r\n"
    "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=mid:video-1\r\n"
    "a=candidate:4 1 tcp 1518280447 192.168.1.20 9 typ host tcptype active generation 0\r\n"
    "a=candidate:5 1 udp 2113937151 abcdef.local 50002 typ host generation 0\r\n"
)


def test_strip_mdns_candidates_keeps_every_other_line() -> None:
    out = strip_mdns_candidates(BROWSER_SDP)
    assert ".local" not in out
    expected = [
        line
        for line in BROWSER_SDP.splitlines()
        if not line.startswith(("a=candidate:1 ", "a=candidate:5 "))
    ]
    assert out.split("\r\n") == [*expected, ""]
    assert out.endswith("\r\n") and "\n" not in out.replace("\r\n", "")


def test_strip_mdns_candidates_accepts_lf_line_endings() -> None:
    out = strip_mdns_candidates(BROWSER_SDP.replace("\r\n", "\n"))
    assert out == strip_mdns_candidates(BROWSER_SDP)


def test_strip_mdns_candidates_leaves_an_sdp_without_them_alone() -> None:
    sdp = strip_mdns_candidates(BROWSER_SDP)
    assert strip_mdns_candidates(sdp) == sdp


def test_strip_candidates_removes_candidates_and_end_marker() -> None:
    out = strip_candidates(BROWSER_SDP)
    assert "a=candidate" not in out
    assert "a=end-of-candidates" not in out
    assert out.count("\r\n") == BROWSER_SDP.count("\r\n") - 6
    assert "a=mid:video-1\r\n" in out and out.startswith("v=0\r\n")


def test_candidate_lines_give_index_mid_and_attribute() -> None:
    found = candidate_lines(BROWSER_SDP)
    assert [(index, mid) for index, mid, _ in found] == [
        (0, "0"),
        (0, "0"),
        (0, "0"),
        (1, "video-1"),
        (1, "video-1"),
    ]
    assert found[1][2] == (
        "candidate:2 1 udp 2113939711 192.168.1.20 50001 typ host generation 0 network-cost 999"
    )
    assert all(c.startswith("candidate:") for _, _, c in found)


def test_candidate_lines_ignore_session_level_lines_and_missing_mid() -> None:
    sdp = (
        "v=0\r\na=candidate:9 1 udp 1 10.0.0.1 1 typ host\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:8 1 udp 1 10.0.0.2 2 typ host\r\n"
    )
    assert candidate_lines(sdp) == [(0, "", "candidate:8 1 udp 1 10.0.0.2 2 typ host")]


async def test_candidate_lines_of_a_real_offer(publish_offer: str) -> None:
    found = candidate_lines(publish_offer)
    assert {(index, mid) for index, mid, _ in found} == {(0, "0"), (1, "1")}
    assert all(" 127.0.0.1 " in c for _, _, c in found)


def test_announce_address_copies_host_candidates() -> None:
    out = announce_address(strip_mdns_candidates(BROWSER_SDP), "198.51.100.4").split("\r\n")
    original = out.index(
        "a=candidate:2 1 udp 2113939711 192.168.1.20 50001 typ host generation 0 network-cost 999"
    )
    assert out[original + 1] == (
        "a=candidate:2a 1 udp 2113939712 198.51.100.4 50001 typ host generation 0 network-cost 999"
    )
    tcp = out.index(
        "a=candidate:4 1 tcp 1518280447 192.168.1.20 9 typ host tcptype active generation 0"
    )
    assert out[tcp + 1] == (
        "a=candidate:4a 1 tcp 1518280448 198.51.100.4 9 typ host tcptype active generation 0"
    )
    added = [line for line in out if "198.51.100.4" in line]
    assert len(added) == 2
    assert not any("srflx" in line for line in added)
    assert out[-1] == ""


def test_announce_address_skips_candidates_already_at_that_address() -> None:
    sdp = (
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 100 198.51.100.4 5000 typ host\r\n"
    )
    assert announce_address(sdp, "198.51.100.4") == sdp


async def test_announce_address_on_a_real_offer(publish_offer: str) -> None:
    # The offer's candidates are all on 127.0.0.1 here: loopback never maps to a NAT.
    assert {c[2].split()[4] for c in candidate_lines(publish_offer)} == {"127.0.0.1"}
    assert announce_address(publish_offer, "203.0.113.50") == publish_offer
    private = publish_offer.replace("127.0.0.1", "10.1.2.3")
    out = announce_address(private, "203.0.113.50")
    assert len(candidate_lines(out)) == 2 * len(candidate_lines(private))
    assert parse_offer(out, want="send").media[0].ice_candidates[1].ip == "203.0.113.50"


def test_announce_address_skips_loopback_and_ipv6() -> None:
    sdp = (
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=candidate:1 1 udp 100 127.0.0.1 5000 typ host\r\n"
        "a=candidate:2 1 udp 100 2001:db8::1 5001 typ host\r\n"
        "a=candidate:3 1 udp 100 10.0.0.7 5002 typ host\r\n"
    )
    added = [
        line
        for line in announce_address(sdp, "198.51.100.4").split("\r\n")
        if "198.51.100.4" in line
    ]
    assert added == ["a=candidate:3a 1 udp 101 198.51.100.4 5002 typ host"]


# --- bundle-only m-lines (RFC 8843), as GStreamer's webrtcbin offers them ------------------


def bundle_only(sdp: str, section: int = 1, *, flag: bool = True) -> str:
    """``sdp`` with m-section ``section`` at port 0, marked ``a=bundle-only`` if ``flag``."""
    out: list[str] = []
    index = -1
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
            if index == section:
                kind, _, rest = line.split(" ", 2)
                line = f"{kind} 0 {rest}"
        if line.startswith("a=candidate:") and index == section:
            continue  # a bundle-only section carries no candidates of its own
        out.append(line)
        if line.startswith("a=mid:") and index == section and flag:
            out.append("a=bundle-only")
    return "\r\n".join(out) + "\r\n"


async def test_bundle_only_m_line_is_media_not_rejected(publish_offer: str) -> None:
    offer = bundle_only(publish_offer)
    assert "m=audio 0 " in offer and "a=bundle-only" in offer
    video, audio = parse_offer(offer, want="send").media
    assert audio.port == video.port != 0
    assert audio.direction == "sendonly"


async def test_port_zero_without_bundle_only_stays_rejected(publish_offer: str) -> None:
    _, audio = parse_offer(bundle_only(publish_offer, flag=False), want="send").media
    assert audio.port == 0


async def test_bundle_only_outside_any_bundle_group_stays_rejected(publish_offer: str) -> None:
    offer = bundle_only(without(publish_offer, "a=group:BUNDLE"))
    _, audio = parse_offer(offer, want="send").media
    assert audio.port == 0


async def test_only_bundle_only_m_lines_are_still_refused(publish_offer: str) -> None:
    # Every section bundle-only: no section gives the group a transport.
    offer = bundle_only(bundle_only(publish_offer, 0), 1)
    media = parse_offer(offer, want="any").media
    assert [m.port for m in media] == [0, 0]
    assert rejected(offer).code == "wrong-direction"


# --- candidates_once -----------------------------------------------------------------------


async def real_answer(offer: str) -> str:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        sdp: str = pc.localDescription.sdp
        return sdp
    finally:
        await pc.close()


async def test_candidates_once_keeps_them_in_the_bundle_tag_section(watch_offer: str) -> None:
    answer = await real_answer(watch_offer)
    before = candidate_lines(answer)
    assert {index for index, _, _ in before} == {0, 1}, "aiortc lists them in every section"
    out = candidates_once(answer)
    after = candidate_lines(out)
    assert after and {index for index, _, _ in after} == {0}
    assert [c for _, _, c in after] == [c for index, _, c in before if index == 0]
    assert out.count("a=end-of-candidates") == 1
    # Everything else is untouched, and the answer still parses with both sections.
    assert without(without(out, "a=candidate:"), "a=end-of-candidates") == without(
        without(answer, "a=candidate:"), "a=end-of-candidates"
    )
    description = parse_offer(out, want="any")
    assert [m.kind for m in description.media] == ["video", "audio"]
    assert len(description.media[0].ice_candidates) == len(after)


def test_candidates_once_drops_a_repeated_line_and_keeps_unbundled_sections() -> None:
    sdp = (
        "v=0\r\n"
        "a=group:BUNDLE 0\r\n"
        "m=video 5000 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n"
        "a=candidate:1 1 udp 100 10.0.0.7 5000 typ host\r\n"
        "a=candidate:1 1 udp 100 10.0.0.7 5000 typ host\r\n"
        "m=audio 5002 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n"
        "a=candidate:2 1 udp 100 10.0.0.7 5002 typ host\r\n"
    )
    assert candidates_once(sdp) == (
        "v=0\r\n"
        "a=group:BUNDLE 0\r\n"
        "m=video 5000 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n"
        "a=candidate:1 1 udp 100 10.0.0.7 5000 typ host\r\n"
        "m=audio 5002 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n"
        "a=candidate:2 1 udp 100 10.0.0.7 5002 typ host\r\n"
    )


async def test_media_sections_need_their_own_mid(watch_offer: str) -> None:
    """A session keys its tracks by mid: two sections with one mid once leaked a viewer."""
    mids = [line for line in watch_offer.splitlines() if line.startswith("a=mid:")]
    assert len(mids) == 2
    twice = watch_offer.replace(mids[1], mids[0])
    error = rejected(twice, want="recv")
    assert (error.status, error.code) == (400, "invalid-sdp") and "a=mid" in error.message
    error = rejected(without(watch_offer, mids[1]), want="recv")
    assert (error.status, error.code) == (400, "invalid-sdp")
