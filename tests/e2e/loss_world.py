"""Random UDP loss for Chromium through the gateway: a lo-only namespace, pages and meters.

The gateway (``python -m gateway``) and Chromium both run inside one network namespace
that has only ``lo`` (tests/support/netns.py); an iptables ``statistic`` rule on its INPUT
chain drops a share of every UDP datagram, so both legs (publisher -> gateway, gateway ->
viewer) lose packets, and a direct Chromium-to-Chromium connection in the same namespace
(the benchmark's baseline) loses them on its one leg. HTTP is TCP and loses nothing; pages
talk to the gateway themselves (this process cannot reach the namespace's 127.0.0.1).
Viewers count presented frames with requestVideoFrameCallback.
"""

from __future__ import annotations

import asyncio
import itertools
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from tests.conftest import free_port
from tests.support.gateway_process import GatewayProcess, start_gateway_process
from tests.support.netns import Namespace, network

from .conftest import CAMERA_HEIGHT, CAMERA_WIDTH, CHROMIUM, CHROMIUM_FLAGS
from .pages import GATHERED, open_page, wait_js

GATEWAY_CONFIG = """
ice:
  addresses: [127.0.0.1]
log:
  level: warning
"""

# Shared by every page: a frame meter on a <video> (presentation times, the last 20000),
# and a snapshot of the video inbound-rtp and outbound-rtp stats of a peer connection.
METER = """
window.meters = window.meters ?? {};
function meter(name, video) {
  const m = window.meters[name] = {times: []};
  const tick = (now) => {
    m.times.push(now);
    if (m.times.length > 20000) m.times.splice(0, 10000);
    video.requestVideoFrameCallback(tick);
  };
  video.requestVideoFrameCallback(tick);
}
function showTrack(pc, name) {
  const video = document.createElement("video");
  Object.assign(video, {muted: true, autoplay: true, playsInline: true});
  document.body.append(video);
  pc.ontrack = ({track}) => {
    video.srcObject ??= new MediaStream();
    video.srcObject.addTrack(track);
  };
  meter(name, video);
}
"""

CAMERA = """
async function camera(width, height, hint) {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: {width: {exact: width}, height: {exact: height}}, audio: false,
  });
  stream.getVideoTracks()[0].contentHint = hint;
  return stream;
}
"""

# Publishes the camera over WHIP (VP8): window.peers.publisher.
PUBLISH = (
    "async ({room, width, height, hint}) => {"
    + GATHERED
    + CAMERA
    + """
  const stream = await camera(width, height, hint);
  const pc = new RTCPeerConnection({iceServers: []});
  const transceiver = pc.addTransceiver(stream.getVideoTracks()[0],
                                        {direction: "sendonly", streams: [stream]});
  transceiver.setCodecPreferences(RTCRtpSender.getCapabilities("video").codecs.filter(
    (c) => ["video/vp8", "video/rtx"].includes(c.mimeType.toLowerCase())));
  const {location, answer} = await post(`/whip/${room}`, await gathered(pc));
  await pc.setRemoteDescription({type: "answer", sdp: answer});
  (window.peers ??= {}).publisher = pc;
  return location;
}"""
)

# Watches over WHEP: window.peers.viewer, frames in window.meters.viewer.
WATCH = (
    "async ({room}) => {"
    + GATHERED
    + METER
    + """
  const pc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver("video", {direction: "recvonly"});
  showTrack(pc, "viewer");
  const {location, answer} = await post(`/whep/${room}`, await gathered(pc));
  await pc.setRemoteDescription({type: "answer", sdp: answer});
  (window.peers ??= {}).viewer = pc;
  return location;
}"""
)

# The baseline: the camera sent from one peer connection to another in the same page,
# straight over the namespace's lo (one lossy leg): window.peers.direct (receiver) and
# window.peers.directSender, frames in window.meters.direct.
DIRECT = (
    "async ({width, height, hint}) => {"
    + METER
    + CAMERA
    + """
  const stream = await camera(width, height, hint);
  const sender = new RTCPeerConnection({iceServers: []});
  const receiver = new RTCPeerConnection({iceServers: []});
  const transceiver = sender.addTransceiver(stream.getVideoTracks()[0], {direction: "sendonly"});
  transceiver.setCodecPreferences(RTCRtpSender.getCapabilities("video").codecs.filter(
    (c) => ["video/vp8", "video/rtx"].includes(c.mimeType.toLowerCase())));
  showTrack(receiver, "direct");
  const complete = (pc) => pc.iceGatheringState === "complete" ? null : new Promise(
    (resolve) => pc.addEventListener("icegatheringstatechange",
      () => pc.iceGatheringState === "complete" && resolve()));
  await sender.setLocalDescription(await sender.createOffer());
  await complete(sender);
  await receiver.setRemoteDescription(sender.localDescription);
  await receiver.setLocalDescription(await receiver.createAnswer());
  await complete(receiver);
  await sender.setRemoteDescription(receiver.localDescription);
  Object.assign(window.peers ??= {}, {direct: receiver, directSender: sender});
}"""
)

