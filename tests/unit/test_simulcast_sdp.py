"""Simulcast offers read from SDP (rids, paused layers, extension ids), refused when bad,
and accepted in the answer."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayError
from gateway.signaling.simulcast import RID_URI, accept_layers, offered_layers

VIDEO = """m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=mid:1
a=sendonly
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id
a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id
a=rtpmap:96 VP8/90000
{rids}"""

SESSION = "v=0\no=- 1 2 IN IP4 127.0.0.1\ns=-\nt=0 0\n"
AUDIO = "m=audio 9 UDP/TLS/RTP/SAVPF 111\na=mid:0\na=sendonly\n"


def offer(rids: str, video: str = VIDEO) -> str:
    return SESSION + AUDIO + video.format(rids=rids)


CHROMIUM = "a=rid:q send\na=rid:h send\na=rid:f send\na=simulcast:send q;h;f\n"


def test_chromiums_three_layers_are_read_in_order() -> None:
    (layers,) = offered_layers(offer(CHROMIUM), max_layers=3).values()
    assert (layers.mid, layers.rids, layers.paused) == ("1", ("q", "h", "f"), frozenset())
    assert (layers.rid_extension, layers.repaired_extension) == (10, 11)


def test_paused_layers_and_alternatives() -> None:
    rids = "a=rid:a send\na=rid:b send\na=rid:c send\na=simulcast:send a,b;~c\n"
    (layers,) = offered_layers(offer(rids), max_layers=3).values()
    assert layers.rids == ("a", "c") and layers.paused == {"c"}


def test_no_simulcast_is_no_layers() -> None:
    assert offered_layers(offer(""), max_layers=3) == {}
    # A receive-only simulcast line offers nothing to receive from the client.
    assert offered_layers(offer("a=rid:q recv\na=simulcast:recv q\n"), max_layers=3) == {}


def test_rids_without_the_rid_extension_fall_back_to_one_layer() -> None:
    video = VIDEO.replace(f"a=extmap:10 {RID_URI}\n", "")
    assert offered_layers(offer(CHROMIUM, video), max_layers=3) == {}


@pytest.mark.parametrize(
    ("rids", "code"),
    [
        ("a=rid:q send\na=simulcast:send q;x\n", "unknown-rid"),
        (CHROMIUM, "too-many-layers"),
        ("a=rid:q send\na=rid:h send\na=simulcast:send q;q\n", "invalid-sdp"),
        ("a=rid:q send\na=rid:h send\na=simulcast:send\n", "invalid-sdp"),
        ("a=rid:q/bad send\na=simulcast:send q\n", "invalid-sdp"),
        ("a=rid:" + "x" * 17 + " send\na=simulcast:send " + "x" * 17 + "\n", "invalid-sdp"),
    ],
)
def test_bad_simulcast_offers_are_refused(rids: str, code: str) -> None:
    with pytest.raises(GatewayError) as raised:
        offered_layers(offer(rids), max_layers=2)
    assert (raised.value.status, raised.value.code) == (400, code)


def test_the_answer_accepts_each_layer_in_its_section() -> None:
    layers = offered_layers(offer(CHROMIUM), max_layers=3)
    answer = SESSION + "m=audio 9 X 111\r\na=mid:0\r\nm=video 9 X 96\r\na=mid:1\r\na=recvonly\r\n"
    accepted = accept_layers(answer, layers).splitlines()
    video = accepted[accepted.index("a=mid:1") :]
    assert video[-4:] == ["a=rid:q recv", "a=rid:h recv", "a=rid:f recv", "a=simulcast:recv q;h;f"]
    assert "a=rid:q recv" not in accepted[: accepted.index("a=mid:1")]  # not in the audio
    assert accept_layers(answer, {}) == answer
