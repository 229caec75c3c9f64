"""Media through a real coturn relay: REST credentials minted by the gateway, relay-only ICE."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import pytest
from aioice import stun, turn
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError

from gateway.config import Config, IceServer
from gateway.signaling.turn import rest_credentials
from tests.conftest import RunningGateway
from tests.support.coturn import Coturn, start_coturn
from tests.support.media import NumberedVideoTrack, read_frame_number
from tests.support.peers import prefer, wait_for
from tests.support.signaling import WsClient
from tests.support.tokens import bearer, secure_config, token

TTL_S = 600
SDP = {"Content-Type": "application/sdp"}
_LINK = re.compile(r'^<([^>]+)>; rel="ice-server"(.*)$')
_PARAM = re.compile(r';\s*([a-z-]+)="([^"]*)"')


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    server = start_coturn(tmp_path / "coturn")
    yield server
    server.stop()


@pytest.fixture
def gateway_config(coturn: Coturn) -> Config:
    config = secure_config()
    config.ice.servers = [
        IceServer(urls=[coturn.stun_url]),
        IceServer(urls=[coturn.turn_url], secret=coturn.secret, ttl_s=TTL_S),
    ]
    config.ice.transport_policy = "relay"
    # Clients without a token may publish to public-* rooms: they get sessions, and must
    # still not get the relay's credentials.
    config.auth.anonymous = {"room": "public-*", "roomJoin": True, "canPublish": True}
    return config


@dataclass
class Link:
    url: str
    username: str | None
    credential: str | None


def parse_links(values: list[str]) -> list[Link]:
    links = []
    for value in values:
        match = _LINK.match(value)
        assert match is not None, value
        params = dict(_PARAM.findall(match.group(2)))
        links.append(Link(match.group(1), params.get("username"), params.get("credential")))
    return links


async def options_links(gateway: RunningGateway, path: str, token: str | None) -> list[Link]:
    headers = bearer(token) if token is not None else {}
    async with gateway.http.options(gateway.base + path, headers=headers) as response:
        assert response.status == 204
        return parse_links(response.headers.getall("Link", []))


def relay_peer(links: list[Link]) -> RTCPeerConnection:
    servers = [
        RTCIceServer(urls=x.url, username=x.username, credential=x.credential) for x in links
    ]
    return RTCPeerConnection(
        RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY)
    )


def candidate_types(sdp: str) -> list[str]:
    return re.findall(r"^a=candidate:\S+ \d \S+ \d+ \S+ \d+ typ (\S+)", sdp, re.MULTILINE)


def expiry_and_identity(username: str) -> tuple[int, str]:
    expiry, _, identity = username.partition(":")
    return int(expiry), identity


def selected_pair(pc: RTCPeerConnection) -> tuple[str, str, tuple[str, int], tuple[str, int]]:
    """(local type, remote type, local address, remote address) of the pair ICE nominated.

    aiortc has no getSelectedCandidatePair; the bundled transport's aioice connection
    holds the nominated pair of component 1 (RTP and RTCP are muxed).
    """
    ice_transport = pc.getTransceivers()[0].sender.transport.transport
    pair = ice_transport._connection._nominated[1]
    return (
        pair.local_candidate.type,
        pair.remote_candidate.type,
        pair.local_addr,
        pair.remote_addr,
    )


class _Allocation(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


async def allocate(coturn: Coturn, username: str, password: str) -> tuple[str, int]:
    """Ask coturn for a relay with these credentials, as aioice (aiortc's ICE) does;
    returns the relayed address and deletes the allocation again."""
    transport, protocol = await turn.create_turn_endpoint(
        _Allocation, ("127.0.0.1", coturn.port), username, password
    )
    relayed: tuple[str, int] = transport.get_extra_info("sockname")
    transport.close()
    await asyncio.wait_for(protocol.lost, 10)
    return relayed


async def refused(coturn: Coturn, username: str, password: str) -> int:
    """The STUN error code coturn answers an Allocate with these credentials with."""
    with pytest.raises(stun.TransactionFailed) as failure:
        await allocate(coturn, username, password)
    code: int = failure.value.response.attributes["ERROR-CODE"][0]
    return code


async def allocations(coturn: Coturn) -> list[str]:
    return await asyncio.to_thread(coturn.allocations)


async def test_media_flows_through_coturn_relays_only(
    gateway: RunningGateway, coturn: Coturn
) -> None:
    publisher_token = token("alice", room="cam", canPublish=True, canSubscribe=True)
    viewer_token = token("bob", room="cam", canPublish=True, canSubscribe=True)
    started = time.time()

    # The publisher learns its ICE servers as RFC 9725 says: OPTIONS with its token.
    links = await options_links(gateway, "/whip/cam", publisher_token)
    assert [x.url for x in links] == [coturn.stun_url, coturn.turn_url]
    turn_link = links[1]
    assert turn_link.username is not None and turn_link.credential is not None
    expiry, identity = expiry_and_identity(turn_link.username)
    assert identity == "alice"
    assert started + TTL_S - 5 <= expiry <= time.time() + TTL_S + 5

    video = NumberedVideoTrack(320, 240, fps=30)
    pub = relay_peer(links)
    viewer: RTCPeerConnection | None = None
    readers: list[asyncio.Task[None]] = []
    try:
        prefer(pub.addTransceiver(video, direction="sendonly"), "video", "VP8")
        await pub.setLocalDescription(await pub.createOffer())
        # Relay-only: the offer shows coturn's relayed address, never a local one.
        assert candidate_types(pub.localDescription.sdp) == ["relay"]
        async with gateway.http.post(
            gateway.base + "/whip/cam",
            data=pub.localDescription.sdp,
            headers={**SDP, **bearer(publisher_token)},
        ) as response:
            answer = await response.text()
            assert response.status == 201, answer
            post_links = parse_links(response.headers.getall("Link"))
        # The gateway's own peer connection is relay-only too (ice.transport_policy).
        assert candidate_types(answer) == ["relay"]
        post_turn = post_links[1]
        assert post_turn.username is not None
        assert expiry_and_identity(post_turn.username)[1] == "alice"
        await pub.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

        numbers: list[int] = []

        async def read(track: MediaStreamTrack) -> None:
            with contextlib.suppress(MediaStreamError):
                while True:
                    frame = await track.recv()
                    if isinstance(frame, av.VideoFrame):
                        number = read_frame_number(frame)
                        if number is not None:
                            numbers.append(number)

        viewer = relay_peer(await options_links(gateway, "/whep/cam", viewer_token))
        viewer.on("track", lambda track: readers.append(asyncio.ensure_future(read(track))))
        viewer.addTransceiver("video", direction="recvonly")
        await viewer.setLocalDescription(await viewer.createOffer())
        assert candidate_types(viewer.localDescription.sdp) == ["relay"]
        async with gateway.http.post(
            gateway.base + "/whep/cam",
            data=viewer.localDescription.sdp,
            headers={**SDP, **bearer(viewer_token)},
        ) as response:
            answer = await response.text()
            assert response.status == 201, answer
        assert candidate_types(answer) == ["relay"]
        await viewer.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

        await wait_for(lambda: len(numbers) >= 30, timeout=40)
        assert numbers == sorted(numbers), "frames out of order"
        assert len(set(numbers)) == len(numbers), "a frame arrived twice"
        assert numbers[-1] - numbers[0] >= 29

        # Both ends of both legs send through their own coturn allocation: each client's
        # nominated pair is relay -> relay, and the gateway's session sees the same pair
        # from the other side (its relayed address to the client's relayed address).
        sessions = {s.transport: s for s in gateway.registry.sessions.values()}
        assert set(sessions) == {"whip", "whep"}
        for client, kind in ((pub, "whip"), (viewer, "whep")):
            local_type, remote_type, local, remote = selected_pair(client)
            assert (local_type, remote_type) == ("relay", "relay"), kind
            g_local_type, g_remote_type, g_local, g_remote = selected_pair(sessions[kind].pc)
            assert (g_local_type, g_remote_type) == ("relay", "relay"), kind
            assert (g_local, g_remote) == (remote, local), kind

        # coturn itself saw allocations for the REST usernames "<expiry>:<identity>":
        # each client's and one of the gateway's per session.
        granted = [expiry_and_identity(u) for u in await allocations(coturn)]
        identities = [identity for _, identity in granted]
        assert identities.count("alice") >= 1 and identities.count("bob") >= 1, granted
        assert identities.count("gateway") >= 2, granted
        assert all(started + TTL_S - 5 <= e <= time.time() + TTL_S + 5 for e, _ in granted)
    finally:
        for task in readers:
            task.cancel()
        if viewer is not None:
            await viewer.close()
        await pub.close()


async def test_turn_credentials_go_only_to_token_holders(
    gateway: RunningGateway, coturn: Coturn
) -> None:
    # A CORS preflight carries no token, and gets no ICE servers at all.
    for path in ("/whip/cam", "/whep/cam", "/whip/public-cam"):
        assert await options_links(gateway, path, None) == [], path
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver(NumberedVideoTrack(320, 240), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        offer = pc.localDescription.sdp
        async with gateway.http.post(
            gateway.base + "/whip/cam", data=offer, headers=SDP
        ) as response:
            # Anonymous clients may publish only to public-* rooms: refused, nothing given.
            assert response.status == 403
            assert response.headers.getall("Link", []) == []
        # An anonymous publisher the policy lets in gets a session and the STUN server
        # (free to use), not the TURN relay (it costs bandwidth).
        async with gateway.http.post(
            gateway.base + "/whip/public-cam", data=offer, headers=SDP
        ) as response:
            assert response.status == 201, await response.text()
            links = parse_links(response.headers.getall("Link", []))
            location = response.headers["Location"]
        assert links == [Link(coturn.stun_url, None, None)]
        async with gateway.http.delete(gateway.base + location) as response:
            assert response.status == 200
    finally:
        await pc.close()

    # With one: per-identity credentials, in the Link headers and on the socket, that
    # coturn accepts.
    carol = token("carol", room="cam", canPublish=True, canSubscribe=True)
    links = await options_links(gateway, "/whep/cam", carol)
    assert links[0] == Link(coturn.stun_url, None, None)
    assert links[1].url == coturn.turn_url
    assert links[1].username is not None and links[1].credential is not None
    assert expiry_and_identity(links[1].username)[1] == "carol"
    relayed = await allocate(coturn, links[1].username, links[1].credential)
    assert relayed[0] == "127.0.0.1"

    client = await WsClient.connect(gateway.http, gateway.base)
    try:
        # The hello, to a client still anonymous: STUN, no relay.
        assert client.events[0]["ice_servers"] == [{"urls": [coturn.stun_url]}]
        await client.send({"type": "auth", "token": carol})
        reply = await client.next("authenticated", "error")
    finally:
        await client.close()
    assert reply["type"] == "authenticated", reply
    stun_entry, turn_entry = reply["ice_servers"]
    assert stun_entry == {"urls": [coturn.stun_url]}
    assert turn_entry["urls"] == [coturn.turn_url]
    assert expiry_and_identity(turn_entry["username"])[1] == "carol"
    await allocate(coturn, turn_entry["username"], turn_entry["credential"])
    # coturn granted carol's two, and the gateway's own for the anonymous session; no
    # allocation ever had an anonymous client's name.
    granted = [expiry_and_identity(u)[1] for u in await allocations(coturn)]
    assert sorted(granted) == ["carol", "carol", "gateway"]


async def test_coturn_refuses_credentials_not_made_with_its_secret(
    gateway: RunningGateway, coturn: Coturn
) -> None:
    dave = token("dave", room="cam", canPublish=True, canSubscribe=True)
    links = await options_links(gateway, "/whip/cam", dave)
    good = links[1]
    assert good.username is not None and good.credential is not None
    expiry, _ = expiry_and_identity(good.username)

    # Another secret: a TURN server that is not ours, or a guessed secret.
    forged = rest_credentials("not the coturn secret at all", "dave", TTL_S)
    assert await refused(coturn, *forged) == 401
    # The identity is bound into the HMAC: dave's password does not pass as anyone else.
    assert await refused(coturn, f"{expiry}:admin", good.credential) == 401
    # A password that is not the HMAC.
    assert await refused(coturn, good.username, "d3Jvbmc=") == 401
    # What an aiortc client with the forged credential gets: no relay, so no candidate
    # at all under the relay policy.
    pc = relay_peer([Link(coturn.turn_url, *forged)])
    try:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        assert candidate_types(pc.localDescription.sdp) == []
    finally:
        await pc.close()

    # The gateway's credential, to the same server, is accepted: the refusals above are
    # about the credentials, not the server.
    await allocate(coturn, good.username, good.credential)
    assert [expiry_and_identity(u)[1] for u in await allocations(coturn)] == ["dave"]


async def test_coturn_refuses_an_expired_username(coturn: Coturn) -> None:
    # Made with the right secret, but its expiry passed an hour ago.
    expired = rest_credentials(coturn.secret, "erin", TTL_S, now=time.time() - 3600)
    assert expiry_and_identity(expired[0])[0] < time.time()
    assert await refused(coturn, *expired) == 401
    fresh = rest_credentials(coturn.secret, "erin", TTL_S)
    await allocate(coturn, *fresh)
    assert await allocations(coturn) == [fresh[0]]


async def test_an_allocation_outlives_its_usernames_expiry(coturn: Coturn) -> None:
    """The gateway mints its own credentials once per session: coturn checks a username's
    expiry when the allocation is made, and keeps serving an allocation made in time, so a
    session that lasts longer than ice.servers[].ttl_s keeps its relay."""
    short = rest_credentials(coturn.secret, "frank", 2)
    server = ("127.0.0.1", coturn.port)
    a_transport, a = await turn.create_turn_endpoint(_Allocation, server, *short)
    b_transport, b = await turn.create_turn_endpoint(
        _Allocation, server, *rest_credentials(coturn.secret, "grace", TTL_S)
    )
    try:
        a_relay = a_transport.get_extra_info("sockname")
        b_relay = b_transport.get_extra_info("sockname")
        expiry = expiry_and_identity(short[0])[0]
        # coturn reads its clock from a once-a-second timer that lags under load, so give it
        # a few seconds past the expiry before expecting the refusal.
        await asyncio.sleep(max(0.0, expiry + 3 - time.time()))
        assert await refused(coturn, *short) == 401  # too late for a new allocation
        # Each send binds a channel first, a request signed with the expired username.
        deadline = time.monotonic() + 10
        while not (a.received and b.received) and time.monotonic() < deadline:
            a_transport.sendto(b"from frank", b_relay)
            b_transport.sendto(b"from grace", a_relay)
            await asyncio.sleep(0.1)
        assert set(b.received) == {b"from frank"}
        assert set(a.received) == {b"from grace"}
    finally:
        a_transport.close()
        b_transport.close()
        await asyncio.wait_for(asyncio.gather(a.lost, b.lost), 10)
