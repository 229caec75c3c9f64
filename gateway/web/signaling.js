// The gateway's WebSocket signaling client (docs/protocol.md, version 2).
//
//   const signaling = new Signaling();
//   await signaling.connect();                  // resolves on `hello`
//   const session = signaling.createSession(room);
//   session.pc.ontrack = ...;                   // hook the peer connection up first
//   await session.subscribe();                  // or: await session.publish(stream)
//   // session.subscribe(["video", "audio"], {pipeline: "gray"}): through a named pipeline
//
// Room events (`room-state`, `publisher-joined`, `publisher-left`), `session-ended`,
// unsolicited `error`s and `close` are dispatched as CustomEvents whose detail is the message.
// So are the events of rooms of participants (`participant-joined`, `track-published`,
// `chat`, `signal`, ...) and `candidate`s for a session no PeerSession owns (a participant's
// one connection, which room.js manages); `request({type: "join", ...})` resolves with `joined`
// (and `request({type: "resume", ...})` with `resumed`).
//
// With auth on, `hello` says `auth_required`: connect() then sends the page's token
// (token.js) in an `auth` message and resolves on `authenticated`, whose ice_servers
// (TURN credentials for this identity) replace hello's. Without a token, or when the
// gateway refuses it, connect() rejects and token.js asks the user for one.

import { TOKEN_CODES, notAllowed, refused, token } from "./token.js";

export class SignalingError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "SignalingError";
    this.code = code;
  }
}

// Id prefix of messages about an existing session (candidate, leave): they have no reply.
const SESSION_NOTE = "session:";
// The gateway's close code for a socket that sent no good token in time.
const AUTH_TIMEOUT_CLOSE = 4401;

function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}/ws`;
}

export class Signaling extends EventTarget {
  iceServers = [];
  identity = null; // the token's identity the gateway acts for (null: anonymous, auth off)
  name = null; // the token's display name, if it has one
  #url;
  #ws = null;
  #connecting = null;
  #nextId = 1;
  #pending = new Map(); // request id -> {resolve, reject, session}
  #sessions = new Map(); // session id -> PeerSession

  constructor(url = defaultUrl()) {
    super();
    this.#url = url;
  }

  get connected() {
    return this.#ws !== null && this.#ws.readyState === WebSocket.OPEN;
  }

  connect() {
    this.#connecting ??= new Promise((resolve, reject) => {
      const ws = new WebSocket(this.#url);
      this.#ws = ws;
      ws.onmessage = (event) => {
        let message;
        try {
          message = JSON.parse(event.data);
        } catch {
          return;
        }
        if (message.type === "hello") {
          this.iceServers = message.ice_servers ?? [];
          this.identity = message.identity ?? null;
          if (!message.auth_required) resolve(this);
          else {
            this.#authenticate().then(
              () => resolve(this),
              (err) => {
                reject(err);
                ws.close(); // the gateway would close it after auth.ws_auth_timeout_s
              },
            );
          }
        }
        this.#dispatch(message);
      };
      ws.onclose = (event) => {
        if (event.code === AUTH_TIMEOUT_CLOSE) refused("token-required", event.reason);
        reject(new SignalingError("closed", `cannot connect to ${this.#url}`));
        this.#closed(event);
      };
    });
    return this.#connecting;
  }

  close() {
    this.#ws?.close();
  }

  /** Sends the page's token; resolves on `authenticated`. */
  async #authenticate() {
    const value = token();
    if (!value) {
      refused("token-required", "no token");
      throw new SignalingError("token-required", "this gateway needs an access token");
    }
    const reply = await this.request({ type: "auth", token: value }); // a refusal: see #dispatch
    this.iceServers = reply.ice_servers ?? this.iceServers;
    this.identity = reply.identity ?? null;
    this.name = reply.name || null;
  }

  send(message) {
    if (!this.connected) throw new SignalingError("closed", "the signaling socket is closed");
    this.#ws.send(JSON.stringify(message));
  }

  /** Sends a request with a fresh id; resolves with the reply, rejects on its `error`. */
  request(message, session = null) {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, session });
      try {
        this.send({ ...message, id });
      } catch (err) {
        this.#pending.delete(id);
        reject(err);
      }
    });
  }

  watch(room) {
    this.send({ type: "watch", room });
  }

  createSession(room) {
    return new PeerSession(this, room);
  }

  /** Used by PeerSession: the gateway sends nothing more about a closed session. */
  forget(session) {
    this.#sessions.delete(session.id);
  }

  /** Used by PeerSession: `candidate` and `leave`, whose errors are only logged. */
  note(type, sessionId, fields = {}) {
    if (this.connected) this.send({ type, session: sessionId, ...fields, id: SESSION_NOTE + sessionId });
  }

  #dispatch(message) {
    const pending = message.id != null ? this.#pending.get(message.id) : undefined;
    switch (message.type) {
      case "answer":
      case "authenticated": // reply to `auth`
      case "joined": // reply to a room `join`
      case "resumed": // reply to a room `resume`
      case "pong":
        if (!pending) return;
        this.#pending.delete(message.id);
        if (pending.session) {
          // Register synchronously: the session's candidates follow in the next messages.
          this.#sessions.set(message.session, pending.session);
          pending.session.attach(message.session);
        }
        pending.resolve(message);
        return;
      case "error":
        // No token, a bad one, or it expired: the page asks for another.
        if (TOKEN_CODES.has(message.code)) refused(message.code, message.message);
        else if (message.code === "forbidden") notAllowed(message.message);
        if (pending) {
          this.#pending.delete(message.id);
          pending.reject(new SignalingError(message.code, message.message));
          return;
        }
        if (String(message.id).startsWith(SESSION_NOTE)) {
          // About a candidate or leave of a session that may have just ended: not the user's concern.
          console.warn("gateway:", message.code, message.message);
          return;
        }
        break;
      case "candidate": {
        const session = this.#sessions.get(message.session);
        if (!session) break; // a room participant's connection: the page handles it
        session.remoteCandidate(message.candidate);
        return;
      }
      case "layers": {
        // The gateway says which simulcast layers anyone takes: stop sending the others.
        const session = this.#sessions.get(message.session);
        if (!session) break; // a room participant's connection: the page handles it
        applyLayers(session.pc, message.mid, message.active);
        return;
      }
      case "session-ended": {
        const session = this.#sessions.get(message.session);
        this.#sessions.delete(message.session);
        session?.ended(message.reason);
        break;
      }
    }
    this.dispatchEvent(new CustomEvent(message.type, { detail: message }));
  }

  #closed(event) {
    this.#ws = null;
    this.#connecting = null;
    for (const { reject } of this.#pending.values()) {
      reject(new SignalingError("closed", "the signaling socket closed"));
    }
    this.#pending.clear();
    // The gateway ends every session of a closed socket.
    for (const session of this.#sessions.values()) session.ended("socket-closed");
    this.#sessions.clear();
    this.dispatchEvent(new CustomEvent("close", { detail: { code: event.code, reason: event.reason } }));
  }
}

