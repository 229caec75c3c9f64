// Watches a room over the WebSocket protocol: subscribes whenever a publisher is there.
// Query: ?room=NAME, optionally &pipeline=NAME to watch through one of the gateway's
// processing pipelines (GET /api/pipelines). The Filter picker switches pipeline while
// watching (PUT /api/sessions/ID/pipeline), on the same peer connection.
// Live numbers are on window.watchStats (and in #stat-* / #proc-* elements).
// Simulcast: window.watchStats.layers (and #layer-*, #publisher-layers) says which layer is
// decoded and which one the gateway targets for this viewer's link, from the session's own
// stats (GET /api/sessions/ID: `link`, `receiving[mid].selection`) every second, the
// `layer-chosen` / `video-paused` / `video-resumed` messages at once, and the publisher's
// layers with their bitrates (GET /api/rooms/ROOM).
// With auth on, ?token= (or the prompt) gives the token; it needs `canSubscribe` for the room.

import { Signaling, SignalingError } from "./signaling.js";
import { authFetch, waitingForToken, withToken } from "./token.js";

const query = new URLSearchParams(location.search);
const room = query.get("room") ?? "";
const $ = (id) => document.getElementById(id);
const video = $("video");
const picker = $("filter");

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
  sessionId: null, // the gateway's id of our subscribe session
  pipeline: null, // the pipeline the session receives through (null: as published)
  rendition: null, // id of that rendition (GET /api/renditions/ID)
  processing: null, // its numbers: {latencyP50Ms, latencyP95Ms, fps, framesOut, dropsLatestWins}
  layers: emptyLayers(), // simulcast: what we decode, what the gateway targets, the publisher's layers
});

/** The layer state before anything is known (see sampleLayers, sampleIngest). */
function emptyLayers() {
  return {
    simulcast: null, // true: the video we receive has layers (simulcast, or made by the gateway); false: one; null: unknown
    mid: null, // our video m-line
    current: null, // rid of the layer we decode (matched by its size; null: unknown)
    switchingTo: undefined, // the gateway switches us at that layer's keyframe (null: the best)
    processed: false, // we receive the video through a pipeline (one layer, the rendition's)
    target: null, // the gateway's choice for our link (rid; null: the track's best layer)
    targetRid: null, // the same, with the best layer named (the one the track follows)
    paused: false, // no layer fits our link: no video until it is resumed
    estimateBps: null, // the gateway's estimate of what our link carries
    switches: 0,
    pauses: 0,
    cap: null, // our own cap ({rid} or {max_width, max_height}); {} none
    published: null, // the publisher's layers: [{rid, resolution, bitrateBps, flowing, followed, active, viewers}]
  };
}

let signaling = null;
let session = null;
let subscribedTo = null; // publisher id we are subscribed (or subscribing) to
let publisherId = null; // the room's publisher, as last announced
let previous = null; // last inbound-rtp sample, for the bitrate
let wantedPipeline = query.get("pipeline") || null; // what the picker asks for
const pipelines = new Map(); // name -> {name, kind, processors}, from /api/pipelines
let switching = Promise.resolve(); // pipeline switches run one at a time
let renditionSample = null; // last {at, framesOut} of the rendition, for its output rate

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

function showPaused(reason, withinS) {
  setState(`paused: the publisher is away (${reason}); it may return within ${Math.round(withinS)} s`);
}

function resetStats() {
  Object.assign(stats, { framesDecoded: 0, width: 0, height: 0, fps: 0, bitrateKbps: 0, packetsLost: 0 });
  stats.timeToFirstFrameMs = null;
  previous = null;
  stats.sessionId = null;
  setReceiving(null, null);
  resetLayers();
}

function stopWatching(state, leave = true) {
  session?.close({ leave });
  session = null;
  subscribedTo = null;
  video.srcObject = null;
  stats.sessionId = null;
  setReceiving(null, null);
  resetLayers();
  setState(state);
}

// -- processing: the Filter picker and the rendition's numbers ---------------------------

function pipelineLabel(name) {
  const p = pipelines.get(name);
  return p ? `${name} (${p.kind})` : name;
}

