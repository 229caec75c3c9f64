"""Fuzzing what clients send (WHIP/WHEP, trickle PATCH, tokens, WebSocket) against one gateway."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import jwt
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gateway.app import create_app
from gateway.auth.minting import mint
from gateway.config import Config
from gateway.signaling.messages import _SCHEMA as WS_SCHEMA
from tests.conftest import RunningGateway, loopback_config
from tests.functional.test_lifecycle import census, threads
from tests.support.media import NumberedVideoTrack, ToneTrack
from tests.support.peers import (
    Publisher,
    Viewer,
    new_peer,
    prefer,
    wait_for,
    whep_watch,
    whip_publish,
)
from tests.support.tokens import KEY, SECRET, secure_config

# One gateway per mode for the whole module: its loop is the module's.
pytestmark = pytest.mark.asyncio(loop_scope="module")

# Reproducible in CI: a fixed seed per test, no example database, no deadline (the
# machine is shared and slow), a few hundred cases per test.
FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

SDP_TYPE = "application/sdp"
TRICKLE_TYPE = "application/trickle-ice-sdpfrag"
LIVE = "live"
HEADER_TOO_LONG = {"error": "header-too-long"}

# -- values ------------------------------------------------------------------------------


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, ``weight`` times as often as a weight of 1: most cases
    should get past the first check. (st.one_of picks evenly among distinct branches.)"""
    return st.sampled_from([s for weight, s in choices for _ in range(weight)]).flatmap(
        lambda strategy: strategy
    )


@dataclass(frozen=True)
class Big:
    """A JSON integer literal of ``digits`` digits: more than Python converts by default."""

    digits: int


def render(value: Any) -> str:
    """JSON text for ``value``, with Big literals (json.dumps cannot write them)."""
    if isinstance(value, Big):
        return "9" * value.digits
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(render(v) for v in value) + "]"
    return json.dumps(value)  # NaN and Infinity too: Python's parser takes them


HUGE_INTS = [2**31, -(2**31) - 1, 2**53 + 1, 2**63, 2**64, 10**30, -(10**30), 10**400]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.builds(Big, st.sampled_from([20, 400, 4300, 4301, 6000])),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
DELETE_AND_C1 = "".join(map(chr, range(0x7F, 0xA0)))
# Printable header text: aiohttp's client refuses control characters in header values.
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters=DELETE_AND_C1),
    max_size=120,
)
good_rooms = st.sampled_from([LIVE, "fz-0", "fz-1", "fz-2"])
room_names = weighted(
    (4, good_rooms),
    (1, st.sampled_from(["", ".", "..", "-x", "a" * 64, "a" * 65, "a b", "a%2Fb", "..%2F..", "ä"])),
    (1, st.text(max_size=70)),
)

# -- ICE candidates: only addresses on loopback, or ones the gateway must refuse ----------------

CANDIDATE_IPS = [
    "127.0.0.1",
    "127.0.0.2",
    "::1",
    "::ffff:127.0.0.1",
    "0.0.0.0",
    "::",
    "224.0.0.251",
    "ff02::1",
    "255.255.255.255",
    "0123abcd-fuzz.local",
    "localhost",
    "fuzz.invalid",
    "",
    "999.1.1.1",
    "127.0.0.1.1",
    "12345678",
]
candidate_fields = st.tuples(
    st.sampled_from(["1", "f" * 64, "f" * 65, "", "foundation-ä"]) | st.text(max_size=8),
    st.sampled_from(["1", "2", "0", "256", "257", "-1", "99999999999999999999", "x"]),
    st.sampled_from(["udp", "UDP", "tcp", "sctp", "", "udp\u00e9"]),
    st.sampled_from(["0", "1", "2130706431", "4294967295", "4294967296", "-1", str(10**30), "p"]),
    # Never a routable address: "h" keeps random text from ever being an IP literal.
    st.sampled_from(CANDIDATE_IPS) | st.text(max_size=12).map(lambda s: "h" + s),
    st.sampled_from(["9", "1", "65535", "65536", "0", "-1", "99999", str(10**20), "port"]),
    st.sampled_from(["typ host", "typ srflx", "typ prflx", "typ relay", "typ bogus", "typ", ""]),
    st.sampled_from(
        ["", " generation 0", " raddr 127.0.0.1 rport 9", " tcptype passive", " ufrag x", " \u2603"]
    ),
)


def candidate_line(fields: tuple[str, ...]) -> str:
    foundation, component, transport, priority, ip, port, typ, extra = fields
    return f"candidate:{foundation} {component} {transport} {priority} {ip} {port} {typ}{extra}"


# -- SDP offers, made once with aiortc, then mutated ----------------------------------------

PORTS = ["0", "9", "1", "65535", "65536", "99999", "-1", str(2**32), str(10**30), "x", ""]
ATTRIBUTES = [
    "mid",
    "ice-ufrag",
    "ice-pwd",
    "fingerprint",
    "rtpmap",
    "fmtp",
    "ssrc",
    "ssrc-group",
    "extmap",
    "group",
    "setup",
    "rtcp",
    "rtcp-fb",
    "msid",
    "candidate",
    "sctp-port",
    "max-message-size",
]
odd_values = st.one_of(
    st.sampled_from(["", "0", "-1", "99999", str(10**30), "x" * 300, "\u2603\u00e9\U0001f600"]),
    st.text(max_size=40),
)
index = st.integers(0, 10_000)  # taken modulo the number of lines
sdp_mutation = st.one_of(
    st.tuples(st.just("drop"), index),
    st.tuples(st.just("dup"), index),
    st.tuples(st.just("swap"), index, index),
    st.tuples(st.just("port"), index, st.sampled_from(PORTS)),
    st.tuples(st.just("candidate"), index, candidate_fields),
    st.tuples(st.just("candidates"), st.integers(20, 80)),
    st.tuples(st.just("m-lines"), st.integers(1, 20), st.booleans()),
    st.tuples(
        st.just("attribute"), index, st.sampled_from(ATTRIBUTES) | st.text(max_size=10), odd_values
    ),
    st.tuples(st.just("set"), st.sampled_from(ATTRIBUTES), odd_values),
    st.tuples(
        st.just("direction"),
        st.sampled_from(["sendonly", "recvonly", "sendrecv", "inactive", "bogus", ""]),
    ),
    st.tuples(
        st.just("payload"), st.sampled_from(["0", "35", "127", "128", "-1", str(10**20), "x"])
    ),
    st.tuples(st.just("profile"), st.sampled_from(["RTP/AVP", "UDP/TLS/RTP/SAVP", "", "x" * 200])),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("unicode"), index, st.text(min_size=1, max_size=20)),
    st.tuples(st.just("newline"), st.sampled_from(["\n", "\r", "\r\n\r\n", " \r\n", "\x00\r\n"])),
    st.tuples(st.just("strip-candidates")),
)


