// A room of participants (docs/protocol.md, "Rooms of participants"): join by name, publish
// camera, microphone and screen, see and hear everyone else, chat, leave.
// Query: ?room=NAME&name=DISPLAY[&mode=sfu|p2p][&width=1280&height=720][&hint=motion|detail]
//        [&simulcast=0]
// Without room and name a form asks for them. Without mode the room's own mode is used
// (a new room is sfu). `hint` sets the camera track's contentHint ("detail" keeps the
// resolution and drops frame rate under pressure).
//
// sfu mode: ONE RTCPeerConnection with the gateway carries everything. The page always
// offers (the gateway only answers), one offer at a time: any change (a track published or
// unpublished by someone, our screen share) marks the connection dirty and the next round
// offers the full publish/subscribe maps. Every other participant's track is subscribed to
// as it is published; when it goes, its transceiver is made inactive and kept for reuse by
// the next track of its kind.
//
// p2p mode: the gateway relays `signal`s only; the page has one RTCPeerConnection per other
// participant. The newer joiner makes the first offer (it creates its connections when it
// joins; existing participants create theirs when that offer arrives), so the first
// negotiation never collides. Later renegotiations (a screen share) may start on either
// side: the "perfect negotiation" pattern resolves a collision, the participant with the
// smaller id being polite (it rolls back its own offer and answers the other's).
//
// Losing the socket (docs/protocol.md, "Losing the socket"): when the WebSocket drops
// unexpectedly, the page keeps its connections and tiles, shows "reconnecting…", opens a new
// socket and sends `resume` with the session id and the `resume_token` from `joined`;
// `resumed` carries the room as it is now, and the page reconciles (participants and tracks
// that came or went meanwhile) and goes on. If the gateway cannot resume (`cannot-resume`,
// the grace period is over), the page ends as before and offers to join again.
// window.roomDropSocket() closes the socket without leaving, as a network drop would.
//
// Tile sizes as layer caps (sfu): each remote video with layers (simulcast, or made by the
// gateway: the answer's `receiving` has a `layer` for those m-lines) is watched with a ResizeObserver; 500 ms after its size last
// changed, its size in device pixels, rounded up to the next of CAP_STEPS, goes to the
// gateway as a `layer` message ({mid, max_width, max_height}: the largest layer that fits),
// only when that cap changed. A video without layers gets none (the gateway would refuse it).
// The reply (`layer-switched`, whose `receiving` shows the cap held) confirms it; a cap not
// confirmed (refused: e.g. a track whose made layers are not known yet) is sent again, after
// 2 s, then at doubling intervals up to a minute.
//
// With auth on, ?token= (or the prompt) gives the token: the gateway names us by its
// identity and display name (its `name`, else the `name` asked for, which defaults to the
// token's name or identity), and shows every participant's identity beside their name.
//
// window.roomState is kept current for tests and debugging:
//   {participantId, identity, name, mode, state, connection, error, tiles: {id: {name,
//    identity, framesDecoded, width, height, videoMuted, audioMuted, connection, videos,
//    audios, audioPackets, cap}}, chat: [messages]}   (cap: the last one sent for the tile's
//    main video, {max_width, max_height}, or null)

import { RemoteCandidates, Signaling, applyLayers, simulcastEncodings } from "./signaling.js";
import { claims } from "./token.js";

const params = new URLSearchParams(location.search);
const roomName = params.get("room") ?? "";
// Without ?name=, a token's own name (or identity) is the one to ask for.
let displayName = params.get("name") || claims()?.name || claims()?.sub || "";
const requestedMode = params.get("mode") || null; // null: the room's mode
const width = Number(params.get("width")) || 1280;
const height = Number(params.get("height")) || 720;
const hint = params.get("hint") ?? "";
// The camera goes out as simulcast layers from 640x360 up in an sfu room (simulcast=0: not).
const simulcast = params.get("simulcast") !== "0";

const $ = (id) => document.getElementById(id);
const SOURCES = ["camera", "microphone", "screen"];

const roomState = (window.roomState = {
  participantId: null,
  identity: null, // the token's identity the gateway knows us by (null: auth off)
  name: null, // the name the room shows for us
  mode: null,
  state: "idle",
  connection: "new", // sfu: our connection with the gateway
  error: null,
  tiles: {},
  chat: [],
});

let signaling = null;
let link = null; // SfuLink in sfu mode
const peers = new Map(); // p2p: participant id -> Peer
// For debugging (and tests): the page's RTCPeerConnections now.
window.roomConnections = () => (link ? [link.pc] : [...peers.values()].map((peer) => peer.pc));
const participants = new Map(); // other participants: id -> {id, name}
const remoteTracks = new Map(); // sfu: track id -> {id, participant, kind, source, codec, muted}
const ownTracks = new Map(); // sfu: source -> our published track id
const tiles = new Map(); // participant id -> Tile
const local = { camera: null, microphone: null, screen: null }; // our MediaStreamTracks
const localMuted = { camera: false, microphone: false };
const localStream = new MediaStream(); // camera + microphone, for msid
let screenStream = null;
let leaving = false;
let resumeToken = null; // from `joined`: takes our participant back on a new socket
// From `joined`: the id that controls our session (candidates, leave, resume). Others know
// us by roomState.participantId, which gives them no hold on it.
let sessionId = null;
const RECONNECT_GIVE_UP_MS = 30_000; // the gateway's grace period is shorter (10 s)

// -- status and errors -----------------------------------------------------------------------

function setState(state) {
  roomState.state = state;
  $("status").textContent = state === "reconnecting" ? "reconnecting…" : state;
}

function showError(message) {
  roomState.error = message || null;
  $("error").textContent = message;
  $("error").hidden = !message;
}

