// The recordings page: lists GET /api/recordings (every 3 s), plays one in the <video>
// (the server answers Range requests, so the player can seek), downloads, deletes,
// and starts/stops recording a room. Query: ?play=ID plays that recording at once.
// With auth on, the API calls carry the page's token (a `roomRecord` grant); the player
// and the download link use the listing's signed URLs, which need none.

import { authFetch, waitingForToken } from "./token.js";

const $ = (id) => document.getElementById(id);
const tbody = $("recordings");
const player = $("player");

const recordingsState = (window.recordingsState = { recordings: [], playing: null, error: null });

function showError(message) {
  recordingsState.error = message || null;
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function call(method, url) {
  const response = await authFetch(url, { method, cache: "no-store" });
  if (!response.ok) {
    let message = `${method} ${url}: HTTP ${response.status}`;
    try {
      const body = await response.json();
      message = `${body.message} (${body.error})`;
    } catch {}
    throw new Error(message);
  }
  return response.status === 204 ? null : response.json();
}

function formatDuration(seconds) {
  if (seconds == null) return "–";
  const s = Math.round(seconds);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function formatSize(bytes) {
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function button(label, onClick, className) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.className = className;
  b.addEventListener("click", onClick);
  return b;
}

/** The signed URL with download=1 added (its signature covers the path, not the query). */
function downloadUrl(url) {
  const download = new URL(url, location.href);
  download.searchParams.set("download", "1");
  return `${download.pathname}${download.search}`;
}

function play(recording) {
  recordingsState.playing = recording.id;
  player.hidden = false;
  player.src = recording.url;
  player.play().catch(() => {}); // autoplay may be refused; the controls remain
  $("playing").textContent = `Playing ${recording.room}, ${recording.start ?? ""}`;
  $("playing").hidden = false;
}

async function remove(recording) {
  if (recordingsState.playing === recording.id) {
    player.removeAttribute("src");
    player.load();
    player.hidden = true;
    recordingsState.playing = null;
  }
  try {
    await call("DELETE", `/api/recordings/${encodeURIComponent(recording.id)}`);
    await refresh();
  } catch (err) {
    showError(`Cannot delete: ${err.message}`);
  }
}

function render(recordings) {
  tbody.replaceChildren(
    ...recordings.map((recording) => {
      const tr = document.createElement("tr");
      tr.dataset.id = recording.id;
      const actions = document.createElement("td");
      const download = document.createElement("a");
      download.href = downloadUrl(recording.url);
      download.textContent = "Download";
      actions.append(button("Play", () => play(recording), "play"), " ", download);
      if (recording.state !== "recording") {
        actions.append(" ", button("Delete", () => remove(recording), "delete"));
      }
      tr.append(
        cell(recording.room ?? "?", "room"),
        cell((recording.start ?? "").replace("T", " ").replace("+00:00", ""), "start"),
        cell(formatDuration(recording.duration_s), "duration"),
        cell(formatSize(recording.size), "size"),
        cell(recording.state, `state ${recording.state === "recording" ? "live" : "muted"}`),
        actions,
      );
      return tr;
    }),
  );
  $("empty").hidden = recordings.length > 0;
}

async function refresh() {
  if (waitingForToken()) return; // the prompt's token reloads the page
  try {
    const { recordings } = await call("GET", "/api/recordings");
    recordingsState.recordings = recordings;
    render(recordings);
    if (recordingsState.error?.startsWith("Cannot list")) showError("");
  } catch (err) {
    showError(`Cannot list recordings: ${err.message}`);
  }
}

function roomUrl() {
  return `/api/rooms/${encodeURIComponent($("room-input").value)}/recording`;
}

$("control").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await call("POST", roomUrl());
    showError("");
    await refresh();
  } catch (err) {
    showError(`Cannot start recording: ${err.message}`);
  }
});

$("record-stop").addEventListener("click", async () => {
  try {
    await call("DELETE", roomUrl());
    showError("");
    await refresh();
  } catch (err) {
    showError(`Cannot stop recording: ${err.message}`);
  }
});

player.addEventListener("error", () => {
  showError(`Cannot play: ${player.error?.message || "unsupported file"}`);
});

const params = new URLSearchParams(location.search);
if (params.get("room")) $("room-input").value = params.get("room");
await refresh();
if (params.get("play")) {
  const wanted = recordingsState.recordings.find((r) => r.id === params.get("play"));
  if (wanted) play(wanted);
}
setInterval(refresh, 3000);