/** Fills the picker from /api/pipelines; the query's pipeline stays selected (an unknown
 * one too: the gateway's refusal then says what is configured). */
async function loadPipelines() {
  try {
    const response = await authFetch("/api/pipelines", { cache: "no-store" });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(body?.message ?? `HTTP ${response.status}`);
    for (const p of body.pipelines ?? []) pipelines.set(p.name, p);
  } catch (err) {
    console.warn("cannot list pipelines", err);
  }
  for (const kind of ["video", "audio"]) {
    const group = document.createElement("optgroup");
    group.label = `${kind[0].toUpperCase()}${kind.slice(1)} filters`;
    for (const p of pipelines.values()) {
      if (p.kind !== kind) continue;
      const option = new Option(pipelineLabel(p.name), p.name);
      option.title = JSON.stringify(p.processors);
      group.append(option);
    }
    if (group.children.length) picker.append(group);
  }
  if (wantedPipeline && !pipelines.has(wantedPipeline)) {
    picker.append(new Option(`${wantedPipeline} (unknown)`, wantedPipeline));
  }
  picker.value = wantedPipeline ?? "";
}

/** Keeps ?pipeline= in the address, so the link shares the filtered view. */
function rememberChoice() {
  const url = new URL(location.href);
  if (wantedPipeline) url.searchParams.set("pipeline", wantedPipeline);
  else url.searchParams.delete("pipeline");
  history.replaceState(null, "", url);
}

/** What the session receives, from a `receiving` map ({mid: {track, pipeline, rendition?}}). */
function setReceiving(pipeline, receiving) {
  const entry = Object.values(receiving ?? {}).find((r) => r.rendition && r.pipeline === pipeline);
  stats.pipeline = pipeline;
  if (stats.rendition !== (entry?.rendition ?? null)) {
    stats.rendition = entry?.rendition ?? null;
    stats.processing = null;
    renditionSample = null;
  }
  renderProcessing();
}

function renderProcessing() {
  const p = stats.processing;
  $("processing").hidden = !stats.pipeline;
  $("proc-pipeline").textContent = stats.pipeline ? pipelineLabel(stats.pipeline) : "–";
  $("proc-latency").textContent = p ? `${p.latencyP50Ms.toFixed(1)} / ${p.latencyP95Ms.toFixed(1)}` : "–";
  $("proc-fps").textContent = p?.fps != null ? p.fps.toFixed(1) : "–";
  $("proc-drops").textContent = p ? String(p.dropsLatestWins) : "–";
  const pending = stats.sessionId && picker.value !== (stats.pipeline ?? "");
  $("filter-status").textContent = pending ? "switching…" : "";
}

