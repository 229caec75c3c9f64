"""A Chromium WHEP viewer (page JavaScript) that reads every presented frame's number."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page

from .pages import GATHERED

# A WHEP viewer that reads the frame number (16 blocks: 12 bits and 4 check bits, as
# tests/support/media.py read_frame_number) from every frame the <video> presents, and
# plays the audio through an <audio> element so Chromium's audio stats count samples.
# ``whep.times`` holds when each number was read (performance.now(), ms).
WATCH = (
    "async ({room}) => {"
    + GATHERED
    + """
  const pc = new RTCPeerConnection({iceServers: []});
  pc.addTransceiver("video", {direction: "recvonly"});
  pc.addTransceiver("audio", {direction: "recvonly"});
  const video = document.createElement("video");
  Object.assign(video, {muted: true, autoplay: true, playsInline: true});
  const audio = document.createElement("audio");
  audio.autoplay = true;
  document.body.append(video, audio);
  pc.ontrack = ({track}) => {
    const element = track.kind === "video" ? video : audio;
    element.srcObject ??= new MediaStream();
    element.srcObject.addTrack(track);
  };
  const whep = window.whep = {pc, numbers: [], times: [], unreadable: 0, sizes: [], video: {}, audio: {}};
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", {willReadFrequently: true});
  const read = () => {
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) return;
    if (!whep.sizes.includes(`${w}x${h}`)) whep.sizes.push(`${w}x${h}`);
    const block = Math.floor(w / 16);
    canvas.width = w;
    canvas.height = block;
    context.drawImage(video, 0, 0, w, h);
    const {data} = context.getImageData(0, 0, w, block);
    let code = 0;
    for (let bit = 0; bit < 16; bit++) {
      let total = 0, count = 0;
      for (let y = Math.floor(block / 4); y < Math.floor(3 * block / 4); y++) {
        const left = bit * block + Math.floor(block / 4);
        for (let x = left; x < left + Math.floor(block / 2); x++) {
          const i = (y * w + x) * 4;
          total += 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
          count++;
        }
      }
      code = (code << 1) | (total / count > 128 ? 1 : 0);
    }
    const number = code >> 4;
    if ((code & 0xf) === ((number + (number >> 4) + (number >> 8) + 5) & 0xf)) {
      whep.numbers.push(number);
      whep.times.push(performance.now());
    } else {
      whep.unreadable++;
    }
  };
  const tick = () => {
    read();
    video.requestVideoFrameCallback(tick);
  };
  video.requestVideoFrameCallback(tick);
  const {location, answer} = await post(`/whep/${room}`, await gathered(pc));
  whep.location = location;
  await pc.setRemoteDescription({type: "answer", sdp: answer});
  setInterval(async () => {
    for (const s of (await pc.getStats()).values()) {
      if (s.type === "inbound-rtp") whep[s.kind] = {...s};
    }
  }, 250);
}"""
)

CLOSE = """async (name) => {
  const session = window[name];
  await fetch(session.location, {method: "DELETE"});
  session.pc.close();
}"""


async def watch_state(page: Page) -> dict[str, Any]:
    # Stats fetched now, after the frames were read: framesDecoded counts every one.
    state: dict[str, Any] = await page.evaluate(
        """async () => {
          const numbers = [...whep.numbers], times = [...whep.times];
          for (const s of (await whep.pc.getStats()).values()) {
            if (s.type === "inbound-rtp") whep[s.kind] = {...s};
          }
          return {numbers, times, unreadable: whep.unreadable, sizes: whep.sizes,
                  video: whep.video, audio: whep.audio};
        }"""
    )
    return state