@dataclass(frozen=True)
class SdpSpec:
    """An offer: which real one, and the mutations applied to it."""

    base: str  # "publish", "watch", "h264" (keys of Offers.sdp) or "any": fit the request
    mutations: tuple[tuple[Any, ...], ...]


sdp_specs = st.builds(
    SdpSpec,
    st.sampled_from(["any", "any", "publish", "watch", "h264"]),
    st.lists(sdp_mutation, max_size=4).map(tuple),
)


def mutate(sdp: str, mutations: tuple[tuple[Any, ...], ...]) -> str:
    lines = sdp.splitlines()
    newline = "\r\n"
    for op, *args in mutations:
        n = max(len(lines), 1)
        m_lines = [i for i, line in enumerate(lines) if line.startswith("m=")]
        if op == "drop" and lines:
            del lines[args[0] % n]
        elif op == "dup" and lines:
            lines.insert(args[0] % n, lines[args[0] % n])
        elif op == "swap" and lines:
            i, j = args[0] % n, args[1] % n
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "port" and m_lines:
            i = m_lines[args[0] % len(m_lines)]
            parts = lines[i].split(" ")
            lines[i] = " ".join([parts[0], args[1], *parts[2:]])
        elif op == "candidate":
            lines.insert(args[0] % n, "a=" + candidate_line(args[1]))
        elif op == "candidates":
            at = m_lines[-1] + 1 if m_lines else len(lines)
            for k in range(args[0]):
                lines.insert(at, f"a=candidate:{k} 1 udp {2000 + k} 127.0.0.1 {9 + k} typ host")
        elif op == "m-lines" and m_lines:
            section = lines[m_lines[-1] :]
            for k in range(args[0]):
                copy = [f"a=mid:x{k}" if args[1] and s.startswith("a=mid:") else s for s in section]
                lines.extend(copy)
        elif op == "attribute":
            lines.insert(args[0] % n, f"a={args[1]}:{args[2]}")
        elif op == "set":
            prefix = f"a={args[0]}:"
            lines = [prefix + args[1] if line.startswith(prefix) else line for line in lines]
        elif op == "direction":
            directions = ("a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive")
            lines = ["a=" + args[0] if line in directions else line for line in lines]
        elif op == "payload":
            lines = [_payload(line, args[0]) for line in lines]
        elif op == "profile":
            lines = [line.replace("UDP/TLS/RTP/SAVPF", args[0]) for line in lines]
        elif op == "truncate":
            text = newline.join(lines)
            lines = text[: int(len(text) * args[0])].split(newline)
        elif op == "unicode" and lines:
            lines[args[0] % n] += args[1]
        elif op == "newline":
            newline = args[0]
        elif op == "strip-candidates":
            lines = [line for line in lines if not line.startswith("a=candidate:")]
    return newline.join(lines) + newline


def _payload(line: str, value: str) -> str:
    if line.startswith("m="):
        parts = line.split(" ")
        return " ".join([*parts[:3], *(value for _ in parts[3:])])
    for prefix in ("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"):
        if line.startswith(prefix):
            return prefix + value + " " + line.split(" ", 1)[-1]
    return line


@dataclass
class Offers:
    sdp: dict[str, str]

    def build(self, spec: SdpSpec, fit: str) -> str:
        return mutate(self.sdp[fit if spec.base == "any" else spec.base], spec.mutations)


async def make_offers() -> Offers:
    async def offer(kinds: dict[str, str], direction: str) -> str:
        pc = new_peer()
        for kind, codec in kinds.items():
            track = NumberedVideoTrack(320, 240) if kind == "video" else ToneTrack()
            transceiver = pc.addTransceiver(
                track if direction == "sendonly" else kind, direction=direction
            )
            prefer(transceiver, kind, codec)
        await pc.setLocalDescription(await pc.createOffer())
        sdp: str = pc.localDescription.sdp
        await pc.close()
        return sdp

    return Offers(
        {
            "publish": await offer({"video": "VP8", "audio": "opus"}, "sendonly"),
            "watch": await offer({"video": "VP8", "audio": "opus"}, "recvonly"),
            "h264": await offer({"video": "H264"}, "sendonly"),
        }
    )


# -- tokens and Authorization headers -------------------------------------------------------

FUZZER_GRANT = {"roomJoin": True, "room": "*", "roomList": True}