const describeError = (err) => `${err.message}${err.code ? ` (${err.code})` : ""}`;

// -- local media -----------------------------------------------------------------------------

function fillSelect(select, devices, current) {
  select.replaceChildren(
    ...devices.map((device, i) => new Option(device.label || `${device.kind} ${i + 1}`, device.deviceId)),
  );
  if (current && devices.some((d) => d.deviceId === current)) select.value = current;
}

async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  fillSelect($("camera"), devices.filter((d) => d.kind === "videoinput"), local.camera?.getSettings().deviceId);
  fillSelect($("microphone"), devices.filter((d) => d.kind === "audioinput"), local.microphone?.getSettings().deviceId);
}

function cameraConstraints() {
  const video = { width: { ideal: width }, height: { ideal: height } };
  if ($("camera").value) video.deviceId = { exact: $("camera").value };
  return video;
}

function microphoneConstraints() {
  return $("microphone").value ? { deviceId: { exact: $("microphone").value } } : true;
}

/** Camera and microphone; either may be missing (then we only receive that kind). */
async function openMedia() {
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: cameraConstraints(), audio: microphoneConstraints() });
  } catch (err) {
    // One of the two may still work.
    for (const constraints of [{ video: cameraConstraints() }, { audio: microphoneConstraints() }]) {
      try {
        stream = await navigator.mediaDevices.getUserMedia(constraints);
        break;
      } catch {}
    }
    showError(`Cannot open camera and microphone: ${err.message}${stream ? " (joining with what works)" : " (joining to watch only)"}`);
    if (!stream) return;
  }
  setLocal("camera", stream.getVideoTracks()[0] ?? null);
  setLocal("microphone", stream.getAudioTracks()[0] ?? null);
  await listDevices().catch(() => {});
}

/** Makes `track` our `source` (the connections are updated by the caller); stops the old one. */
function setLocal(source, track, stopPrevious = true) {
  const previous = local[source];
  if (previous === track) return;
  if (track) {
    if (source === "camera" && hint) track.contentHint = hint;
    if (source === "screen") track.contentHint = "detail";
    if (source in localMuted) track.enabled = !localMuted[source];
  }
  local[source] = track;
  if (source !== "screen") {
    if (previous) localStream.removeTrack(previous);
    if (track) localStream.addTrack(track);
  }
  if (stopPrevious) previous?.stop();
  $("preview").srcObject = local.camera ? new MediaStream([local.camera]) : null;
  renderOwnTile();
}

async function changeDevice(source) {
  try {
    const constraints = source === "camera" ? { video: cameraConstraints() } : { audio: microphoneConstraints() };
    const stream = await navigator.mediaDevices.getUserMedia(constraints);
    const track = stream.getTracks()[0];
    const previous = local[source];
    setLocal(source, track, false);
    if (link) await link.replaceTrack(source, track);
    for (const peer of peers.values()) peer.syncLocal();
    previous?.stop(); // once nothing sends it any more
    showError("");
  } catch (err) {
    showError(`Cannot open the selected device: ${err.message}`);
  }
}

function setMuted(source, muted) {
  localMuted[source] = muted;
  if (local[source]) local[source].enabled = !muted;
  const button = source === "camera" ? $("mute-camera") : $("mute-mic");
  button.setAttribute("aria-pressed", String(muted));
  button.textContent =
    source === "camera" ? (muted ? "Camera on" : "Camera off") : muted ? "Unmute microphone" : "Mute microphone";
  // sfu: the gateway pauses forwarding and tells the others; p2p: we tell them ourselves.
  const track = ownTracks.get(source);
  if (track && signaling?.connected) signaling.send({ type: "mute", track, muted });
  for (const peer of peers.values()) peer.send({ type: "mute", source, muted });
  renderOwnTile();
}

