// Publishes camera and microphone to a room over the WebSocket protocol.
// Query: ?room=NAME[&width=1280&height=720][&hint=motion|detail][&simulcast=0]
// The camera goes out as simulcast layers from 640x360 up (simulcast=0: one stream).
// `hint` sets the camera track's contentHint: "detail" asks the encoder to keep the
// resolution and drop frame rate under CPU or bandwidth pressure.
// With auth on, ?token= (or the prompt) gives the token; it needs `canPublish` for the room.

import { Signaling } from "./signaling.js";
import { onToken } from "./token.js";

const params = new URLSearchParams(location.search);
const room = params.get("room") ?? "";
const width = Number(params.get("width")) || 1280;
const height = Number(params.get("height")) || 720;
const hint = params.get("hint") ?? "";
const simulcast = params.get("simulcast") !== "0";

const $ = (id) => document.getElementById(id);
const preview = $("preview");
const cameraSelect = $("camera");
const micSelect = $("microphone");
const startButton = $("start");
const stopButton = $("stop");

const publishState = (window.publishState = { state: "idle", sessionId: null, identity: null });
const signaling = new Signaling();
let stream = null;
let session = null;

function setState(state) {
  publishState.state = state;
  publishState.sessionId = session?.id ?? null;
  $("status").textContent = state;
  const as = publishState.identity ? ` as ${publishState.identity}` : ""; // the token's identity
  $("session").textContent = publishState.sessionId ? `session ${publishState.sessionId}${as}` : "";
  const active = session !== null && !session.closed;
  startButton.disabled = active || stream === null;
  stopButton.disabled = !active;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function constraints() {
  const video = { width: { ideal: width }, height: { ideal: height } };
  if (cameraSelect.value) video.deviceId = { exact: cameraSelect.value };
  const audio = micSelect.value ? { deviceId: { exact: micSelect.value } } : true;
  return { video, audio };
}

function fillSelect(select, devices, current) {
  select.replaceChildren(
    ...devices.map((device, i) => new Option(device.label || `${device.kind} ${i + 1}`, device.deviceId)),
  );
  if (current && devices.some((d) => d.deviceId === current)) select.value = current;
}

async function listDevices() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const trackDevice = (kind) => stream?.getTracks().find((t) => t.kind === kind)?.getSettings().deviceId;
  fillSelect(cameraSelect, devices.filter((d) => d.kind === "videoinput"), trackDevice("video"));
  fillSelect(micSelect, devices.filter((d) => d.kind === "audioinput"), trackDevice("audio"));
}

/** (Re)opens the chosen devices; while publishing, swaps the tracks being sent. */
async function openMedia() {
  const next = await navigator.mediaDevices.getUserMedia(constraints());
  for (const track of next.getVideoTracks()) track.contentHint = hint;
  if (session && !session.closed) {
    for (const sender of session.pc.getSenders()) {
      const track = next.getTracks().find((t) => t.kind === sender.track?.kind);
      if (track) await sender.replaceTrack(track);
    }
  }
  stream?.getTracks().forEach((t) => t.stop());
  stream = next;
  preview.srcObject = stream;
  setState(publishState.state);
}

async function changeDevice() {
  try {
    await openMedia();
    showError("");
  } catch (err) {
    showError(`Cannot open the selected device: ${err.message}`);
  }
}

async function start() {
  showError("");
  setState("connecting signaling");
  try {
    await signaling.connect();
    publishState.identity = signaling.identity;
    session = signaling.createSession(room);
    session.addEventListener("state", (e) => setState(e.detail));
    session.addEventListener("ended", (e) => {
      setState("ended");
      showError(`The gateway ended the session: ${e.detail}`);
    });
    setState("negotiating");
    await session.publish(stream, { simulcast });
    setState(session.state);
  } catch (err) {
    session?.close();
    setState("error");
    showError(`Cannot publish: ${err.message}${err.code ? ` (${err.code})` : ""}`);
  }
}

function stop() {
  session?.close();
  setState("stopped");
}

async function init() {
  $("room-name").textContent = room;
  const watch = new URL(`watch.html?room=${encodeURIComponent(room)}`, location.href);
  $("watch-link").href = watch.href;
  $("watch-link").textContent = watch.href;
  if (!room) {
    setState("error");
    showError("No room given: open publish.html?room=NAME");
    return;
  }
  signaling.addEventListener("error", (e) => showError(`${e.detail.code}: ${e.detail.message}`));
  signaling.addEventListener("close", () => {
    if (session) showError("The connection to the gateway was lost");
  });
  startButton.addEventListener("click", start);
  onToken(start); // the page talks to the gateway only to publish: a new token retries that
  stopButton.addEventListener("click", stop);
  cameraSelect.addEventListener("change", changeDevice);
  micSelect.addEventListener("change", changeDevice);
  try {
    await openMedia();
    await listDevices();
    navigator.mediaDevices.addEventListener("devicechange", listDevices);
    setState("ready");
  } catch (err) {
    setState("error");
    showError(`Cannot open camera and microphone: ${err.message}`);
  }
}

init();