def refused_tokens() -> list[str]:
    """Tokens a gateway that trusts only KEY/SECRET must refuse, each for another reason."""
    now = int(time.time())
    claims = {"iss": KEY, "sub": "fuzzer", "nbf": now, "exp": now + 600, "video": FUZZER_GRANT}
    ec_key = ec.generate_private_key(ec.SECP256R1())
    other_secret = "another secret, also long enough for HS256 keys"
    return [
        mint(KEY, other_secret, "fuzzer", FUZZER_GRANT),  # signed with another secret
        mint("unknown-key", SECRET, "fuzzer", FUZZER_GRANT),
        mint(KEY, SECRET, "fuzzer", FUZZER_GRANT, ttl_s=-3600),  # expired
        jwt.encode(claims, key=None, algorithm="none"),
        hand_signed(claims, "HS384", "SHA384"),
        hand_signed(claims, "HS512", "SHA512"),
        jwt.encode(claims, ec_key, algorithm="ES256"),  # no JWKS configured
        hand_signed(claims, "RS256"),  # an HMAC signature under an RSA header
        jwt.encode({**claims, "nbf": now + 3600}, SECRET, algorithm="HS256"),  # not yet valid
        jwt.encode({k: v for k, v in claims.items() if k != "exp"}, SECRET, algorithm="HS256"),
        jwt.encode({k: v for k, v in claims.items() if k != "sub"}, SECRET, algorithm="HS256"),
        jwt.encode({**claims, "sub": "anonymous"}, SECRET, algorithm="HS256"),
        jwt.encode({**claims, "sub": "x" * 129}, SECRET, algorithm="HS256"),
        jwt.encode({**claims, "video": {"roomJoin": "yes"}}, SECRET, algorithm="HS256"),
        jwt.encode({**claims, "video": {"noSuchGrant": True}}, SECRET, algorithm="HS256"),
        mint(KEY, SECRET, "fuzzer", FUZZER_GRANT)[:-3] + "AAA",  # a changed signature
        "a" * 9000,  # over auth.max_token_bytes
        "e30.e30.",
        "not.a.token",
        "....",
    ]


def hand_signed(claims: dict[str, Any], alg: str = "HS256", digest: str = "SHA256") -> str:
    """A JWS over ``claims`` signed with SECRET by HMAC-``digest``, whatever ``alg`` says.

    Made by hand: PyJWT refuses to write a header that lies, and json.dumps cannot write
    Big literals.
    """
    utils, algorithms = jwt.utils, jwt.algorithms
    header = utils.base64url_encode(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = utils.base64url_encode(render(claims).encode())
    signing_input = header + b"." + payload
    hmac = algorithms.HMACAlgorithm(getattr(algorithms.HMACAlgorithm, digest))
    signature = hmac.sign(signing_input, SECRET.encode())
    return (signing_input + b"." + utils.base64url_encode(signature)).decode()


def signed(overrides: dict[str, Any], grant_overrides: dict[str, Any]) -> str:
    """A token signed with the right key whose claims may be anything at all."""
    now = int(time.time())
    claims: dict[str, Any] = {"iss": KEY, "sub": "fuzzer", "nbf": now, "exp": now + 600}
    claims["video"] = {**FUZZER_GRANT, **grant_overrides}
    claims.update(overrides)
    return hand_signed(claims)


# Claims are numbers more often than not: exp, nbf and iat are where verifiers break.
numbers = weighted(
    # Past what a float holds, or not a number: exp, nbf and iat are compared as numbers.
    (2, st.sampled_from([10**400, -(10**400), math.inf, -math.inf, math.nan, 1e308])),
    (1, st.sampled_from([*HUGE_INTS, -1, 0, 0.5])),
    (1, st.integers()),
    (1, st.floats(allow_nan=True, allow_infinity=True)),
)
claim_values = weighted((1, json_values), (1, numbers))
GRANT_KEYS = ["roomJoin", "room", "canPublish", "canSubscribe", "canPublishSources", "admin", "x"]
CLAIM_KEYS = ["sub", "exp", "nbf", "iat", "aud", "name", "iss", "video", "jti"]
signed_specs = st.tuples(
    st.just("signed"),
    weighted(
        (1, st.dictionaries(st.sampled_from(CLAIM_KEYS), claim_values, max_size=3)),
        (1, st.dictionaries(st.sampled_from(["exp", "nbf", "iat"]), numbers, min_size=1)),
    ),
    st.dictionaries(st.sampled_from(GRANT_KEYS), claim_values, max_size=2),
)
# ("none",) / ("valid",) / ("owner",): no header, the fuzzer's token, the live session
# owner's; ("refused", i), ("raw", text), ("bearer", text): must be refused with auth on;
# ("signed", claims, grants): signed with the right key, may be accepted or not.
auth_specs = st.one_of(
    st.sampled_from([("none",), ("valid",), ("valid",), ("owner",)]),
    st.tuples(st.just("refused"), st.integers(0, 19)),
    st.tuples(st.just("raw"), header_text),
    st.tuples(st.just("bearer"), header_text),
    st.sampled_from(
        [("raw", "bearer"), ("raw", "Bearer"), ("raw", "Bearer  "), ("raw", "Basic dXNlcg==")]
    ),
    signed_specs,
)


def must_refuse(auth: tuple[Any, ...]) -> bool:
    return auth[0] in ("none", "refused", "raw", "bearer")


# -- the gateway under fuzz -----------------------------------------------------------------


@dataclass
class Stage:
    gateway: RunningGateway
    secure: bool
    offers: Offers
    publisher: Publisher
    viewer: Viewer  # a live session resource, PATCHed by the fuzz
    viewer_ufrag: str
    tokens: dict[str, str | None]  # "valid" (the fuzzer's), "owner" (the viewer's)
    refused: list[str]
    baseline: tuple[int, int] = (0, 0)
    cases: dict[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:  # in hypothesis' reports: which gateway, not its state
        return f"Stage(secure={self.secure})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' printer
        printer.text(repr(self))

    def authorization(self, auth: tuple[Any, ...]) -> dict[str, str]:
        kind = auth[0]
        if kind in ("valid", "owner"):
            value = self.tokens[kind]
            return {} if value is None else {"Authorization": f"Bearer {value}"}
        if kind == "refused":
            return {"Authorization": "Bearer " + self.refused[auth[1] % len(self.refused)]}
        if kind == "raw":
            return {"Authorization": auth[1]}
        if kind == "bearer":
            return {"Authorization": "Bearer " + auth[1]}
        if kind == "signed":
            return {"Authorization": "Bearer " + signed(auth[1], auth[2])}
        return {}

    def token(self, auth: tuple[Any, ...]) -> str:
        """The same choices as a bare token (a WebSocket `auth` message)."""
        header = self.authorization(auth).get("Authorization", "")
        return header.removeprefix("Bearer ")

    def count(self, test: str) -> None:
        self.cases[test] = self.cases.get(test, 0) + 1


def fuzz_config(secure: bool, recordings: Path) -> Config:
    config = secure_config() if secure else loopback_config()
    config.recording.directory = str(recordings)
    # The fuzz sends far faster than any one client may; the limits have their own tests
    # (test_abuse_limits), and here they would turn most cases into 429s.
    limits = config.limits
    limits.sessions_per_ip_per_s = limits.sessions_per_identity_per_s = 10_000.0
    limits.sessions_per_ip_burst = limits.sessions_per_identity_burst = 10_000
    limits.ws_messages_per_s, limits.ws_messages_burst = 10_000.0, 10_000
    limits.max_sockets_per_ip = 256
    return config


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["auth-off", "auth-on"])
async def stage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stage]:
    secure = request.param == "auth-on"
    config = fuzz_config(secure, tmp_path_factory.mktemp("recordings"))
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.server.port).start()
    tokens: dict[str, str | None] = {"valid": None, "owner": None, "publisher": None}
    if secure:
        tokens = {
            "valid": mint(KEY, SECRET, "fuzzer", FUZZER_GRANT),
            "owner": mint(KEY, SECRET, "live-viewer", {"roomJoin": True, "room": LIVE}),
            "publisher": mint(KEY, SECRET, "live-publisher", {"roomJoin": True, "room": LIVE}),
        }
    async with aiohttp.ClientSession() as http:
        gateway = RunningGateway(f"http://127.0.0.1:{config.server.port}", app, http, config)
        offers = await make_offers()
        publisher = await whip_publish(
            http,
            gateway.base,
            LIVE,
            [NumberedVideoTrack(320, 240), ToneTrack()],
            token=tokens["publisher"],
        )
        viewer = await whep_watch(http, gateway.base, LIVE, token=tokens["owner"])
        await wait_for(lambda: len(viewer.received.numbers) > 5)
        ufrag = next(
            line.split(":", 1)[1]
            for line in viewer.pc.localDescription.sdp.splitlines()
            if line.startswith("a=ice-ufrag:")
        )
        stage = Stage(gateway, secure, offers, publisher, viewer, ufrag, tokens, refused_tokens())
        await asyncio.sleep(0.5)
        stage.baseline = census()
        yield stage
        await viewer.close(http, gateway.base)
        await publisher.close(http, gateway.base)
        await wait_for(lambda: not gateway.registry.sessions and not gateway.registry.rooms)
    await runner.cleanup()