async function toggleScreen() {
  if (local.screen) {
    stopScreen();
    return;
  }
  try {
    screenStream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch (err) {
    showError(`Cannot share the screen: ${err.message}`);
    return;
  }
  const track = screenStream.getVideoTracks()[0];
  track.addEventListener("ended", () => local.screen === track && stopScreen());
  setLocal("screen", track);
  $("screen-preview").srcObject = screenStream;
  $("screen-preview").hidden = false;
  $("share-screen").textContent = "Stop sharing";
  $("share-screen").setAttribute("aria-pressed", "true");
  link?.changed();
  for (const peer of peers.values()) peer.syncLocal();
}

function stopScreen() {
  setLocal("screen", null);
  screenStream = null;
  $("screen-preview").srcObject = null;
  $("screen-preview").hidden = true;
  $("share-screen").textContent = "Share screen";
  $("share-screen").setAttribute("aria-pressed", "false");
  link?.changed();
  for (const peer of peers.values()) peer.syncLocal();
}

function stopLocalMedia() {
  for (const source of SOURCES) setLocal(source, null);
  if (screenStream) stopScreen();
}

function renderOwnTile() {
  $("own-name").textContent = displayName;
  const flags = [];
  if (!local.camera) flags.push("no camera");
  else if (localMuted.camera) flags.push("camera off");
  if (!local.microphone) flags.push("no microphone");
  else if (localMuted.microphone) flags.push("muted");
  if (local.screen) flags.push("sharing screen");
  $("own-flags").textContent = flags.join(" · ");
}

// -- tiles of other participants -------------------------------------------------------------

/** One other participant: their videos (camera first), their audio, their name. */
class Tile {
  elements = new Map(); // media key -> <video>/<audio>
  items = []; // what we receive from them now
  main = null; // the media item whose frames are counted (their camera, else first video)

  constructor(id, name, identity) {
    this.id = id;
    this.state = {
      name,
      identity,
      framesDecoded: 0,
      width: 0,
      height: 0,
      videoMuted: false,
      audioMuted: false,
      connection: "new",
      videos: 0,
      audios: 0,
      audioPackets: 0, // audio packets their <audio> elements' receivers got
      cap: null, // sfu: the layer cap sent for the main video ({max_width, max_height})
    };
    roomState.tiles[id] = this.state;
    this.figure = document.createElement("figure");
    this.figure.className = "tile";
    this.figure.dataset.participant = id;
    this.media = document.createElement("div");
    this.media.className = "media";
    const caption = document.createElement("figcaption");
    this.nameEl = document.createElement("span");
    this.nameEl.className = "name";
    this.nameEl.textContent = name;
    // The token's identity is what the gateway vouches for; a display name is chosen freely.
    this.identityEl = document.createElement("span");
    this.identityEl.className = "identity muted";
    this.identityEl.textContent = identity && identity !== name ? `(${identity})` : "";
    this.flags = document.createElement("span");
    this.flags.className = "flags";
    this.info = document.createElement("span");
    this.info.className = "info muted";
    caption.append(this.nameEl, " ", this.identityEl, " ", this.flags, " ", this.info);
    this.figure.append(this.media, caption);
    $("tiles").append(this.figure);
    this.render();
  }

  /** items: [{key, kind, source, track, base}]: what we receive from this participant now. */
  setMedia(items) {
    const order = (item) => (item.kind === "audio" ? 2 : item.source === "camera" ? 0 : 1);
    items.sort((a, b) => order(a) - order(b));
    const keys = new Set(items.map((i) => i.key));
    for (const [key, element] of this.elements) {
      if (!keys.has(key)) {
        element.srcObject = null;
        element.remove();
        this.elements.delete(key);
      }
    }
    for (const item of items) {
      let element = this.elements.get(item.key);
      if (!element) {
        element = document.createElement(item.kind);
        element.autoplay = true;
        if (item.kind === "video") {
          element.muted = true; // the sound plays from the <audio> elements
          element.playsInline = true;
          element.className = item.source === "screen" ? "screen" : "camera";
        } else {
          element.hidden = true;
        }
        element.srcObject = new MediaStream([item.track]);
        element.play?.().catch(() => item.kind === "audio" && ($("enable-sound").hidden = false));
        this.elements.set(item.key, element);
      }
      this.media.append(element); // keeps the order: camera, screens, audio
    }
    this.items = items;
    const videos = items.filter((i) => i.kind === "video");
    this.main = videos[0] ?? null;
    this.state.videos = videos.length;
    this.state.audios = items.length - videos.length;
    if (!this.main) Object.assign(this.state, { framesDecoded: 0, width: 0, height: 0, cap: null });
    this.render();
  }

  render() {
    const s = this.state;
    const flags = [];
    if (s.videos === 0) flags.push("no video");
    else if (s.videoMuted) flags.push("camera off");
    if (s.audioMuted) flags.push("muted");
    if (s.connection !== "connected" && s.connection !== "new") flags.push(s.connection);
    this.flags.textContent = flags.join(" · ");
    this.info.textContent = s.width ? `${s.width}x${s.height}` : "";
    this.figure.classList.toggle("video-muted", s.videoMuted);
  }

  remove() {
    for (const element of this.elements.values()) element.srcObject = null;
    this.figure.remove();
    delete roomState.tiles[this.id];
  }
}

function addParticipant(participant) {
  if (participant.id === roomState.participantId || participants.has(participant.id)) return;
  const identity = participant.identity ?? null;
  participants.set(participant.id, { id: participant.id, name: participant.name, identity });
  tiles.set(participant.id, new Tile(participant.id, participant.name, identity));
  for (const track of participant.tracks ?? []) addRemoteTrack(participant.id, track);
  renderChatTargets();
}

function removeParticipant(id) {
  participants.delete(id);
  for (const [trackId, track] of remoteTracks) if (track.participant === id) remoteTracks.delete(trackId);
  tiles.get(id)?.remove();
  tiles.delete(id);
  peers.get(id)?.close();
  peers.delete(id);
  link?.changed();
  renderChatTargets();
}

function addRemoteTrack(participantId, track) {
  remoteTracks.set(track.id, { ...track, participant: participantId });
  updateMuted(participantId);
}

function updateMuted(participantId) {
  const tile = tiles.get(participantId);
  if (!tile || roomState.mode !== "sfu") return;
  const tracks = [...remoteTracks.values()].filter((t) => t.participant === participantId);
  tile.state.videoMuted = tracks.some((t) => t.source === "camera" && t.muted);
  tile.state.audioMuted = tracks.some((t) => t.kind === "audio" && t.muted);
  tile.render();
}

/** Decoded frames and resolution of each tile's main video, from the receivers' stats. */
async function sample() {
  const connections = link ? [link.pc] : [...peers.values()].map((p) => p.pc);
  const byTrack = new Map();
  for (const pc of connections) {
    if (pc.connectionState === "closed") continue;
    const report = await pc.getStats();
    for (const s of report.values()) {
      if (s.type !== "inbound-rtp" || !s.trackIdentifier) continue;
      // A receiver that got a new SSRC has an inbound-rtp per stream: take the live one.
      const seen = byTrack.get(s.trackIdentifier);
      if (!seen || (s.lastPacketReceivedTimestamp ?? 0) > (seen.lastPacketReceivedTimestamp ?? 0)) {
        byTrack.set(s.trackIdentifier, s);
      }
    }
  }
  for (const [trackId, s] of byTrack) link?.framesSeen.set(trackId, { id: s.id, frames: s.framesDecoded ?? 0 });
  link?.retryCaps();
  for (const tile of tiles.values()) {
    const audio = tile.items.filter((i) => i.kind === "audio").map((i) => byTrack.get(i.track.id));
    tile.state.audioPackets = audio.reduce((sum, s) => sum + (s?.packetsReceived ?? 0), 0);
    const s = tile.main && byTrack.get(tile.main.track.id);
    if (!s) continue;
    // A reused transceiver's stream counts on from its previous track's frames.
    const base = tile.main.base?.id === s.id ? tile.main.base.frames : 0;
    tile.state.framesDecoded = Math.max(0, (s.framesDecoded ?? 0) - base);
    tile.state.width = s.frameWidth ?? 0;
    tile.state.height = s.frameHeight ?? 0;
    tile.render();
  }
}

// -- sfu: one connection with the gateway ----------------------------------------------------

class SfuLink {
  sending = new Map(); // source -> transceiver
  subs = new Map(); // track id -> {trackId, participant, kind, source, transceiver, base}
  spare = []; // inactive transceivers, reused to receive the next track of their kind
  framesSeen = new Map(); // receiver track id -> {id, frames}: its inbound-rtp last sampled
  closed = false;
  #sizes = new ResizeObserver(() => this.#capsSoon()); // the remote videos' elements
  #capTimer = null;
  #dirty = false;
  #running = false;
  #failed = false; // the last negotiation failed: its error is shown
  #offered = false; // our first offer went out: our candidates may follow it
  #localQueue = [];
  #remote;

  constructor() {
    this.pc = new RTCPeerConnection({ iceServers: signaling.iceServers });
    this.#remote = new RemoteCandidates(this.pc, () => this.closed);
    this.pc.onicecandidate = ({ candidate }) => {
      const payload = candidate?.candidate
        ? { candidate: candidate.candidate, sdpMid: candidate.sdpMid, sdpMLineIndex: candidate.sdpMLineIndex }
        : null;
      if (this.#offered) this.#sendCandidate(payload);
      else this.#localQueue.push(payload);
    };
    this.pc.onconnectionstatechange = () => {
      roomState.connection = this.pc.connectionState;
      for (const tile of tiles.values()) {
        tile.state.connection = this.pc.connectionState;
        tile.render();
      }
      if (this.pc.connectionState === "failed") showError("The media connection with the gateway failed");
    };
  }

  /** Something to negotiate: runs now, or after the offer in flight. */
  changed() {
    if (this.closed) return;
    this.#dirty = true;
    if (!this.#running && roomState.state !== "reconnecting") this.#run();
  }

  /** The socket is back (resumed): offer what changed meanwhile, send the caps that did. */
  resumed() {
    if (this.#dirty && !this.#running && !this.closed) this.#run();
    this.#capsSoon();
  }

  async #run() {
    this.#running = true;
    try {
      while (this.#dirty && !this.closed) {
        this.#dirty = false;
        try {
          await this.#negotiate();
        } catch (err) {
          if (this.closed) return;
          if (err.code === "closed" || roomState.state === "reconnecting") {
            this.#dirty = true; // the socket dropped: offer again once resumed
            return;
          }
          showError(`Negotiation with the gateway failed: ${describeError(err)}`);
          this.#failed = true;
          this.#dirty = false; // no retry loop: the next change tries again
        }
      }
    } finally {
      this.#running = false;
    }
  }

  /** Brings the transceivers in line with what we publish and what the room has, offers. */
  async #negotiate() {
    // One offer carries everything: the gateway's peer bundles every m-line on one transport
    // (max-bundle), so a first offer may hold several of a kind.
    for (const source of SOURCES) {
      const track = local[source];
      const transceiver = this.sending.get(source);
      if (track && !transceiver) {
        // A new m-line for each track we publish (the gateway announces a track per m-line).
        const streams = source === "screen" ? [screenStream] : [localStream];
        // The camera as simulcast layers (the gateway serves each viewer one of them).
        const encodings = source === "camera" && simulcast ? simulcastEncodings(track) : null;
        const init = { direction: "sendonly", streams, ...(encodings ? { sendEncodings: encodings } : {}) };
        this.sending.set(source, this.pc.addTransceiver(track, init));
      } else if (!track && transceiver) {
        // No longer sendonly: the gateway stops the track; the m-line can receive later.
        transceiver.direction = "inactive";
        await transceiver.sender.replaceTrack(null);
        this.sending.delete(source);
        ownTracks.delete(source);
        this.spare.push(transceiver);
      }
    }
    for (const [trackId, sub] of this.subs) {
      if (remoteTracks.has(trackId)) continue;
      sub.transceiver.direction = "inactive";
      this.spare.push(sub.transceiver);
      this.subs.delete(trackId);
    }
    for (const [trackId, track] of remoteTracks) {
      if (this.subs.has(trackId)) continue;
      const index = this.spare.findIndex((t) => t.receiver.track.kind === track.kind);
      let transceiver;
      if (index >= 0) {
        [transceiver] = this.spare.splice(index, 1);
        transceiver.direction = "recvonly";
      } else {
        transceiver = this.pc.addTransceiver(track.kind, { direction: "recvonly" });
      }
      const base = this.framesSeen.get(transceiver.receiver.track.id) ?? null;
      this.subs.set(trackId, { ...track, trackId, transceiver, base });
    }
    this.#renderTiles();
    if (this.pc.getTransceivers().length === 0) return; // nothing to send or receive yet
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    const publish = {};
    const subscribe = {};
    for (const [source, transceiver] of this.sending) publish[transceiver.mid] = source;
    for (const [trackId, sub] of this.subs) subscribe[sub.transceiver.mid] = trackId;
    const request = signaling.request({ type: "offer", sdp: offer.sdp, publish, subscribe });
    if (!this.#offered) {
      this.#offered = true;
      for (const candidate of this.#localQueue.splice(0)) this.#sendCandidate(candidate);
    }
    let answer;
    try {
      answer = await request;
    } catch (err) {
      if (!this.closed && this.pc.signalingState === "have-local-offer") {
        await this.pc.setLocalDescription({ type: "rollback" });
      }
      throw err;
    }
    if (this.closed) return;
    await this.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    await this.#remote.ready();
    if (this.#failed) showError(""); // the error we showed is over
    this.#failed = false;
    for (const [mid, trackId] of Object.entries(subscribe)) {
      const sub = this.subs.get(trackId);
      if (!sub || sub.transceiver.mid !== mid) continue;
      // Only the m-line of a track with layers has a `layer` (others' caps are refused).
      const receiving = answer.receiving?.[mid];
      sub.simulcast = sub.kind === "video" && (receiving?.track === trackId ? "layer" in receiving : Boolean(sub.layers?.length));
      sub.negotiated = true;
    }
    this.#capsSoon();
  }

  #renderTiles() {
    for (const [id, tile] of tiles) {
      const items = [...this.subs.values()]
        .filter((sub) => sub.participant === id)
        .map((sub) => ({
          key: sub.trackId,
          kind: sub.kind,
          source: sub.source,
          track: sub.transceiver.receiver.track,
          base: sub.base, // {id, frames} of its inbound-rtp when this track was assigned
        }));
      tile.setMedia(items);
      tile.state.connection = this.pc.connectionState;
    }
    // Watch the size of every remote video (removed ones are let go).
    this.#sizes.disconnect();
    for (const sub of this.subs.values()) {
      const element = sub.kind === "video" && tiles.get(sub.participant)?.elements.get(sub.trackId);
      if (element) this.#sizes.observe(element);
    }
  }

  /** A size changed (or what we receive did): the caps are sent once it settles. */
  #capsSoon() {
    if (this.closed) return;
    clearTimeout(this.#capTimer);
    this.#capTimer = setTimeout(() => this.#sendCaps(), CAP_DEBOUNCE_MS);
  }

  /** `layer-switched`'s `receiving`: the caps the gateway now holds are confirmed. */
  capsHeld(receiving) {
    for (const sub of this.subs.values()) {
      const held = receiving?.[sub.transceiver.mid];
      const cap = held?.track === sub.trackId ? held.selection?.cap : null;
      if (sub.cap && cap?.max_width === sub.cap.max_width && cap?.max_height === sub.cap.max_height) {
        sub.capRetry = null;
      }
    }
  }

  /** Every second: caps not confirmed in time are sent again (see #sendCaps). */
  retryCaps() {
    const now = performance.now();
    if ([...this.subs.values()].some((sub) => sub.capRetry && now >= sub.capRetry.at)) this.#sendCaps();
  }

  /** Each negotiated simulcast video's cap: its element's size in device pixels, rounded
   * up to a step; sent when it changed or was not confirmed in time (and the socket is up:
   * else after `resumed`). */
  #sendCaps() {
    if (this.closed || !signaling?.connected) return;
    const now = performance.now();
    for (const sub of this.subs.values()) {
      if (!sub.negotiated || !sub.simulcast || sub.transceiver.mid === null) continue;
      const tile = tiles.get(sub.participant);
      const element = tile?.elements.get(sub.trackId);
      if (!element?.isConnected) continue;
      const ratio = window.devicePixelRatio || 1;
      const width = element.clientWidth * ratio;
      const height = element.clientHeight * ratio;
      if (!width || !height) continue; // hidden, or not laid out yet
      const cap = { max_width: capStep(width), max_height: capStep(height) };
      const changed = sub.cap?.max_width !== cap.max_width || sub.cap?.max_height !== cap.max_height;
      if (changed || (sub.capRetry && now >= sub.capRetry.at)) {
        // A refusal (the track just went, say) is only logged: the retry covers it.
        signaling.note("layer", sessionId, { mid: sub.transceiver.mid, ...cap });
        const wait = changed ? CAP_RETRY_MS : Math.min(2 * sub.capRetry.wait, CAP_RETRY_MAX_MS);
        sub.capRetry = { at: now + wait, wait };
        sub.cap = cap;
      }
      if (tile.main?.key === sub.trackId) tile.state.cap = sub.cap;
    }
  }

  async replaceTrack(source, track) {
    const transceiver = this.sending.get(source);
    if (transceiver) await transceiver.sender.replaceTrack(track);
    else this.changed(); // a kind we could not open before: publish it now
  }

  /** One of the gateway's candidates (null: end of them). */
  remoteCandidate(candidate) {
    this.#remote.add(candidate);
  }

  #sendCandidate(candidate) {
    if (!this.closed) signaling?.note("candidate", sessionId, { candidate });
  }

  close() {
    this.closed = true;
    clearTimeout(this.#capTimer);
    this.#sizes.disconnect();
    this.pc.close();
  }
}

// Tile caps: sizes go up in these steps (device pixels), so a resize asks for another
// layer only when it crosses one; a tile between two steps asks for the larger.
const CAP_STEPS = [160, 240, 320, 480, 640, 960, 1280, 1920, 2560, 3840];
const CAP_DEBOUNCE_MS = 500;
const CAP_RETRY_MS = 2000; // a cap not confirmed by then is sent again, then less often
const CAP_RETRY_MAX_MS = 60_000;
const MAX_CAP = 16384; // the gateway's bound for max_width/max_height

function capStep(pixels) {
  return CAP_STEPS.find((step) => step >= pixels) ?? Math.min(MAX_CAP, Math.ceil(pixels));
}

// -- p2p: one connection per other participant ------------------------------------------------

class Peer {
  senders = new Map(); // our source -> transceiver sending it
  closed = false;
  #makingOffer = false;
  #ignoreOffer = false;
  #chain = Promise.resolve(); // signals from this participant, handled one at a time

  constructor(remoteId) {
    this.id = remoteId;
    this.polite = roomState.participantId < remoteId;
    this.pc = new RTCPeerConnection({ iceServers: signaling.iceServers });
    this.pc.onicecandidate = ({ candidate }) => {
      if (candidate?.candidate) {
        this.send({ candidate: candidate.candidate, sdpMid: candidate.sdpMid, sdpMLineIndex: candidate.sdpMLineIndex });
      }
    };
    this.pc.onnegotiationneeded = async () => {
      try {
        this.#makingOffer = true;
        await this.pc.setLocalDescription();
        this.send({ type: this.pc.localDescription.type, sdp: this.pc.localDescription.sdp });
      } catch (err) {
        if (!this.closed) showError(`Cannot offer to ${this.name}: ${err.message}`);
      } finally {
        this.#makingOffer = false;
      }
    };
    this.pc.onsignalingstatechange = () => this.pc.signalingState === "stable" && this.renderTile();
    this.pc.ontrack = () => this.renderTile();
    this.pc.onconnectionstatechange = () => {
      const tile = tiles.get(this.id);
      if (tile) {
        tile.state.connection = this.pc.connectionState;
        tile.render();
      }
      if (this.pc.connectionState === "failed") this.pc.restartIce();
    };
  }

  get name() {
    return participants.get(this.id)?.name ?? this.id;
  }

  send(data) {
    if (!this.closed && signaling?.connected) signaling.send({ type: "signal", to: this.id, data });
  }

  /**
   * Sends our current tracks: each source on its own transceiver, preferring one the other
   * side's offer created that sends nothing yet (so an answer carries our media without a
   * further round). `offering`: make sure there is something to receive each kind on.
   */
  syncLocal(offering = false) {
    if (this.closed) return;
    const live = () => this.pc.getTransceivers().filter((t) => !t.stopped);
    for (const source of SOURCES) {
      const track = local[source];
      const transceiver = this.senders.get(source);
      if (transceiver && track) {
        if (transceiver.sender.track !== track) transceiver.sender.replaceTrack(track);
        continue;
      }
      if (transceiver && !track) {
        transceiver.sender.replaceTrack(null);
        transceiver.direction = "recvonly";
        this.senders.delete(source);
        continue;
      }
      if (!track) continue;
      const used = new Set(this.senders.values());
      const free = live().find(
        (t) => t.receiver.track.kind === track.kind && !t.sender.track && !used.has(t) && t.mid !== null,
      );
      const stream = source === "screen" ? screenStream : localStream;
      if (free) {
        free.sender.replaceTrack(track);
        free.sender.setStreams(stream);
        free.direction = "sendrecv";
        this.senders.set(source, free);
      } else {
        this.senders.set(source, this.pc.addTransceiver(track, { direction: "sendrecv", streams: [stream] }));
      }
    }
    if (offering) {
      for (const kind of ["video", "audio"]) {
        if (!live().some((t) => t.receiver.track.kind === kind)) this.pc.addTransceiver(kind, { direction: "recvonly" });
      }
    }
  }

  /** A `signal` from this participant: a description, a candidate, or a mute notice. */
  receive(data) {
    this.#chain = this.#chain
      .then(() => this.#handle(data))
      .catch((err) => {
        if (!this.closed) showError(`Connection with ${this.name}: ${err.message}`);
      });
  }

  async #handle(data) {
    if (this.closed || data === null || typeof data !== "object") return;
    if (data.type === "offer" || data.type === "answer") {
      const collision = data.type === "offer" && (this.#makingOffer || this.pc.signalingState !== "stable");
      this.#ignoreOffer = !this.polite && collision;
      if (this.#ignoreOffer) return; // ours wins; they will answer it
      await this.pc.setRemoteDescription({ type: data.type, sdp: data.sdp }); // rolls ours back if needed
      if (data.type === "offer") {
        this.syncLocal();
        await this.pc.setLocalDescription();
        this.send({ type: this.pc.localDescription.type, sdp: this.pc.localDescription.sdp });
      }
      this.renderTile();
    } else if (data.type === "mute") {
      const tile = tiles.get(this.id);
      if (!tile) return;
      if (data.source === "camera") tile.state.videoMuted = Boolean(data.muted);
      if (data.source === "microphone") tile.state.audioMuted = Boolean(data.muted);
      tile.render();
    } else if (typeof data.candidate === "string") {
      try {
        await this.pc.addIceCandidate({ candidate: data.candidate, sdpMid: data.sdpMid, sdpMLineIndex: data.sdpMLineIndex });
      } catch (err) {
        if (!this.#ignoreOffer) console.warn(`candidate from ${this.name} refused`, err);
      }
    }
  }

  renderTile() {
    const tile = tiles.get(this.id);
    if (!tile || this.closed) return;
    let videos = 0;
    const items = [];
    for (const t of this.pc.getTransceivers()) {
      if (t.stopped || !["recvonly", "sendrecv"].includes(t.currentDirection)) continue;
      const kind = t.receiver.track.kind;
      // Their first video is their camera (the first m-line of the first offer), later ones screens.
      const source = kind === "audio" ? "microphone" : videos++ === 0 ? "camera" : "screen";
      items.push({ key: t.mid, kind, source, track: t.receiver.track, base: null });
    }
    tile.setMedia(items);
  }

  close() {
    this.closed = true;
    this.pc.close();
  }
}

function peerFor(id) {
  let peer = peers.get(id);
  if (!peer) {
    peer = new Peer(id);
    peers.set(id, peer);
    for (const source of ["camera", "microphone"]) {
      if (localMuted[source]) peer.send({ type: "mute", source, muted: true });
    }
  }
  return peer;
}

// -- chat ------------------------------------------------------------------------------------

function renderChatTargets() {
  const select = $("chat-to");
  const current = select.value;
  select.replaceChildren(
    new Option("everyone", ""),
    ...[...participants.values()].map((p) => new Option(p.name, p.id)),
  );
  if (participants.has(current)) select.value = current;
}

function receiveChat(message) {
  const entry = { from: message.from, name: message.name, text: message.text, to: message.to ?? null, at: message.at };
  roomState.chat.push(entry);
  const li = document.createElement("li");
  const who = document.createElement("strong");
  who.textContent = message.from === roomState.participantId ? `${message.name} (you)` : message.name;
  li.append(who);
  if (entry.to) {
    const to = entry.to === roomState.participantId ? "you" : (participants.get(entry.to)?.name ?? "someone");
    const note = document.createElement("span");
    note.className = "muted";
    note.textContent = ` to ${to}`;
    li.append(note);
    li.className = "private";
  }
  li.append(`: ${message.text}`);
  const time = document.createElement("time");
  time.className = "muted";
  time.textContent = ` ${new Date(message.at * 1000).toLocaleTimeString()}`;
  li.append(time);
  $("chat-log").append(li);
  li.scrollIntoView({ block: "nearest" });
}

function sendChat(event) {
  event.preventDefault();
  const text = $("chat-text").value;
  if (!text || !signaling?.connected) return;
  const message = { type: "chat", text };
  if ($("chat-to").value) message.to = $("chat-to").value;
  signaling.send(message); // comes back to us as `chat`; refusals as `error`
  $("chat-text").value = "";
}

// -- joining and leaving -----------------------------------------------------------------------

function listen(current) {
  const on = (type, handler) =>
    current.addEventListener(type, (e) => {
      if (current === signaling) handler(e.detail);
    });
  on("participant-joined", (m) => addParticipant(m.participant));
  on("participant-left", (m) => removeParticipant(m.participant));
  on("layers", (m) => {
    if (link && m.session === sessionId) applyLayers(link.pc, m.mid, m.active);
  });
  on("layer-switched", (m) => {
    if (link && m.session === sessionId) link.capsHeld(m.receiving);
  });
  on("track-published", (m) => {
    if (m.participant === roomState.participantId) {
      ownTracks.set(m.track.source, m.track.id);
      // Muted before the gateway knew the track: tell it now.
      if (localMuted[m.track.source]) signaling.send({ type: "mute", track: m.track.id, muted: true });
      return;
    }
    if (!participants.has(m.participant)) return;
    addRemoteTrack(m.participant, m.track);
    link?.changed();
  });
  on("track-unpublished", (m) => {
    const track = remoteTracks.get(m.track);
    if (track) {
      remoteTracks.delete(m.track);
      updateMuted(track.participant);
      link?.changed(); // the gateway stopped sending it: make its transceiver inactive
    }
    for (const [source, id] of ownTracks) if (id === m.track) ownTracks.delete(source);
  });
  on("track-muted", (m) => {
    const track = remoteTracks.get(m.track);
    if (!track) return;
    track.muted = m.muted;
    updateMuted(track.participant);
  });
  on("chat", receiveChat);
  on("signal", (m) => {
    if (roomState.mode !== "p2p" || !participants.has(m.from)) return;
    peerFor(m.from).receive(m.data);
  });
  on("candidate", (m) => {
    if (link && m.session === sessionId) link.remoteCandidate(m.candidate);
  });
  on("session-ended", (m) => {
    if (m.session !== sessionId || leaving) return;
    teardown(`ended: ${m.reason}`);
    showError(`The gateway ended your participation: ${m.reason}`);
  });
  on("error", (m) => showError(`${m.code}: ${m.message}`));
  on("close", () => {
    if (roomState.state === "reconnecting") return; // reconnect() sees it
    if (!leaving && roomState.state === "joined" && roomState.participantId && resumeToken) {
      reconnect();
      return;
    }
    teardown("disconnected");
    showError("The connection to the gateway was lost");
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The socket dropped while joined: take our participant back on a new one. */
async function reconnect() {
  setState("reconnecting");
  const giveUp = performance.now() + RECONNECT_GIVE_UP_MS;
  let delay = 250;
  for (;;) {
    const current = (signaling = new Signaling());
    listen(current);
    try {
      await current.connect();
      const resumed = await current.request({
        type: "resume",
        session: sessionId,
        token: resumeToken,
      });
      if (current !== signaling) return; // left meanwhile
      setState("joined");
      reconcile(resumed.room);
      link?.resumed();
      return;
    } catch (err) {
      if (current !== signaling) return;
      if (err.code !== "closed" || performance.now() > giveUp) {
        // cannot-resume (the grace period is over) or no gateway: end as a lost connection.
        teardown("disconnected");
        showError(`The connection to the gateway was lost: ${describeError(err)}`);
        return;
      }
      current.close();
    }
    await sleep(delay);
    if (signaling === null || leaving) return;
    delay = Math.min(delay * 2, 2000);
  }
}

/** `resumed`'s room: whoever and whatever came or went while the socket was down. */
function reconcile(room) {
  const present = new Map(room.participants.map((p) => [p.id, p]));
  for (const id of [...participants.keys()]) if (!present.has(id)) removeParticipant(id);
  let tracksChanged = false;
  for (const p of room.participants) {
    const tracks = p.tracks ?? [];
    if (p.id === roomState.participantId) {
      ownTracks.clear();
      for (const track of tracks) {
        ownTracks.set(track.source, track.id);
        // Muted or unmuted while the socket was down: tell the gateway now.
        const muted = localMuted[track.source];
        if (muted !== undefined && muted !== Boolean(track.muted)) {
          signaling.send({ type: "mute", track: track.id, muted });
        }
      }
      continue;
    }
    if (!participants.has(p.id)) {
      addParticipant(p);
      tracksChanged ||= tracks.length > 0;
      // p2p: their first offer may have been lost with the socket: offer to them.
      if (roomState.mode === "p2p") peerFor(p.id).syncLocal(true);
      continue;
    }
    const ids = new Set(tracks.map((t) => t.id));
    for (const [trackId, track] of remoteTracks) {
      if (track.participant === p.id && !ids.has(trackId)) {
        remoteTracks.delete(trackId);
        tracksChanged = true;
      }
    }
    for (const track of tracks) {
      tracksChanged ||= !remoteTracks.has(track.id);
      addRemoteTrack(p.id, track); // refreshes its muted state too
    }
  }
  for (const peer of peers.values()) {
    // Mute notices sent while the socket was down were lost.
    for (const source of ["camera", "microphone"]) peer.send({ type: "mute", source, muted: localMuted[source] });
  }
  if (tracksChanged) link?.changed();
}

async function join() {
  setState("opening camera");
  $("own-tile").hidden = false;
  renderOwnTile();
  await openMedia();
  setState("connecting");
  const current = (signaling = new Signaling());
  listen(current);
  let joined;
  try {
    await current.connect();
    const message = { type: "join", room: roomName, name: displayName };
    if (requestedMode) message.mode = requestedMode;
    joined = await current.request(message);
  } catch (err) {
    if (current !== signaling) return;
    teardown("error");
    showError(`Cannot join: ${describeError(err)}`);
    return;
  }
  roomState.participantId = joined.participant;
  roomState.identity = joined.identity ?? null;
  roomState.name = joined.name ?? displayName;
  displayName = roomState.name; // a token's name wins over the one we asked for
  renderOwnTile();
  sessionId = joined.session;
  resumeToken = joined.resume_token ?? null;
  roomState.mode = joined.room.mode;
  $("mode").textContent = roomState.mode === "p2p" ? "peer-to-peer" : "through the gateway";
  for (const participant of joined.room.participants) addParticipant(participant);
  $("controls").hidden = false;
  $("chat").hidden = false;
  $("chat-form").hidden = false;
  setState("joined");
  if (roomState.mode === "p2p") {
    // We are the newer joiner: we offer to everyone already here.
    for (const id of participants.keys()) peerFor(id).syncLocal(true);
  } else {
    link = new SfuLink();
    link.changed();
  }
}

/** Ends everything on our side; the join form comes back to join again. */
function teardown(state) {
  const current = signaling;
  signaling = null;
  link?.close();
  link = null;
  for (const peer of peers.values()) peer.close();
  peers.clear();
  for (const id of [...participants.keys()]) removeParticipant(id);
  remoteTracks.clear();
  ownTracks.clear();
  stopLocalMedia();
  current?.close();
  roomState.connection = "closed";
  $("controls").hidden = true;
  $("own-tile").hidden = true;
  $("chat-form").hidden = true; // the history stays
  showJoinForm();
  setState(state);
}

function leave() {
  leaving = true;
  if (signaling?.connected && roomState.participantId) {
    // Explicitly: a socket that merely drops may be kept for a reconnect grace period.
    signaling.send({ type: "leave", session: sessionId });
  }
  teardown("left");
  showError("");
}

function showJoinForm() {
  $("join-room").value = roomName;
  $("join-name").value = displayName;
  $("join-mode").value = requestedMode ?? "";
  $("join-width").value = params.get("width") ?? "";
  $("join-height").value = params.get("height") ?? "";
  $("join-width").disabled = !params.get("width");
  $("join-height").disabled = !params.get("height");
  $("join-submit").textContent = roomState.state === "idle" ? "Join" : "Join again";
  $("join").hidden = false;
}

// Test hook: the socket drops (no `leave`), as when the network goes away.
window.roomDropSocket = () => signaling?.close();

function init() {
  $("room-name").textContent = roomName;
  $("mute-camera").addEventListener("click", () => setMuted("camera", !localMuted.camera));
  $("mute-mic").addEventListener("click", () => setMuted("microphone", !localMuted.microphone));
  $("share-screen").addEventListener("click", toggleScreen);
  $("leave").addEventListener("click", leave);
  $("camera").addEventListener("change", () => changeDevice("camera"));
  $("microphone").addEventListener("change", () => changeDevice("microphone"));
  $("chat-form").addEventListener("submit", sendChat);
  $("enable-sound").addEventListener("click", () => {
    for (const audio of document.querySelectorAll(".tile audio")) audio.play().catch(() => {});
    $("enable-sound").hidden = true;
  });
  window.addEventListener("pagehide", () => {
    if (signaling?.connected && roomState.participantId) {
      signaling.send({ type: "leave", session: sessionId });
    }
  });
  setInterval(() => sample().catch((err) => console.warn("getStats failed", err)), 1000);
  if (!roomName || !displayName) {
    showJoinForm();
    return;
  }
  join().catch((err) => {
    teardown("error");
    showError(`Cannot join: ${err.message}`);
  });
}

init();
