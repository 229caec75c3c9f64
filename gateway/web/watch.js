// Watches a room over the WebSocket protocol: subscribes whenever a publisher is there.
// Query: ?room=NAME. Live numbers are on window.watchStats (and in #stat-* elements).

import { Signaling } from "./signaling.js";

const room = new URLSearchParams(location.search).get("room") ?? "";
const $ = (id) => document.getElementById(id);
const video = $("video");

const stats = (window.watchStats = {
  framesDecoded: 0,
  width: 0,
  height: 0,
  fps: 0,
  bitrateKbps: 0,
  packetsLost: 0,
  timeToFirstFrameMs: null,
  state: "connecting",
  ingest: null, // the room's video track as the gateway receives it (GET /api/rooms/ROOM)
});

let signaling = null;
let session = null;
let subscribedTo = null; // publisher id we are subscribed (or subscribing) to
let previous = null; // last inbound-rtp sample, for the bitrate

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function render() {
  $("stat-state").textContent = stats.state;
  $("stat-resolution").textContent = stats.width ? `${stats.width}x${stats.height}` : "–";
  $("stat-fps").textContent = stats.fps ? stats.fps.toFixed(1) : "–";
  $("stat-bitrate").textContent = stats.bitrateKbps ? stats.bitrateKbps.toFixed(0) : "–";
  $("stat-frames").textContent = String(stats.framesDecoded);
  $("stat-lost").textContent = String(stats.packetsLost);
  $("stat-ttff").textContent = stats.timeToFirstFrameMs == null ? "–" : stats.timeToFirstFrameMs.toFixed(0);
}

function setState(state) {
  stats.state = state;
  render();
}

function resetStats() {
  Object.assign(stats, { framesDecoded: 0, width: 0, height: 0, fps: 0, bitrateKbps: 0, packetsLost: 0 });
  stats.timeToFirstFrameMs = null;
  previous = null;
}

function stopWatching(state, leave = true) {
  session?.close({ leave });
  session = null;
  subscribedTo = null;
  video.srcObject = null;
  setState(state);
}

function firstFrame(current) {
  const mark = () => {
    if (session === current && stats.timeToFirstFrameMs == null && current.requestedAt != null) {
      stats.timeToFirstFrameMs = performance.now() - current.requestedAt;
      render();
    }
  };
  if ("requestVideoFrameCallback" in video) video.requestVideoFrameCallback(mark);
  else video.addEventListener("loadeddata", mark, { once: true });
}

async function subscribe(publisherId) {
  if (subscribedTo === publisherId) return;
  session?.close();
  resetStats();
  subscribedTo = publisherId;
  const current = (session = signaling.createSession(room));
  const stream = new MediaStream();
  current.pc.ontrack = ({ track }) => {
    stream.addTrack(track);
    if (video.srcObject !== stream) {
      video.srcObject = stream;
      firstFrame(current);
    }
  };
  current.addEventListener("state", (e) => session === current && setState(e.detail));
  current.addEventListener("ended", (e) => {
    if (session !== current) return;
    const reason = e.detail;
    stopWatching(reason === "publisher-left" ? "waiting for a publisher" : `ended: ${reason}`);
    if (reason !== "publisher-left" && reason !== "socket-closed") {
      // The publisher may still be there (e.g. our ICE failed): try again.
      setTimeout(() => signaling.connected && !session && subscribe(publisherId), 2000);
    }
  });
  setState("subscribing");
  try {
    await current.subscribe();
    showError("");
  } catch (err) {
    if (session !== current) return;
    session = null;
    subscribedTo = null;
    if (err.code === "no-publisher") {
      setState("waiting for a publisher"); // its publisher-joined will follow
    } else {
      setState("error");
      showError(`Cannot watch: ${err.message}${err.code ? ` (${err.code})` : ""}`);
    }
  }
}

async function sample() {
  if (!session || session.closed) return;
  const current = session;
  const report = await current.pc.getStats();
  if (current !== session) return;
  let lost = 0;
  for (const s of report.values()) {
    if (s.type !== "inbound-rtp") continue;
    lost += s.packetsLost ?? 0;
    if (s.kind !== "video") continue;
    stats.framesDecoded = s.framesDecoded ?? 0;
    stats.width = s.frameWidth ?? video.videoWidth;
    stats.height = s.frameHeight ?? video.videoHeight;
    if (previous) {
      const seconds = (s.timestamp - previous.timestamp) / 1000;
      if (seconds > 0) {
        stats.bitrateKbps = ((s.bytesReceived - previous.bytesReceived) * 8) / 1000 / seconds;
        stats.fps = s.framesPerSecond ?? (stats.framesDecoded - previous.framesDecoded) / seconds;
      }
    }
    previous = { timestamp: s.timestamp, bytesReceived: s.bytesReceived, framesDecoded: stats.framesDecoded };
  }
  stats.packetsLost = lost;
  render();
}

const kbps = (bps) => (bps == null ? "–" : (bps / 1000).toFixed(0));

function renderIngest() {
  const i = stats.ingest;
  $("ingest-bitrate").textContent = i ? kbps(i.received_bps) : "–";
  $("ingest-estimate").textContent = i ? kbps(i.estimate_bps) : "–";
  $("ingest-feedback").textContent = !i ? "–" : i.transport_cc ? `transport-cc (${i.feedback_sent} packets)` : "REMB only";
  $("ingest-loss").textContent = i ? `${(100 * i.loss).toFixed(1)}% (${i.packets_lost} packets)` : "–";
  $("ingest-jitter").textContent = i ? i.jitter_ms.toFixed(1) : "–";
  $("ingest-fps").textContent = i ? i.fps.toFixed(1) : "–";
  $("ingest-resolution").textContent = i?.resolution ? i.resolution.join("x") : "–";
}

/** What the gateway receives from the room's (first) video publisher. */
async function sampleIngest() {
  const response = await fetch(`/api/rooms/${encodeURIComponent(room)}`, { cache: "no-store" });
  const body = response.ok ? await response.json() : null;
  const track = body?.tracks?.find((t) => t.kind === "video" && t.ingest);
  stats.ingest = track ? { ...track.ingest, resolution: track.resolution } : null;
  renderIngest();
}

async function connect() {
  signaling = new Signaling();
  signaling.addEventListener("room-state", (e) => {
    if (e.detail.publisher) subscribe(e.detail.publisher.id);
    else setState("waiting for a publisher");
  });
  signaling.addEventListener("publisher-joined", (e) => subscribe(e.detail.publisher.id));
  // The gateway ends its viewers' sessions itself when the publisher leaves.
  signaling.addEventListener("publisher-left", () => stopWatching("waiting for a publisher", false));
  signaling.addEventListener("error", (e) => showError(`${e.detail.code}: ${e.detail.message}`));
  signaling.addEventListener("close", () => {
    stopWatching("disconnected; reconnecting");
    setTimeout(connect, 2000);
  });
  try {
    await signaling.connect();
  } catch {
    return; // the close handler retries
  }
  showError("");
  setState("waiting for a publisher");
  signaling.watch(room);
}

$("room-name").textContent = room;
if (room) {
  connect();
  setInterval(() => sample().catch((err) => console.warn("getStats failed", err)), 1000);
  setInterval(() => sampleIngest().catch((err) => console.warn("ingest stats failed", err)), 2000);
} else {
  setState("error");
  showError("No room given: open watch.html?room=NAME");
}