def live_ids(stage: Stage) -> set[str]:
    return {stage.publisher.location.rsplit("/", 1)[1], stage.viewer.location.rsplit("/", 1)[1]}


async def call(
    stage: Stage,
    method: str,
    path: str,
    body: bytes,
    content_type: str | None,
    headers: dict[str, str],
) -> tuple[int, bytes, aiohttp.ClientResponse]:
    """One request: its status, its raw body and the response."""
    all_headers = dict(headers)
    skip: list[str] = []
    if content_type is None:
        skip.append("Content-Type")
    else:
        all_headers["Content-Type"] = content_type
    async with stage.gateway.http.request(
        method,
        stage.gateway.base + path,
        data=body,
        headers=all_headers,
        skip_auto_headers=skip,
    ) as response:
        raw = await response.read()
    return response.status, raw, response


def check_response(status: int, raw: bytes, response: aiohttp.ClientResponse, case: Any) -> Any:
    """No 5xx, and every refusal is a JSON body naming its error; returns that body."""
    assert status < 500, (status, raw[:500], case)
    if status < 400:
        return None
    if status == 400 and response.content_type == "text/plain" and raw.startswith(b"Got more"):
        # aiohttp's HTTP parser refuses header lines over 8190 bytes before any handler
        # (or middleware) runs: the gateway never sees them, and cannot answer in JSON.
        return HEADER_TOO_LONG
    assert response.content_type == "application/json", (status, raw[:500], case)
    body = json.loads(raw)
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("message"), str), body
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer "), case
    return body


def check_refused(stage: Stage, auth: tuple[Any, ...], status: int, body: Any, case: Any) -> None:
    """With auth on, a request without a good token gets 401, unless its path names no
    route (the router's 404 or 405, before any handler)."""
    if stage.secure and must_refuse(auth) and body != HEADER_TOO_LONG:
        assert status in (401, 404, 405), (status, body, case)
        assert status == 401 or body["error"] in ("not-found", "method-not-allowed"), case


content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            SDP_TYPE,
            SDP_TYPE,
            SDP_TYPE,
            "APPLICATION/SDP",
            "application/sdp; charset=utf-8",
            "application/sdp;;;",
            TRICKLE_TYPE,
            "text/plain",
            "application/json",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            "",
            ";",
        ]
    ),
    header_text,
)
bodies = st.one_of(
    sdp_specs,
    sdp_specs,
    st.binary(max_size=2000),
    st.text(max_size=2000).map(str.encode),
    st.sampled_from([b"", b"v=0", b"v=0\r\n", b"\xff\xfe", b"v=0\r\n" + b"a=x\r\n" * 5000]),
)


def body_bytes(stage: Stage, body: Any, fit: str) -> bytes:
    return stage.offers.build(body, fit).encode() if isinstance(body, SdpSpec) else bytes(body)


# -- WHIP and WHEP offers --------------------------------------------------------------------


