// The page's access token (docs/protocol.md, "Authentication"): taken from ?token= into
// sessionStorage, sent as `Authorization: Bearer` on fetches and as `auth` on the socket;
// without one, or when the gateway refuses it, a prompt asks for one.
//
//   import { authFetch, token } from "./token.js";
//   const response = await authFetch("/api/rooms");   // as fetch(), plus the token
//
// With auth off the gateway never asks: a page without a token behaves as it always did.

const STORAGE_KEY = "webrtc-gateway.token";
// The gateway's 401 codes: the token is missing, malformed, unknown or expired.
export const TOKEN_CODES = new Set(["token-required", "invalid-token", "token-expired"]);

let retry = () => location.reload();

/** ?token= into sessionStorage, and out of the address bar, history and Referer. */
function adoptUrlToken() {
  const url = new URL(location.href);
  if (!url.searchParams.has("token")) return;
  const value = url.searchParams.get("token").trim();
  if (value) sessionStorage.setItem(STORAGE_KEY, value);
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url);
}

adoptUrlToken();

/** The current token, or null (auth off, or none given yet). */
export function token() {
  return sessionStorage.getItem(STORAGE_KEY) || null;
}

export function setToken(value) {
  if (value) sessionStorage.setItem(STORAGE_KEY, value);
  else sessionStorage.removeItem(STORAGE_KEY);
}

/** The token's claims as the page can read them (unverified: only for defaults such as
 * a display name; the gateway decides what the token is worth). */
export function claims() {
  const value = token();
  if (!value) return null;
  try {
    const part = value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part.padEnd(Math.ceil(part.length / 4) * 4, "=")), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

/** `init` for fetch() with the Authorization header added when there is a token. */
export function withToken(init = {}) {
  const value = token();
  if (!value) return init;
  const headers = new Headers(init.headers);
  headers.set("Authorization", `Bearer ${value}`);
  return { ...init, headers };
}

/** fetch() with the token; a 401 (or a grant's 403) also brings up the prompt.
 * Resolves with the response. */
export async function authFetch(input, init = {}) {
  const response = await fetch(input, withToken(init));
  if (response.status === 401 || response.status === 403) {
    const body = await response.clone().json().catch(() => null);
    if (response.status === 401) refused(body?.error ?? "token-required", body?.message ?? "HTTP 401");
    else if (body?.error === "forbidden") notAllowed(body.message);
  }
  return response;
}

/** What the prompt's button does once a token is stored (default: reload the page). */
export function onToken(callback) {
  retry = callback;
}

/** True while the prompt waits for a token (pages stop retrying on their own). */
export function waitingForToken() {
  return document.getElementById("token-prompt")?.hidden === false;
}

/** The gateway refused the request for want of a good token: forget ours, ask for one. */
export function refused(code, message) {
  const had = token() !== null;
  setToken(null);
  // Several requests may be refused at once: the first says why a token was refused.
  if (!had && waitingForToken()) return;
  showPrompt(
    had && code !== "token-required"
      ? `The gateway refused the access token: ${message} (${code}).`
      : "This gateway needs an access token.",
  );
}

/** The grant (a token's, or auth.anonymous's without one) does not cover this page's
 * request: offer to use another token. With auth off the gateway never says `forbidden`. */
export function notAllowed(message) {
  if (waitingForToken()) return;
  showPrompt(
    token() ? `The access token does not allow this: ${message}.` : `This needs an access token: ${message}.`,
  );
}

// -- the prompt ----------------------------------------------------------------------------

/** The CLI command that mints a token this page can use. */
function mintCommand() {
  const page = location.pathname.split("/").pop() || "index.html";
  const grants =
    {
      "publish.html": "--publish",
      "watch.html": "--subscribe",
      "room.html": "--publish --subscribe --data",
      "recordings.html": "--record",
    }[page] ?? "--list";
  const room = new URLSearchParams(location.search).get("room") || "ROOM";
  const roomArg = grants === "--list" ? "" : ` --room '${room}'`;
  return `webrtc-gateway token --identity YOUR-NAME${roomArg} ${grants} --url ${location.origin}${location.pathname}`;
}

/** A pasted link works as well as the bare token. */
function parseInput(text) {
  const value = text.trim();
  try {
    return new URL(value).searchParams.get("token")?.trim() || value;
  } catch {
    return value;
  }
}

function buildPrompt() {
  const section = document.createElement("section");
  section.id = "token-prompt";
  section.className = "token-prompt";
  const reason = document.createElement("p");
  reason.id = "token-reason";
  reason.className = "error";
  const form = document.createElement("form");
  form.id = "token-form";
  const label = document.createElement("label");
  const input = document.createElement("input");
  Object.assign(input, { id: "token-input", required: true, autocomplete: "off", spellcheck: false });
  input.placeholder = "eyJ… or a link with ?token=";
  label.append("Access token ", input);
  const submit = document.createElement("button");
  submit.type = "submit";
  submit.id = "token-submit";
  submit.textContent = "Use this token";
  form.append(label, submit);
  const help = document.createElement("p");
  help.className = "muted";
  const command = document.createElement("code");
  command.id = "token-command";
  help.append("Ask the gateway's operator for a token or a link; they make one with ", command);
  section.append(reason, form, help);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = parseInput(input.value);
    if (!value) return;
    setToken(value);
    input.value = "";
    section.hidden = true;
    retry();
  });
  (document.querySelector("main") ?? document.body).prepend(section);
  return section;
}

function showPrompt(reason) {
  const section = document.getElementById("token-prompt") ?? buildPrompt();
  section.querySelector("#token-reason").textContent = reason;
  section.querySelector("#token-command").textContent = mintCommand();
  section.hidden = false;
}