async function putPipeline(sessionId, pipeline, mid = null) {
  const response = await authFetch(`/api/sessions/${encodeURIComponent(sessionId)}/pipeline`, {
    method: "PUT",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(mid == null ? { pipeline } : { pipeline, mid }),
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new SignalingError(body?.error ?? `http-${response.status}`, body?.message ?? response.statusText);
  }
  return body;
}

/** Makes `current` receive through the picker's pipeline, without renegotiating. */
async function switchPipeline(current) {
  const wanted = wantedPipeline;
  if (session !== current || current.closed || current.id === null) return;
  if (wanted === stats.pipeline) return renderProcessing();
  let body = null;
  try {
    body = await putPipeline(current.id, wanted);
    // A pipeline switches only the tracks of its kind: one of the other kind chosen before
    // (a video filter, then an audio one) goes back to as-published.
    for (const [mid, r] of Object.entries(body.receiving ?? {})) {
      if (r.pipeline && r.pipeline !== wanted) body = await putPipeline(current.id, null, mid);
    }
    if (session !== current) return;
    setReceiving(wanted, body.receiving);
    showError("");
  } catch (err) {
    if (session !== current || current.closed) return;
    showError(`Cannot switch the filter to ${wanted ?? "none"}: ${err.message}${err.code ? ` (${err.code})` : ""}`);
    if (body) {
      setReceiving(wanted, body.receiving); // the main switch happened
      return;
    }
    // The session still receives what it did: the picker says so.
    wantedPipeline = stats.pipeline;
    picker.value = wantedPipeline ?? "";
    rememberChoice();
    renderProcessing();
  }
}

function queueSwitch(current) {
  switching = switching.then(() => switchPipeline(current)).catch((err) => console.warn("switch failed", err));
  renderProcessing();
  return switching;
}

picker.addEventListener("change", () => {
  wantedPipeline = picker.value || null;
  rememberChoice();
  if (session && !session.closed) {
    // Subscribing still (no id yet): the subscribe reconciles when it is answered.
    if (session.id !== null) queueSwitch(session);
  } else if (publisherId && signaling?.connected) {
    subscribe(publisherId); // e.g. after the gateway refused the previous choice
  }
  renderProcessing();
});

async function sampleRendition() {
  const id = stats.rendition;
  if (!id) return;
  const response = await authFetch(`/api/renditions/${encodeURIComponent(id)}`, { cache: "no-store" });
  if (stats.rendition !== id) return;
  if (!response.ok) {
    stats.processing = null; // ended (e.g. its source left); the next switch names the new one
    renditionSample = null;
    renderProcessing();
    return;
  }
  const r = await response.json();
  if (stats.rendition !== id) return;
  const at = performance.now();
  let fps = stats.processing?.fps ?? null;
  if (renditionSample && at > renditionSample.at) {
    fps = ((r.frames_out - renditionSample.framesOut) * 1000) / (at - renditionSample.at);
  }
  renditionSample = { at, framesOut: r.frames_out };
  const latency = r.timing?.latency ?? {};
  stats.processing = {
    latencyP50Ms: latency.p50_ms ?? 0,
    latencyP95Ms: latency.p95_ms ?? 0,
    fps,
    framesOut: r.frames_out,
    dropsLatestWins: r.drops?.latest_wins ?? 0,
  };
  renderProcessing();
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
  const pipeline = wantedPipeline;
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
    await current.subscribe(["video", "audio"], { pipeline });
    if (session !== current) return;
    stats.sessionId = current.id;
    stats.pipeline = pipeline;
    showError("");
    // The answer names the rendition; follow a picker changed while subscribing.
    setReceiving(pipeline, current.receiving);
    if (wantedPipeline !== pipeline) queueSwitch(current);
    else renderProcessing();
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
  renderLayers();
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

/** What the gateway receives from the room's (first) video publisher, and its layers. */
async function sampleIngest() {
  if (waitingForToken()) return;
  const response = await authFetch(`/api/rooms/${encodeURIComponent(room)}`, { cache: "no-store" });
  const body = response.ok ? await response.json() : null;
  const videos = Array.isArray(body?.tracks) ? body.tracks.filter((t) => t?.kind === "video") : [];
  const track = videos.find((t) => t.ingest);
  stats.ingest = track ? { ...track.ingest, resolution: track.resolution } : null;
  renderIngest();
  // The layers of the track we receive (the first video track until we know which).
  const received = videos.find((t) => t.id === receivedTrack) ?? track ?? videos[0];
  stats.layers.published = received ? publishedLayers(received) : null;
  renderLayers();
}

/** A room track's layers: the publisher's simulcast layers, or those the gateway makes of a
 * single-layer track (processing.ladders) beside the original; [] for a single layer. */
function publishedLayers(track) {
  const layer = (l, fields = {}) => ({
    rid: String(l.rid),
    resolution: Array.isArray(l.resolution) ? l.resolution : null,
    bitrateBps: Number(l.bitrate_bps) || 0,
    flowing: Boolean(l.flowing),
    followed: Boolean(l.followed),
    active: l.active !== false,
    viewers: Number(l.subscribers) || 0,
    made: false,
    ...fields,
  });
  if (Array.isArray(track.layers)) {
    // The track's own viewers get the layer it follows.
    const own = Number(track.subscribers) || 0;
    return track.layers.map((l) => layer(l, l.followed ? { viewers: (Number(l.subscribers) || 0) + own } : {}));
  }
  if (!Array.isArray(track.made_layers) || track.made_layers.length === 0) return [];
  const original = layer(
    { rid: "original", resolution: track.resolution, bitrate_bps: track.ingest?.received_bps, flowing: true, followed: true },
    { viewers: Number(track.subscribers) || 0 },
  );
  return [...track.made_layers.map((l) => layer(l, { made: true, live: Boolean(l.live) })), original];
}

// -- simulcast: the layer we decode, the one the gateway targets, the publisher's layers ----

let receivedTrack = null; // id of the video track our session receives (its receiving map)

function resetLayers() {
  const published = stats.layers.published; // the room's, not the session's
  stats.layers = { ...emptyLayers(), published };
  renderLayers();
}

/** Our video m-line: its transceiver receives video. */
function videoMid(current) {
  const transceiver = current.pc.getTransceivers().find((t) => t.receiver.track.kind === "video" && t.mid !== null);
  return transceiver?.mid ?? null;
}

/** This session's layer state, from GET /api/sessions/ID (its owner may read it). */
async function sampleLayers() {
  const current = session;
  if (!current || current.closed || current.id === null || waitingForToken()) return;
  // A plain fetch with the token: a refusal of these numbers is no reason to prompt.
  const response = await fetch(`/api/sessions/${encodeURIComponent(current.id)}`, withToken({ cache: "no-store" }));
  const body = await response.json().catch(() => null);
  if (session !== current) return;
  const layers = stats.layers;
  if (!response.ok || body === null) {
    layers.simulcast = null; // e.g. the session just ended
    renderLayers();
    return;
  }
  const mid = videoMid(current);
  const entry = mid !== null ? body.receiving?.[mid] : undefined;
  receivedTrack = entry?.track ?? null;
  layers.mid = mid;
  layers.estimateBps = typeof body.link?.estimate_bps === "number" ? body.link.estimate_bps : null;
  // Only the m-line of a track with layers (simulcast, or made by the gateway) has a
  // `layer`: its rid, or null (the best layer, or the original).
  layers.simulcast = entry ? "layer" in entry : null;
  layers.processed = Boolean(entry?.pipeline); // through a pipeline: its one output
  layers.switchingTo = entry?.switching_to;
  const selection = entry?.selection;
  if (selection) {
    layers.target = selection.target ?? null;
    layers.paused = Boolean(selection.paused);
    layers.switches = selection.switches ?? 0;
    layers.pauses = selection.pauses ?? 0;
    layers.cap = selection.cap ?? {};
  } else if (entry && "layer" in entry) {
    // Not chosen for yet (the first half second): what it receives is the target.
    layers.target = entry.layer ?? null;
  }
  renderLayers();
}

const size = (resolution) => (resolution ? `${resolution[0]}x${resolution[1]}` : null);

function describeCap(cap) {
  if (!cap) return "–";
  if (cap.rid) return `layer ${cap.rid}`;
  if (cap.max_width || cap.max_height) return `fits ${cap.max_width ?? "any"}x${cap.max_height ?? "any"}`;
  return "none";
}

function renderLayers() {
  const l = stats.layers;
  const published = l.published ?? [];
  // The layer we decode: the published layer of the size getStats reports.
  const decoded = published.find((p) => p.resolution && p.resolution[0] === stats.width && p.resolution[1] === stats.height);
  l.current = decoded?.rid ?? null;
  const best = published.find((p) => p.followed)?.rid ?? null;
  l.targetRid = l.target ?? best;
  const resolution = stats.width ? `${stats.width}x${stats.height}` : null;
  const single = l.simulcast === false;
  let current = "–";
  const one = l.processed ? "processed, one layer" : "single layer";
  if (single) current = resolution ? `${one} (${resolution})` : one;
  else if (l.current) current = `${l.current} (${resolution})`;
  else if (resolution) current = resolution;
  if (l.switchingTo !== undefined && !single) current += `, switching to ${l.switchingTo ?? `the best${best ? ` (${best})` : ""}`}`;
  $("layer-current").textContent = current;
  let target = "–";
  if (single) target = one;
  else if (l.simulcast) target = l.target ? l.target : best === "original" ? best : `best${best ? ` (${best})` : ""}`;
  $("layer-target").textContent = target;
  $("layer-paused").textContent = l.simulcast == null ? "–" : l.paused ? "paused: no layer fits the link" : "playing";
  $("layer-estimate").textContent = kbps(l.estimateBps);
  $("layer-switches").textContent = l.simulcast ? `${l.switches} / ${l.pauses}` : "–";
  $("layer-cap").textContent = l.simulcast ? describeCap(l.cap) : "–";
  const rows = published.map((p) => {
    const row = document.createElement("tr");
    row.dataset.rid = p.rid;
    const state = p.made ? [`made by the gateway${p.live ? "" : " when taken"}`] : [p.flowing ? "flowing" : "not flowing"];
    if (p.followed) state.push("best");
    if (!p.active) state.push("stopped: nobody takes it");
    if (p.rid === l.current) state.push("we decode it");
    for (const text of [p.rid, size(p.resolution) ?? "–", kbps(p.bitrateBps), state.join(", "), String(p.viewers)]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    return row;
  });
  $("publisher-layers").querySelector("tbody").replaceChildren(...rows);
  $("publisher-layers").hidden = rows.length === 0;
  $("publisher-single").hidden = !(l.published && rows.length === 0);
}

/** `layer-chosen`, `video-paused`, `video-resumed` about our session: shown at once. */
function onLayerMessage(message) {
  if (!session || message.session !== session.id) return;
  if (stats.layers.mid !== null && message.mid !== stats.layers.mid) return;
  if (message.type === "layer-chosen") stats.layers.target = message.layer ?? null;
  else stats.layers.paused = message.type === "video-paused";
  renderLayers();
}

async function connect() {
  signaling = new Signaling();
  signaling.addEventListener("room-state", (e) => {
    const paused = e.detail.paused;
    publisherId = e.detail.publisher?.id ?? paused?.publisher ?? null;
    if (e.detail.publisher) subscribe(e.detail.publisher.id);
    else if (paused) {
      // The stream is kept for its publisher's return: watch it now, frames follow then.
      subscribe(paused.publisher).then(() => session && showPaused(paused.reason, paused.resume_within_s));
    } else setState("waiting for a publisher");
  });
  // The publisher is away: this session stays, and shows its return within the grace.
  signaling.addEventListener("publisher-paused", (e) => {
    if (e.detail.publisher === subscribedTo) showPaused(e.detail.reason, e.detail.resume_within_s);
  });
  signaling.addEventListener("publisher-resumed", (e) => {
    const id = e.detail.publisher.id;
    publisherId = id;
    if (session && subscribedTo === e.detail.previous) {
      subscribedTo = id; // the same session receives the new publisher's stream
      setState(session.pc.connectionState);
    } else subscribe(id);
  });
  signaling.addEventListener("publisher-joined", (e) => {
    publisherId = e.detail.publisher.id;
    subscribe(e.detail.publisher.id);
  });
  // The gateway ends its viewers' sessions itself when the publisher leaves.
  signaling.addEventListener("publisher-left", () => {
    publisherId = null;
    stopWatching("waiting for a publisher", false);
  });
  signaling.addEventListener("error", (e) => showError(`${e.detail.code}: ${e.detail.message}`));
  for (const type of ["layer-chosen", "video-paused", "video-resumed"]) {
    signaling.addEventListener(type, (e) => onLayerMessage(e.detail));
  }
  signaling.addEventListener("processor-disabled", (e) => {
    const d = e.detail;
    if (d.rendition === stats.rendition) showError(`Filter ${d.pipeline}: ${d.stage} disabled after errors: ${d.message}`);
  });
  signaling.addEventListener("close", () => {
    if (waitingForToken()) {
      stopWatching("waiting for an access token"); // the prompt's token reloads the page
      return;
    }
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
$("filter-form").addEventListener("submit", (e) => e.preventDefault());
if (room) {
  // The picker is filled first: a ?pipeline= link is honoured by the first subscribe.
  loadPipelines().finally(connect);
  setInterval(() => sample().catch((err) => console.warn("getStats failed", err)), 1000);
  setInterval(() => sampleIngest().catch((err) => console.warn("ingest stats failed", err)), 1000);
  setInterval(() => sampleLayers().catch((err) => console.warn("layer stats failed", err)), 1000);
  setInterval(() => sampleRendition().catch((err) => console.warn("rendition stats failed", err)), 1000);
} else {
  setState("error");
  showError("No room given: open watch.html?room=NAME");
}