async def post_offer(
    stage: Stage,
    kind: str,
    room: str,
    data: bytes,
    content_type: str | None,
    auth: tuple[Any, ...],
    pipeline: str | None,
    case: Any,
) -> int:
    """POST an offer; a session it makes is checked and deleted at once."""
    query = "" if pipeline is None else "?pipeline=" + quote(pipeline, safe="")
    headers = stage.authorization(auth)
    path = f"/{kind}/{quote(room, safe='')}{query}"
    status, raw, response = await call(stage, "POST", path, data, content_type, headers)
    error = check_response(status, raw, response, case)
    event(f"{status} {error['error'] if error else ''}")
    check_refused(stage, auth, status, error, case)
    if status == 201:
        # A real session: its answer is SDP, its resource is where the Location says.
        assert response.content_type == SDP_TYPE and raw.startswith(b"v=0"), case
        location = response.headers["Location"]
        session = location.rsplit("/", 1)[1]
        assert session in stage.gateway.registry.sessions
        status, raw, response = await call(stage, "DELETE", location, b"", None, headers)
        assert status == 200, (status, raw, case)
        assert session not in stage.gateway.registry.sessions
    else:
        assert status >= 400, (status, case)
    return status


# WHIP mostly where nobody publishes yet, WHEP mostly where somebody does.
targets = st.sampled_from(["whip", "whep"]).flatmap(
    lambda kind: st.tuples(
        st.just(kind),
        weighted(
            (6, st.just(LIVE if kind == "whep" else "fz-0")), (2, good_rooms), (1, room_names)
        ),
    )
)


@settings(FUZZ, max_examples=600)
@given(
    target=targets,
    offer=sdp_specs,
    pipeline=weighted((6, st.none()), (1, st.sampled_from(["gray", ""]) | st.text(max_size=20))),
)
async def test_mutated_sdp_offers(
    stage: Stage, target: tuple[str, str], offer: SdpSpec, pipeline: str | None
) -> None:
    """Real offers, changed: with the right Content-Type and token, so the SDP is what
    the gateway has to cope with."""
    stage.count("sdp")
    kind, room = target
    data = stage.offers.build(offer, "publish" if kind == "whip" else "watch").encode()
    await post_offer(stage, kind, room, data, SDP_TYPE, ("valid",), pipeline, (kind, room, offer))


@settings(FUZZ, max_examples=500)
@given(
    kind=st.sampled_from(["whip", "whep"]),
    room=room_names,
    body=bodies,
    content_type=weighted((3, st.just(SDP_TYPE)), (2, content_types)),
    auth=weighted((2, st.just(("valid",))), (3, auth_specs)),
    pipeline=weighted((4, st.none()), (1, st.sampled_from(["gray", ""]) | st.text(max_size=20))),
)
async def test_whip_and_whep_requests(
    stage: Stage,
    kind: str,
    room: str,
    body: Any,
    content_type: str | None,
    auth: tuple[Any, ...],
    pipeline: str | None,
) -> None:
    """Any body, Content-Type and Authorization: with auth on, nothing without a good
    token gets further than a 401."""
    stage.count("offers")
    data = body_bytes(stage, body, "publish" if kind == "whip" else "watch")
    case = (kind, room, body, content_type, auth, pipeline)
    await post_offer(stage, kind, room, data, content_type, auth, pipeline, case)


@settings(FUZZ, max_examples=400)
@given(
    auth=weighted((1, auth_specs), (3, signed_specs)),
    route=st.sampled_from(
        [("GET", "/api/rooms"), ("GET", f"/api/rooms/{LIVE}"), ("OPTIONS", "/whip/fz-0")]
    ),
)
async def test_access_tokens(stage: Stage, auth: tuple[Any, ...], route: tuple[str, str]) -> None:
    """Any Authorization header, mostly tokens signed with the right key whose claims are
    anything: refused with a 401 or taken, never a failure."""
    stage.count("tokens")
    method, path = route
    status, raw, response = await call(stage, method, path, b"", None, stage.authorization(auth))
    error = check_response(status, raw, response, (auth, route))
    event(f"{status} {error['error'] if error else ''}")
    if method != "OPTIONS" or auth != ("none",):  # CORS preflights carry no token
        check_refused(stage, auth, status, error, (auth, route))


# -- trickle ICE PATCHes ----------------------------------------------------------------------

frag_lines = st.one_of(
    st.sampled_from(
        [
            ("ufrag", True),
            ("ufrag", False),
            ("a=ice-pwd:0123456789abcdef0123456789",),
            ("m=audio 9 UDP/TLS/RTP/SAVPF 0",),
            ("m=video 9 UDP/TLS/RTP/SAVPF 96",),
            ("a=mid:0",),
            ("a=mid:1",),
            ("a=mid:\u2603",),
            ("a=end-of-candidates",),
            ("a=candidate:",),
            ("",),
        ]
    ),
    st.tuples(st.just("candidate"), candidate_fields),
    st.tuples(st.text(max_size=60)),
)
frag_bodies = st.one_of(
    st.tuples(
        st.lists(frag_lines, max_size=12),
        st.sampled_from(["\r\n", "\n", "\r"]),
    ),
    st.tuples(st.just("many"), st.integers(30, 40)),
    st.binary(max_size=500),
    st.text(max_size=500).map(str.encode),
)