# The numbers of one peer connection's video RTP stats (inbound or outbound).
RTP_STATS = """async ({peer, type}) => {
  for (const s of (await window.peers[peer].getStats()).values()) {
    if (s.type === type && s.kind === "video") {
      return Object.fromEntries(Object.entries(s).filter(([, v]) => typeof v === "number"));
    }
  }
  return {};
}"""

# The remote UDP port of a peer connection's selected candidate pair.
PAIR_PORT = """async (peer) => {
  const report = await window.peers[peer].getStats();
  for (const entry of report.values()) {
    if (entry.type === "transport" && entry.selectedCandidatePairId) {
      const pair = report.get(entry.selectedCandidatePairId);
      return report.get(pair.remoteCandidateId).port;
    }
  }
  throw new Error(`${peer}: no selected candidate pair`);
}"""

GATEWAY_STATS = """async () => (await fetch("/api/stats")).json()"""


@dataclass
class Window:
    """What a viewer showed over a measurement window."""

    seconds: float
    frames: int  # presented (requestVideoFrameCallback)
    max_gap_ms: float  # longest time without a new frame (window edges included)
    freezes: int  # gaps longer than 200 ms
    freeze_ms: float  # time spent in those gaps
    stats: dict[str, float]  # inbound-rtp counters: the window's increase (gauges as read)

    @property
    def fps(self) -> float:
        """Frames presented per second. Frames that arrive in a burst (held up behind a
        repair) are all decoded but only the last of each burst may be shown."""
        return self.frames / self.seconds

    @property
    def decoded_fps(self) -> float:
        return self.stats.get("framesDecoded", 0.0) / self.seconds

    def residual_loss(self) -> float:
        return residual_loss(self.stats)

    def describe(self) -> dict[str, Any]:
        return {
            "fps": round(self.fps, 1),
            "decoded_fps": round(self.decoded_fps, 1),
            "max_gap_ms": round(self.max_gap_ms),
            "freezes": self.freezes,
            "freeze_ms": round(self.freeze_ms),
            "residual_loss": round(self.residual_loss(), 5),
            **{k: self.stats.get(k, 0.0) for k in ("packetsLost", "packetsReceived", "nackCount")},
            "inbound": self.stats,
        }


def residual_loss(inbound: dict[str, float]) -> float:
    """Packets never received (after NACK and retransmission) as a share of those expected.

    The gateway resends on the media SSRC, so its retransmissions count as received and
    ``packetsLost`` is what stayed lost; a direct Chromium peer resends on its RTX SSRC,
    which ``packetsLost`` ignores: those repairs are ``retransmittedPacketsReceived``.
    """
    lost = inbound.get("packetsLost", 0.0)
    expected = inbound.get("packetsReceived", 0.0) + lost
    residual = max(lost - inbound.get("retransmittedPacketsReceived", 0.0), 0.0)
    return residual / expected if expected > 0 else 0.0


async def rtp_stats(page: Page, peer: str, kind: str = "inbound-rtp") -> dict[str, float]:
    stats: dict[str, float] = await page.evaluate(RTP_STATS, {"peer": peer, "type": kind})
    return stats


async def now_ms(page: Page) -> float:
    value: float = await page.evaluate("performance.now()")
    return value


async def frames_since(page: Page, meter: str, since_ms: float) -> list[float]:
    times: list[float] = await page.evaluate(
        "([name, since]) => window.meters[name].times.filter((t) => t >= since)",
        [meter, since_ms],
    )
    return times


# Counters whose increase over a window is reported (the rest are read at its end).
COUNTERS = (
    "packetsLost",
    "packetsReceived",
    "nackCount",
    "framesDecoded",
    "framesDropped",
    "freezeCount",
    "totalFreezesDuration",
    "pliCount",
    "retransmittedPacketsReceived",
)