/** One publish or subscribe: an RTCPeerConnection plus its trickled candidates. */
/** The gateway's candidates for one peer connection: held until the first answer is applied
 * (addIceCandidate needs a remote description), then added in order; null ends them. */
export class RemoteCandidates {
  #pc;
  #isClosed;
  #ready = false;
  #queue = [];

  constructor(pc, isClosed) {
    this.#pc = pc;
    this.#isClosed = isClosed;
  }

  add(candidate) {
    if (this.#ready) this.#apply(candidate);
    else this.#queue.push(candidate);
  }

  /** The first answer is applied: add what waited. Later calls do nothing. */
  async ready() {
    if (this.#ready) return;
    this.#ready = true;
    for (const candidate of this.#queue.splice(0)) await this.#apply(candidate);
  }

  async #apply(candidate) {
    if (this.#isClosed()) return;
    try {
      await this.#pc.addIceCandidate(candidate ?? undefined);
    } catch (err) {
      console.warn("gateway candidate refused", candidate, err);
    }
  }
}

/**
 * Simulcast encodings for a camera track (docs/protocol.md#simulcast-layers), or null.
 * libwebrtc sends three layers from 960x540 up and two from 640x360 (it drops the largest
 * past that count), so that many are asked for. The full picture comes first: a gateway
 * that takes no simulcast gets the first encoding alone (JSEP).
 */
export function simulcastEncodings(track) {
  const { width = 0, height = 0 } = track.getSettings();
  const full = { rid: "f" };
  const half = { rid: "h", scaleResolutionDownBy: 2 };
  const quarter = { rid: "q", scaleResolutionDownBy: 4 };
  if (width >= 960 && height >= 540) return [full, half, quarter];
  if (width >= 640 && height >= 360) return [full, half];
  return null;
}

/**
 * Turns a sender's simulcast encodings on or off by rid ({rid: bool}) as the gateway's
 * `layers` message asks (docs/protocol.md#simulcast-layers): nobody watches the others.
 */
export async function applyLayers(pc, mid, active) {
  const transceiver = pc.getTransceivers().find((t) => t.mid === mid);
  if (!transceiver) return;
  const parameters = transceiver.sender.getParameters();
  if (!parameters.encodings?.length) return;
  let changed = false;
  for (const encoding of parameters.encodings) {
    const wanted = active[encoding.rid];
    if (typeof wanted === "boolean" && encoding.active !== wanted) {
      encoding.active = wanted;
      changed = true;
    }
  }
  if (changed) await transceiver.sender.setParameters(parameters);
}

export class PeerSession extends EventTarget {
  id = null;
  closed = false;
  requestedAt = null; // performance.now() when the offer was sent
  #signaling;
  #room;
  #remote;
  #localQueue = []; // our candidates gathered before we knew the session id

  constructor(signaling, room) {
    super();
    this.#signaling = signaling;
    this.#room = room;
    this.pc = new RTCPeerConnection({ iceServers: signaling.iceServers });
    this.#remote = new RemoteCandidates(this.pc, () => this.closed);
    this.pc.onicecandidate = ({ candidate }) => {
      // A null candidate (or an empty one, in older browsers) ends our candidates.
      this.#localCandidate(candidate?.candidate ? candidate : null);
    };
    this.pc.onconnectionstatechange = () => {
      this.dispatchEvent(new CustomEvent("state", { detail: this.pc.connectionState }));
    };
  }

  get state() {
    return this.closed ? "closed" : this.pc.connectionState;
  }

  /** `simulcast`: send the camera as layers (simulcastEncodings) the gateway receives apart. */
  async publish(stream, { simulcast = true } = {}) {
    for (const track of stream.getTracks()) {
      const encodings = simulcast && track.kind === "video" ? simulcastEncodings(track) : null;
      this.pc.addTransceiver(track, {
        direction: "sendonly",
        streams: [stream],
        ...(encodings ? { sendEncodings: encodings } : {}),
      });
    }
    await this.#negotiate("publish");
  }

  /** `pipeline`: receive the tracks of its kind processed by that named pipeline. */
  async subscribe(kinds = ["video", "audio"], { pipeline = null } = {}) {
    for (const kind of kinds) this.pc.addTransceiver(kind, { direction: "recvonly" });
    await this.#negotiate("subscribe", pipeline ? { pipeline } : {});
  }

  async #negotiate(type, fields = {}) {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    this.requestedAt = performance.now();
    let answer;
    try {
      answer = await this.#signaling.request({ type, room: this.#room, sdp: offer.sdp, ...fields }, this);
    } catch (err) {
      this.#shutdown();
      throw err;
    }
    if (this.closed) return;
    // Per mid: the track received and its pipeline/rendition (see docs/protocol.md).
    this.receiving = answer.receiving ?? {};
    await this.pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    await this.#remote.ready();
  }

  /** Called by Signaling when the answer names our session id. */
  attach(id) {
    this.id = id;
    if (this.closed) {
      // Closed while the offer was in flight: end the session the gateway just made.
      this.#signaling.forget(this);
      this.#signaling.note("leave", id);
      return;
    }
    for (const candidate of this.#localQueue.splice(0)) this.#sendCandidate(candidate);
  }

  /** A gateway candidate (null = end of candidates). */
  remoteCandidate(candidate) {
    this.#remote.add(candidate);
  }

  #localCandidate(candidate) {
    const payload = candidate && {
      candidate: candidate.candidate,
      sdpMid: candidate.sdpMid,
      sdpMLineIndex: candidate.sdpMLineIndex,
    };
    if (this.id === null) this.#localQueue.push(payload);
    else this.#sendCandidate(payload);
  }

  #sendCandidate(candidate) {
    if (!this.closed) this.#signaling.note("candidate", this.id, { candidate });
  }

  /** Ends the session on our side; tells the gateway unless it is ending it anyway. */
  close({ leave = true } = {}) {
    if (this.closed) return;
    if (leave && this.id !== null) this.#signaling.note("leave", this.id);
    this.#shutdown();
  }

  /** The gateway ended the session. */
  ended(reason) {
    if (this.closed) return;
    this.#shutdown();
    this.dispatchEvent(new CustomEvent("ended", { detail: reason }));
  }

  #shutdown() {
    this.closed = true;
    if (this.id !== null) this.#signaling.forget(this);
    this.pc.close();
    this.dispatchEvent(new CustomEvent("state", { detail: "closed" }));
  }
}