def fragment(stage: Stage, body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if body[0] == "many":
        return "".join(
            f"a=candidate:{k} 1 udp {k + 1} 127.0.0.1 {k + 9} typ host\r\n" for k in range(body[1])
        ).encode()
    lines, newline = body
    out = []
    for line in lines:
        if line[0] == "ufrag":
            out.append("a=ice-ufrag:" + (stage.viewer_ufrag if line[1] else "other"))
        elif line[0] == "candidate":
            out.append("a=" + candidate_line(line[1]))
        else:
            out.append(line[0])
    return (newline.join(out) + newline).encode()


@settings(FUZZ, max_examples=400)
@given(
    target=weighted(
        (6, st.just("live")),
        (1, st.sampled_from(["live-as-whip", "live-other-room"])),
        (1, st.tuples(st.sampled_from(["whip", "whep"]), room_names, st.text(max_size=40))),
    ),
    body=frag_bodies,
    content_type=weighted((4, st.just(TRICKLE_TYPE)), (1, content_types)),
    if_match=weighted(
        (6, st.none()), (1, st.sampled_from(["*", "etag", '"nope"', ""])), (1, header_text)
    ),
    auth=weighted((4, st.just(("owner",))), (1, auth_specs)),
)
async def test_trickle_patches(
    stage: Stage,
    target: Any,
    body: Any,
    content_type: str,
    if_match: str | None,
    auth: tuple[Any, ...],
) -> None:
    stage.count("patches")
    case = (target, body, content_type, if_match, auth)
    session = stage.viewer.location.rsplit("/", 1)[1]
    if target == "live":
        path = stage.viewer.location
    elif target == "live-as-whip":
        path = f"/whip/{LIVE}/{session}"
    elif target == "live-other-room":
        path = f"/whep/fz-0/{session}"
    else:
        path = f"/{target[0]}/{quote(target[1], safe='')}/{quote(target[2], safe='')}"
    headers = stage.authorization(auth)
    if if_match is not None:
        headers["If-Match"] = f'"{session}"' if if_match == "etag" else if_match
    status, raw, response = await call(
        stage, "PATCH", path, fragment(stage, body), content_type, headers
    )
    error = check_response(status, raw, response, case)
    event(f"{status} {error['error'] if error else ''}")
    check_refused(stage, auth, status, error, case)
    if status < 400:
        assert status == 204 and raw == b"", (status, raw, case)
        assert target == "live", case  # only the real resource takes a trickle


# -- JSON bodies of the HTTP API --------------------------------------------------------------

json_texts = st.one_of(
    json_values.map(render),
    st.dictionaries(
        st.sampled_from(["pipeline", "stage", "params", "enable", "mid"]), json_values, max_size=4
    ).map(render),
    st.integers(10, 30_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(10, 30_000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
    st.text(max_size=200),
)


@settings(FUZZ, max_examples=200)
@given(
    route=st.sampled_from(["pipeline-live", "pipeline-other", "rendition"]),
    body=json_texts,
    content_type=weighted((4, st.just("application/json")), (1, content_types)),
    auth=weighted((4, st.just(("owner",))), (1, auth_specs)),
    name=st.text(max_size=30),
)
async def test_json_bodies(
    stage: Stage, route: str, body: str, content_type: str | None, auth: tuple[Any, ...], name: str
) -> None:
    stage.count("json")
    case = (route, body[:200], content_type, auth, name)
    session = stage.viewer.location.rsplit("/", 1)[1]
    if route == "pipeline-live":
        method, path = "PUT", f"/api/sessions/{session}/pipeline"
    elif route == "pipeline-other":
        method, path = "PUT", f"/api/sessions/{quote(name, safe='')}/pipeline"
    else:
        method, path = "PATCH", f"/api/renditions/{quote(name, safe='')}"
    headers = stage.authorization(auth)
    status, raw, response = await call(stage, method, path, body.encode(), content_type, headers)
    error = check_response(status, raw, response, case)
    event(f"{status} {error['error'] if error else ''}")
    check_refused(stage, auth, status, error, case)


# -- WebSocket messages ----------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A value the socket learns while the case runs (its session id, say)."""

    name: str


MISSING = object()
ws_field_values: dict[str, st.SearchStrategy[Any]] = {
    "room": room_names,
    "sdp": weighted((4, sdp_specs), (1, st.text(max_size=100))),
    "session": st.sampled_from([Ref("session"), Ref("session"), "0" * 32]) | st.text(max_size=40),
    "token": auth_specs,
    "name": st.sampled_from(["fuzzer", "x" * 64, "x" * 65, "", "\x00"]) | st.text(max_size=70),
    "track": st.just(Ref("track")) | st.text(max_size=40),
    "text": st.text(max_size=300),
    "to": st.just(Ref("participant")) | st.text(max_size=40),
    "muted": st.booleans(),
    "rendition": st.text(max_size=20),
    "stage": st.text(max_size=20),
}
mid_maps = st.dictionaries(
    st.sampled_from(["0", "1", "2", "x"]),
    st.sampled_from(["camera", "microphone", "screen", Ref("track")]) | st.text(max_size=10),
    max_size=3,
)
candidate_objects = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"candidate": candidate_fields.map(candidate_line)},
        optional={
            "sdpMid": st.sampled_from(["0", "1", "x"]) | st.none() | json_values,
            "sdpMLineIndex": st.integers(-5, 5) | st.sampled_from(HUGE_INTS) | json_values,
        },
    ),
    json_values,
)
ws_optional: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "candidate": {"candidate": candidate_objects},
    "publish": {"pipeline": st.none() | st.text(max_size=10) | json_values},
    "subscribe": {"pipeline": st.none() | st.sampled_from(["gray"]) | json_values},
    "join": {"mode": st.sampled_from(["sfu", "p2p", "mesh"]) | json_values},
    "offer": {"publish": mid_maps | json_values, "subscribe": mid_maps, "pipelines": mid_maps},
    "chat": {"to": st.just(Ref("participant")) | json_values},
    "signal": {"data": json_values},
    "pipeline": {"pipeline": st.none() | json_values, "session": json_values, "mid": json_values},
    "pipeline-update": {"params": json_values, "enable": json_values},
    "record-start": {"pipeline": st.none() | json_values},
}


