// The room list: polls GET /api/rooms every 2 s (with auth on, a token with `roomList`).

import { authFetch, waitingForToken } from "./token.js";

const tbody = document.getElementById("rooms");
const empty = document.getElementById("empty");
const error = document.getElementById("error");

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function render(rooms) {
  tbody.replaceChildren(
    ...rooms.map((room) => {
      const tr = document.createElement("tr");
      tr.dataset.room = room.room;
      const link = document.createElement("a");
      link.href = `watch.html?room=${encodeURIComponent(room.room)}`;
      link.textContent = "Watch";
      const tracks = room.tracks.map((t) => `${t.kind} ${t.codec}`).join(", ");
      tr.append(
        cell(room.room, "name"),
        cell(
          room.live ? "live" : room.paused ? "paused" : "waiting",
          room.live ? "status live" : "status muted",
        ),
        cell(String(room.viewers), "viewers"),
        cell(tracks || "–", "tracks"),
      );
      const action = document.createElement("td");
      action.append(link);
      tr.append(action);
      return tr;
    }),
  );
  empty.hidden = rooms.length > 0;
}

async function poll() {
  if (waitingForToken()) return; // the prompt's token reloads the page
  try {
    const response = await authFetch("/api/rooms", { cache: "no-store" });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      throw new Error(body?.message ? `${body.message} (${body.error})` : `GET /api/rooms: HTTP ${response.status}`);
    }
    render(body.rooms);
    error.hidden = true;
  } catch (err) {
    error.textContent = `Cannot list rooms: ${err.message}`;
    error.hidden = false;
  }
}

poll();
setInterval(poll, 2000);