async def measure(page: Page, meter: str, peer: str, seconds: float) -> Window:
    """Watches ``meter`` (a viewer's presented frames) for ``seconds``."""
    start = await now_ms(page)
    before = await rtp_stats(page, peer)
    await asyncio.sleep(seconds)
    end = await now_ms(page)
    after = await rtp_stats(page, peer)
    times = await frames_since(page, meter, start)
    edges = [start, *times, end]
    gaps = [b - a for a, b in itertools.pairwise(edges)]
    long = [g for g in gaps if g > 200]
    stats = dict(after)
    for key in COUNTERS:
        if key in after:
            stats[key] = after[key] - before.get(key, 0.0)
    return Window(
        seconds=(end - start) / 1000,
        frames=len(times),
        max_gap_ms=max(gaps),
        freezes=len(long),
        freeze_ms=sum(long),
        stats=stats,
    )


def _chromium_wrapper(namespace: Namespace, directory: Path) -> Path:
    wrapper = directory / "chromium-in-namespace"
    command = " ".join(namespace.command(str(CHROMIUM)))
    wrapper.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return wrapper


@dataclass
class LossWorld:
    """The namespace, the gateway in it and a Chromium in it; ``loss()`` sets the drop rate."""

    namespace: Namespace
    gateway: GatewayProcess
    browser: Browser
    loss_probability: float = 0.0

    @property
    def base(self) -> str:
        return self.gateway.base

    def loss(self, probability: float, port: int | None = None) -> None:
        """Drops ``probability`` of every UDP datagram from now on (0: none); with ``port``
        only datagrams to or from that port (one peer connection's leg)."""
        self.namespace.iptables("-F", "INPUT")
        matches = [["--dport", str(port)], ["--sport", str(port)]] if port else [[]]
        if probability > 0:
            for match in matches:
                self.namespace.iptables(
                    "-A", "INPUT", "-p", "udp", *match, "-m", "statistic", "--mode",
                    "random", "--probability", f"{probability:.4f}", "-j", "DROP",
                )  # fmt: skip
        self.loss_probability = probability

    async def gateway_port(self, page: Page, peer: str) -> int:
        """The gateway's UDP port on ``peer``'s selected candidate pair."""
        port: int = await page.evaluate(PAIR_PORT, peer)
        return port

    def dropped(self) -> int:
        """Datagrams the rule has dropped so far (proves the loss is real)."""
        out = self.namespace.run("iptables", "-w", "-L", "INPUT", "-v", "-n", "-x").stdout
        rows = [line.split() for line in out.splitlines() if "statistic" in line]
        return sum(int(row[0]) for row in rows)

    async def page(self, context: BrowserContext, name: str) -> Page:
        return await open_page(context, f"{self.base}/healthz", name)

    async def publish(self, context: BrowserContext, room: str, hint: str = "motion") -> Page:
        page = await self.page(context, f"publish {room}")
        await page.evaluate(
            PUBLISH,
            {"room": room, "width": CAMERA_WIDTH, "height": CAMERA_HEIGHT, "hint": hint},
        )
        await wait_js(page, "window.peers.publisher.connectionState === 'connected'")
        return page

    async def watch(self, context: BrowserContext, room: str) -> Page:
        page = await self.page(context, f"watch {room}")
        await page.evaluate(WATCH, {"room": room})
        await wait_js(page, "window.meters.viewer.times.length > 10", 60)
        return page

    async def direct(self, context: BrowserContext, hint: str = "motion") -> Page:
        page = await self.page(context, "direct")
        await page.evaluate(DIRECT, {"width": CAMERA_WIDTH, "height": CAMERA_HEIGHT, "hint": hint})
        await wait_js(page, "window.meters.direct.times.length > 10", 60)
        return page

    async def gateway_stats(self, page: Page) -> dict[str, Any]:
        stats: dict[str, Any] = await page.evaluate(GATEWAY_STATS)
        return stats


@asynccontextmanager
async def loss_world(prefix: str, directory: Path, fake_camera: Path) -> AsyncIterator[LossWorld]:
    """A lo-only namespace ``<prefix>-x`` with a gateway and Chromium in it; everything
    (namespace included) is gone again when the block ends, whatever happened."""
    with network(prefix) as net:
        namespace = net.namespace("x")
        gateway = await start_gateway_process(
            GATEWAY_CONFIG, directory, port=free_port(), wrapper=namespace.command()
        )
        try:
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(
                    executable_path=str(_chromium_wrapper(namespace, directory)),
                    headless=True,
                    args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-video-capture={fake_camera}"],
                )
                try:
                    yield LossWorld(namespace, gateway, browser)
                finally:
                    await browser.close()
        finally:
            await gateway.close()