def wrong_type(expected: type | tuple[type, ...]) -> st.SearchStrategy[Any]:
    others: st.SearchStrategy[Any] = st.one_of(
        st.just(MISSING),
        st.none(),
        st.integers(),
        st.floats(allow_nan=True),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
    return others | st.text(max_size=10) if expected is bool else others | st.booleans()


@dataclass(frozen=True)
class WsMessage:
    """What to send, and whether the protocol says it must be refused."""

    fields: dict[str, Any] | None  # None: ``raw`` is sent as it is
    raw: str | bytes = ""
    refused: bool = False
    id_mode: str = "int"  # "int", "str", "none" or "bad" (the id itself is wrong)


@st.composite
def typed_messages(draw: st.DrawFn) -> WsMessage:
    known = sorted(WS_SCHEMA)
    kind: Any = draw(
        weighted(
            (12, st.sampled_from(known)),
            (1, st.text(max_size=12).filter(lambda t: t not in WS_SCHEMA)),
            (1, st.sampled_from([None, 5, True, ["ping"], {"t": 1}])),
        )
    )
    refused = not isinstance(kind, str) or kind not in WS_SCHEMA
    fields: dict[str, Any] = {} if draw(st.integers(0, 20)) == 0 else {"type": kind}
    refused = refused or "type" not in fields
    for key, expected in (WS_SCHEMA.get(kind, {}) if isinstance(kind, str) else {}).items():
        if draw(st.integers(0, 7)) == 0:  # mistyped or missing
            value = draw(wrong_type(expected))
            if value is not MISSING:
                fields[key] = value
            refused = True
        else:
            fields[key] = draw(ws_field_values.get(key, st.text(max_size=20)))
    for key, strategy in (ws_optional.get(kind, {}) if isinstance(kind, str) else {}).items():
        if draw(st.booleans()):
            fields[key] = draw(strategy)
    reserved = {"type", "id", *ws_field_values, *(k for o in ws_optional.values() for k in o)}
    extra = draw(
        st.dictionaries(
            st.text(max_size=8).filter(lambda k: k not in reserved), json_values, max_size=2
        )
    )
    id_mode = draw(st.sampled_from(["int", "int", "int", "str", "str", "none", "bad"]))
    if id_mode == "bad":
        fields["id"] = draw(st.sampled_from([1.5, True, False, [1], {"id": 1}, 1e400]))
    return WsMessage({**fields, **extra}, refused=refused or id_mode == "bad", id_mode=id_mode)


raw_messages = st.one_of(
    st.text(max_size=200)
    .filter(lambda t: not t.strip().startswith("{"))
    .map(lambda t: WsMessage(None, t, refused=True)),
    st.binary(max_size=100).map(lambda b: WsMessage(None, b, refused=True)),
    st.sampled_from(["[", "{", '{"a":']).flatmap(
        lambda opener: st.integers(100, 12_000).map(
            lambda n: WsMessage(None, opener * n, refused=True)
        )
    ),
    st.integers(10, 30_000).map(lambda n: WsMessage(None, "[" * n + "]" * n, refused=True)),
    json_values.filter(lambda v: not isinstance(v, dict)).map(
        lambda v: WsMessage(None, render(v), refused=True)
    ),
    # A huge literal where an object is expected: not a message, whatever its size.
    st.sampled_from([20, 4300, 4301, 6000]).map(
        lambda n: WsMessage(None, '{"type": "ping", "id": ' + "9" * n + "}", id_mode="none")
    ),
)
ws_cases = st.tuples(
    st.sampled_from([True, True, True, False]),  # auth on: a token in the URL
    st.booleans(),  # start with a join
    st.lists(weighted((4, typed_messages()), (1, raw_messages)), min_size=1, max_size=6),
)


class Socket:
    """One fuzzed socket: sends a message, then a ping, and keeps what came in between."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, limit: int) -> None:
        self.ws = ws
        self.limit = limit  # server.max_body_bytes
        self.learned: dict[str, Any] = {}
        self.next_id = 0

    async def receive(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=20)
        assert msg.type == aiohttp.WSMsgType.TEXT, (msg, self.ws.close_code)
        message = json.loads(msg.data)
        assert isinstance(message, dict) and isinstance(message.get("type"), str), message
        if message["type"] == "error":
            assert isinstance(message.get("code"), str) and message["code"], message
            assert isinstance(message.get("message"), str), message
            assert message["code"] != "internal-error", message
        for key in ("session", "participant", "resume_token"):
            if message["type"] in ("answer", "joined", "resumed") and isinstance(
                message.get(key), str
            ):
                self.learned[key] = message[key]
        track = message.get("track")
        if isinstance(track, dict) and isinstance(track.get("id"), str):
            self.learned["track"] = track["id"]
        return message

    async def exchange(self, data: str | bytes) -> list[dict[str, Any]]:
        """Send ``data``; what arrived before the pong that follows it (the socket
        handles messages in order, so every reply to ``data`` comes before).

        A message over server.max_body_bytes closes the socket with 1009, as documented
        (docs/protocol.md): then no replies, and the socket is closed.
        """
        too_big = len(data if isinstance(data, bytes) else data.encode()) > self.limit
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)
        if too_big:
            while (msg := await self.ws.receive(timeout=20)).type == aiohttp.WSMsgType.TEXT:
                pass  # replies to what came before it
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
            assert self.ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
            event("closed: message too big")
            return []
        self.next_id += 1
        sentinel = f"sentinel-{self.next_id}"
        await self.ws.send_str(json.dumps({"type": "ping", "id": sentinel}))
        replies = []
        while (message := await self.receive()) != {"type": "pong", "id": sentinel}:
            replies.append(message)
        return replies

    def resolve(self, value: Any, stage: Stage, fit: str) -> Any:
        if isinstance(value, Ref):
            return self.learned.get(value.name, f"no-{value.name}-yet")
        if isinstance(value, SdpSpec):
            return stage.offers.build(value, fit)
        if isinstance(value, tuple):  # an auth spec
            return stage.token(value)
        if isinstance(value, dict):
            return {k: self.resolve(v, stage, fit) for k, v in value.items()}
        return value


@settings(FUZZ, max_examples=400)
@given(case=ws_cases)
async def test_websocket_messages(stage: Stage, case: tuple[bool, bool, list[WsMessage]]) -> None:
    stage.count("ws")
    in_url, join_first, messages = case
    url = stage.gateway.base.replace("http", "ws", 1) + "/ws"
    if stage.secure and in_url:
        url += "?access_token=" + str(stage.tokens["valid"])
    ws = await stage.gateway.http.ws_connect(url)
    try:
        socket = Socket(ws, stage.gateway.config.server.max_body_bytes)
        hello = await socket.receive()
        assert hello["type"] == "hello" and hello["auth_required"] is (stage.secure and not in_url)
        if join_first:
            await socket.exchange(json.dumps({"type": "join", "room": "fz-ws", "name": "fuzzer"}))
        for message in messages:
            await send_fuzzed(stage, socket, message)
            if ws.closed:
                return  # a message too big: the one error that ends a socket
        # Whatever came before, the socket still answers, in order.
        await socket.exchange(json.dumps({"type": "ping", "id": "last"}))
        assert not ws.closed
    finally:
        await ws.close()


publish_maps = weighted(
    (4, st.sampled_from([{"0": "camera", "1": "microphone"}, {"0": "camera"}, {}])),
    (1, mid_maps),
)
ws_negotiations = st.lists(
    st.tuples(
        st.sampled_from(["offer", "offer", "publish", "subscribe"]),
        sdp_specs,
        publish_maps,
        st.sampled_from([{}, {"1": "no-such-track"}]),
    ),
    min_size=1,
    max_size=3,
)


@settings(FUZZ, max_examples=150)
@given(negotiations=ws_negotiations)
async def test_websocket_negotiations(
    stage: Stage, negotiations: list[tuple[str, SdpSpec, dict[str, Any], dict[str, str]]]
) -> None:
    """A joined participant's offers (and plain publish/subscribe) with changed SDP: each
    gets its answer or an error, with its id, and the socket carries on."""
    stage.count("ws-sdp")
    url = stage.gateway.base.replace("http", "ws", 1) + "/ws"
    if stage.secure:
        url += "?access_token=" + str(stage.tokens["valid"])
    ws = await stage.gateway.http.ws_connect(url)
    try:
        socket = Socket(ws, stage.gateway.config.server.max_body_bytes)
        assert (await socket.receive())["type"] == "hello"
        joined = await socket.exchange(json.dumps({"type": "join", "room": "fz-ws", "name": "f"}))
        assert [m["type"] for m in joined if m["type"] in ("joined", "error")] == ["joined"], joined
        participant = socket.learned["session"]
        for number, (kind, offer, publish, subscribe) in enumerate(negotiations):
            fit = "watch" if kind == "subscribe" else "publish"
            message: dict[str, Any] = {
                "type": kind,
                "id": number,
                "sdp": stage.offers.build(offer, fit),
            }
            if kind == "offer":
                message.update(
                    publish=socket.resolve(publish, stage, fit),
                    subscribe=socket.resolve(subscribe, stage, fit),
                )
            else:
                message["room"] = LIVE if kind == "subscribe" else "fz-ws-publish"
            replies = await socket.exchange(json.dumps(message))
            if ws.closed:
                return  # too big (see Socket.exchange)
            mine = [r for r in replies if r.get("id") == number]
            assert len(mine) == 1 and mine[0]["type"] in ("answer", "error"), (message, replies)
            event(f"{kind} {mine[0]['type']} {mine[0].get('code', '')}")
            if mine[0]["type"] == "answer":
                assert mine[0]["sdp"].startswith("v=0"), mine
        left = await socket.exchange(json.dumps({"type": "leave", "session": participant}))
        assert not [m for m in left if m["type"] == "error"], left
    finally:
        await ws.close()


def parses(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


async def send_fuzzed(stage: Stage, socket: Socket, message: WsMessage) -> None:
    if message.fields is None:
        replies = await socket.exchange(message.raw)
        request_id = None
    else:
        fields = dict(message.fields)
        kind = fields.get("type")
        fit = "watch" if kind == "subscribe" else "publish"
        if kind == "resume" and fields.get("token") == ("valid",):
            fields["token"] = Ref("resume_token")
        fields = socket.resolve(fields, stage, fit)
        request_id = None
        if message.id_mode in ("int", "str"):
            socket.next_id += 1
            request_id = socket.next_id if message.id_mode == "int" else f"r{socket.next_id}"
            fields["id"] = request_id
        text = render(fields)
        replies = await socket.exchange(text)
        if not parses(text):
            request_id = None  # nobody can read the id of what is not JSON
    if socket.ws.closed:
        return
    if message.refused:
        errors = [r for r in replies if r["type"] == "error"]
        assert errors, (message, replies)
        if request_id is not None:
            assert any(e.get("id") == request_id for e in errors), (message, replies)
    for reply in replies:
        event(f"{reply['type']} {reply.get('code', '')}")


# -- afterwards -------------------------------------------------------------------------------


async def test_the_gateway_is_whole_after_the_fuzz(stage: Stage) -> None:
    gateway = stage.gateway
    assert sum(stage.cases.values()) >= 1000, stage.cases  # the fuzz above did run
    async with gateway.http.get(f"{gateway.base}/healthz") as response:
        assert response.status == 200
    # Nothing the fuzz opened is left: only the live publisher and viewer, in the live room.
    await wait_for(lambda: set(gateway.registry.sessions) == live_ids(stage), timeout=30)
    await wait_for(lambda: set(gateway.registry.rooms) == {LIVE}, timeout=30)
    room = gateway.registry.rooms[LIVE]
    assert len(room.subscribers) == 1
    # The live stream went on through it all, and still does.
    before = len(stage.viewer.received.numbers)
    await wait_for(lambda: len(stage.viewer.received.numbers) > before + 10)
    numbers = stage.viewer.received.numbers
    assert numbers[-1] > numbers[0] + 100
    # A `record-start` from the fuzz (auth off; the fuzzer's token has no roomRecord)
    # records on after its socket closed, as it should; stopping it ends the muxing
    # thread counted below.
    stop = await call(stage, "DELETE", f"/api/rooms/{LIVE}/recording", b"", None, {})
    assert stop[0] in (200, 401, 404), stop[:2]
    # Threads and tasks wind down asynchronously after sessions and sockets close.
    threads_before, tasks_before = stage.baseline

    def settled() -> bool:
        gc.collect()
        return census()[0] <= threads_before and census()[1] <= tasks_before

    await wait_for(settled, timeout=30, interval=0.2)
    assert census()[0] <= threads_before, threads()
