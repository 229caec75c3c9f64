"""A stock GStreamer webrtcbin WHIP publisher or WHEP viewer, run by the system python.

Debian's PyGObject and GStreamer live outside the project's virtualenv, so the tests
start this file with /usr/bin/python3 as a subprocess; it imports nothing from the
project. webrtcbin keeps its defaults (its own self-signed RSA certificate, no header
extensions) except bundle-policy=max-bundle, which is what GStreamer's own WHIP
elements set and what makes its second m-line ``a=bundle-only`` with port 0.

    publish URL --codec VP8|H264 --seconds S   numbered frames + a tone, via WHIP, until
                                               S or its stdin closes
    watch URL --codec VP8|H264 --seconds S     frame numbers and audio it decoded, for S
    [--frames N]                               or until N video frames and N audio
                                               buffers are decoded
    [--setup active]                           offer DTLS client role (gateway serves)
    [--trickle]                                POST the offer at once, PATCH candidates

Either way it prints one JSON line at the end: the answer it got and what it decoded.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

WIDTH, HEIGHT, FPS = 320, 240, 30
BITS = 16
ENCODERS = {
    # Low latency settings: a live camera, not an archive.
    "VP8": "vp8enc deadline=1 keyframe-max-dist=60 ! rtpvp8pay",
    "H264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 "
    "! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1",
}


def check_bits(number: int) -> int:
    # Must equal tests/support/media.py _check: the viewer side reads with that one.
    return (number + (number >> 4) + (number >> 8) + 5) & 0xF


def numbered_i420(number: int) -> bytes:
    """The picture of tests/support/media.py numbered_frame, built from bytes (no numpy)."""
    block = WIDTH // BITS
    code = (number & 0xFFF) << 4 | check_bits(number & 0xFFF)
    row = b"".join(
        (b"\xeb" if code >> (BITS - 1 - bit) & 1 else b"\x10") * block for bit in range(BITS)
    )
    x = (number * 8) % (WIDTH - 32)
    plain = b"\x6e" * WIDTH
    bar = b"\x6e" * x + b"\xc8" * 32 + b"\x6e" * (WIDTH - x - 32)
    y = row * block + plain * 8 + bar * (HEIGHT - block - 8)
    chroma = (WIDTH // 2) * (HEIGHT // 2)
    return y + b"\x5a" * chroma + b"\xc8" * chroma


def read_number(y_plane: bytes, width: int) -> int | None:
    """tests/support/media.py read_frame_number on a raw I420 luma plane."""
    block = width // BITS
    stride = (width + 3) // 4 * 4  # GStreamer pads I420 luma rows to 4 bytes
    code = 0
    for bit in range(BITS):
        total = count = 0
        for r in range(block // 4, 3 * block // 4):
            start = r * stride + bit * block + block // 4
            segment = y_plane[start : start + block // 2]
            total += sum(segment)
            count += len(segment)
        code = (code << 1) | int(total / count > 128)
    number = code >> 4
    return number if code & 0xF == check_bits(number) else None


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.url: str = args.url
        self.setup: str = args.setup
        self.trickle: bool = args.trickle
        self.frames_wanted: int | None = args.frames
        codec: str = args.codec
        seconds: float = args.seconds
        publish = args.mode == "publish"
        self.answer: str | None = None
        self.codec = codec
        self.seconds = seconds
        self.publish = publish
        self.loop = GLib.MainLoop()
        self.location: str | None = None
        self.error: str | None = None
        self.frames_pushed = 0
        self.video_numbers: list[int] = []
        self.video_unreadable = 0
        self.video_sizes: set[tuple[int, int]] = set()
        self.audio_buffers = 0
        self.audio_peak = 0
        self.connected = False
        # Trickle: candidates wait here until the POST's answer names the session.
        self.etag: str | None = None
        self.offer_candidates = 0
        self.pending: list[tuple[int, str]] = []
        self.gathered = False
        self.patches_ended = False
        self.trickled = 0
        self.patches: list[int] = []
        self.signal_lock = threading.Lock()
        self.pipe = Gst.Pipeline.new("client")
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        # Loopback only: libnice skips it unless told, and the tests never leave it.
        # (The agent is kept referenced: PyGObject drops a reference it does not own.)
        self.ice = self.webrtc.get_property("ice-agent")
        self.ice.emit("add-local-ip-address", "127.0.0.1")
        self.pipe.add(self.webrtc)
        if publish:
            self._build_sources()
        else:
            self._add_receivers()
        self.webrtc.connect("on-negotiation-needed", self._on_negotiation_needed)
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering)
        self.webrtc.connect("on-ice-candidate", self._on_candidate)
        self.webrtc.connect("notify::connection-state", self._on_connection)
        self.webrtc.connect("pad-added", self._on_pad)
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self._on_error)

    # -- media -----------------------------------------------------------------------------

    def _build_sources(self) -> None:
        video = Gst.parse_bin_from_description(
            f"appsrc name=camera is-live=true do-timestamp=true format=time "
            f'caps="video/x-raw,format=I420,width={WIDTH},height={HEIGHT},framerate={FPS}/1" '
            f"! videoconvert ! queue ! {ENCODERS[self.codec]} ! queue "
            f'! capsfilter caps="application/x-rtp,media=video,encoding-name={self.codec},payload=96"',
            True,
        )
        audio = Gst.parse_bin_from_description(
            "audiotestsrc is-live=true wave=sine freq=440 volume=0.3 ! audioconvert "
            "! audioresample ! opusenc ! rtpopuspay ! queue "
            '! capsfilter caps="application/x-rtp,media=audio,encoding-name=OPUS,payload=111"',
            True,
        )
        for branch in (video, audio):
            self.pipe.add(branch)
            branch.link(self.webrtc)
        self.camera = video.get_by_name("camera")
        for transceiver in self._transceivers():
            transceiver.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        GLib.timeout_add(1000 // FPS, self._push_frame)

    def _push_frame(self) -> bool:
        buffer = Gst.Buffer.new_wrapped(numbered_i420(self.frames_pushed))
        self.frames_pushed += 1
        self.camera.emit("push-buffer", buffer)
        return True

    def _add_receivers(self) -> None:
        recv = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
        clock = 90000
        caps = f"application/x-rtp,media=video,encoding-name={self.codec},clock-rate={clock},payload=96"
        if self.codec == "H264":
            caps += ",packetization-mode=(string)1,profile-level-id=(string)42e01f"
        self.webrtc.emit("add-transceiver", recv, Gst.Caps.from_string(caps))
        self.webrtc.emit(
            "add-transceiver",
            recv,
            Gst.Caps.from_string(
                "application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111"
            ),
        )

    def _transceivers(self) -> list[Any]:
        found = []
        index = 0
        while True:
            transceiver = self.webrtc.emit("get-transceiver", index)
            if transceiver is None:
                return found
            found.append(transceiver)
            index += 1

    def _on_pad(self, _element: Any, pad: Any) -> None:
        if pad.direction != Gst.PadDirection.SRC:
            return
        decode = Gst.ElementFactory.make("decodebin")
        decode.connect("pad-added", self._on_decoded)
        self.pipe.add(decode)
        decode.sync_state_with_parent()
        pad.link(decode.get_static_pad("sink"))

    def _on_decoded(self, _element: Any, pad: Any) -> None:
        name = pad.get_current_caps().get_structure(0).get_name()
        if name.startswith("video"):
            branch = Gst.parse_bin_from_description(
                "videoconvert ! video/x-raw,format=I420 ! appsink name=sink emit-signals=true sync=false",
                True,
            )
            branch.get_by_name("sink").connect("new-sample", self._on_video_sample)
        else:
            branch = Gst.parse_bin_from_description(
                "audioconvert ! audio/x-raw,format=S16LE "
                "! appsink name=sink emit-signals=true sync=false",
                True,
            )
            branch.get_by_name("sink").connect("new-sample", self._on_audio_sample)
        self.pipe.add(branch)
        branch.sync_state_with_parent()
        pad.link(branch.get_static_pad("sink"))

    def _on_video_sample(self, sink: Any) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        structure = sample.get_caps().get_structure(0)
        width, height = structure.get_value("width"), structure.get_value("height")
        self.video_sizes.add((width, height))
        ok, info = sample.get_buffer().map(Gst.MapFlags.READ)
        if ok:
            try:
                rows = (width + 3) // 4 * 4 * (width // BITS)
                number = read_number(bytes(info.data[:rows]), width)
            finally:
                sample.get_buffer().unmap(info)
            if number is None:
                self.video_unreadable += 1
            else:
                self.video_numbers.append(number)
        self._check_enough()
        return Gst.FlowReturn.OK

    def _check_enough(self) -> None:
        wanted = self.frames_wanted
        decoded = len(self.video_numbers) + self.video_unreadable
        if wanted is not None and decoded >= wanted and self.audio_buffers >= wanted:
            self.frames_wanted = None  # quit once
            GLib.idle_add(self.loop.quit)

    def _on_audio_sample(self, sink: Any) -> Gst.FlowReturn:
        sample = sink.emit("pull-sample")
        self.audio_buffers += 1
        ok, info = sample.get_buffer().map(Gst.MapFlags.READ)
        if ok:
            try:
                data = bytes(info.data)
            finally:
                sample.get_buffer().unmap(info)
            samples = array.array("h", data[: len(data) // 2 * 2])
            if samples:
                self.audio_peak = max(self.audio_peak, max(samples), -min(samples))
        self._check_enough()
        return Gst.FlowReturn.OK

    # -- signaling -------------------------------------------------------------------------

    def _on_negotiation_needed(self, _element: Any) -> None:
        promise = Gst.Promise.new_with_change_func(self._on_offer, None)
        self.webrtc.emit("create-offer", None, promise)

    def _on_offer(self, promise: Any, _data: Any) -> None:
        promise.wait()
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply is not None and reply.has_field("offer") else None
        if offer is None:
            self._fail(f"create-offer failed: {reply.to_string() if reply else None}")
            return
        self.webrtc.emit("set-local-description", offer, Gst.Promise.new())
        if self.trickle:
            # Trickle (webrtcbin's own way): the offer leaves before gathering has
            # begun, so it carries no candidate; they follow in PATCHes.
            text = offer.sdp.as_text()
            threading.Thread(target=self._post, args=(text,), daemon=True).start()

    def _on_gathering(self, *_args: Any) -> None:
        if (
            self.webrtc.get_property("ice-gathering-state")
            != GstWebRTC.WebRTCICEGatheringState.COMPLETE
        ):
            return
        if self.trickle:
            with self.signal_lock:
                self.gathered = True
            threading.Thread(target=self._flush_candidates, daemon=True).start()
            return
        # Not trickling: the offer goes out once it carries every candidate.
        if self.location is not None:
            return
        offer = self.webrtc.get_property("local-description").sdp.as_text()
        threading.Thread(target=self._post, args=(offer,), daemon=True).start()

    def _on_candidate(self, _element: Any, mline: int, candidate: str) -> None:
        if not self.trickle or not candidate:
            return
        with self.signal_lock:
            self.pending.append((mline, candidate))
        threading.Thread(target=self._flush_candidates, daemon=True).start()

    def _flush_candidates(self) -> None:
        """PATCHes what has been gathered since the last one (RFC 9725 4.3.1, RFC 8840);
        one sender at a time, so candidates arrive in order and end-of-candidates last."""
        with self.signal_lock:
            if self.location is None or self.etag is None:
                return  # _post calls this again once it knows the session
            batch, self.pending = self.pending, []
            end = self.gathered and not self.patches_ended
            self.patches_ended = self.patches_ended or end
            if not batch and not end:
                return
            local = self.webrtc.get_property("local-description").sdp.as_text()
            lines = [
                line
                for line in local.splitlines()
                if line.startswith(("a=ice-ufrag:", "a=ice-pwd:"))
            ][:2]
            mids = [line[6:] for line in local.splitlines() if line.startswith("a=mid:")]
            for mline in sorted({m for m, _ in batch} | ({0} if end else set())):
                lines += ["m=audio 9 RTP/AVP 0", f"a=mid:{mids[mline]}"]
                lines += [f"a={c}" for m, c in batch if m == mline]
                if end and mline == 0:
                    lines.append("a=end-of-candidates")
            body = "\r\n".join(lines) + "\r\n"
            request = urllib.request.Request(
                self._resource(),
                data=body.encode(),
                method="PATCH",
                headers={
                    "Content-Type": "application/trickle-ice-sdpfrag",
                    "If-Match": self.etag,
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    self.patches.append(response.status)
            except urllib.error.HTTPError as exc:
                self.patches.append(exc.code)
                self._fail(f"PATCH: {exc.code} {exc.read().decode()}")
                return
            except OSError as exc:
                self._fail(f"PATCH: {exc}")
                return
            self.trickled += len(batch)

    def _resource(self) -> str:
        assert self.location is not None
        return "/".join(self.url.split("/", 3)[:3]) + self.location

    def _post(self, offer: str) -> None:
        self.offer_candidates = offer.count("a=candidate:")
        if self.setup != "actpass":
            # webrtcbin always offers actpass; offering "active" makes the gateway the
            # DTLS server, and webrtcbin takes the client role the answer leaves it.
            offer = offer.replace("a=setup:actpass", f"a=setup:{self.setup}")
        request = urllib.request.Request(
            self.url, data=offer.encode(), headers={"Content-Type": "application/sdp"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer = response.read().decode()
                with self.signal_lock:
                    self.location = response.headers["Location"]
                    self.etag = response.headers["ETag"]
        except urllib.error.HTTPError as exc:
            self._fail(f"POST {self.url}: {exc.code} {exc.read().decode()}")
            return
        except OSError as exc:
            self._fail(f"POST {self.url}: {exc}")
            return
        self.answer = answer
        GLib.idle_add(self._set_answer, answer)
        if self.trickle:
            self._flush_candidates()

    def _set_answer(self, answer: str) -> bool:
        _, message = GstSdp.SDPMessage.new_from_text(answer)
        description = GstWebRTC.WebRTCSessionDescription.new(
            GstWebRTC.WebRTCSDPType.ANSWER, message
        )
        self.webrtc.emit("set-remote-description", description, Gst.Promise.new())
        return False

    def _on_connection(self, *_args: Any) -> None:
        state = self.webrtc.get_property("connection-state")
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            self.connected = True
        elif state == GstWebRTC.WebRTCPeerConnectionState.FAILED:
            self._fail("the peer connection failed")

    def _on_error(self, _bus: Any, message: Any) -> None:
        error, debug = message.parse_error()
        self._fail(f"{error.message} ({debug})")

    def _fail(self, reason: str) -> None:
        self.error = self.error or reason
        GLib.idle_add(self.loop.quit)

    # -- lifetime --------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.pipe.set_state(Gst.State.PLAYING)
        GLib.timeout_add(int(self.seconds * 1000), self.loop.quit)
        if self.publish:
            # The test closes our stdin when its viewers have seen enough.
            GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_IN | GLib.IO_HUP, self._on_stdin)
        self.loop.run()
        self.pipe.set_state(Gst.State.NULL)
        if self.location is not None:
            self._delete()
        return {
            "error": self.error,
            "connected": self.connected,
            "frames_pushed": self.frames_pushed,
            "video_numbers": self.video_numbers,
            "video_unreadable": self.video_unreadable,
            "video_frames": len(self.video_numbers) + self.video_unreadable,
            "video_sizes": sorted(self.video_sizes),
            "audio_buffers": self.audio_buffers,
            "audio_peak": self.audio_peak,
            "answer": self.answer,
            "offer_candidates": self.offer_candidates,
            "trickled": self.trickled,
            "patches": self.patches,
            "ended_candidates": self.patches_ended,
        }

    def _on_stdin(self, fd: int, _condition: Any) -> bool:
        if os.read(fd, 4096):
            return True
        self.loop.quit()
        return False

    def _delete(self) -> None:
        try:
            request = urllib.request.Request(self._resource(), method="DELETE")
            urllib.request.urlopen(request, timeout=5)
        except OSError:
            pass  # the session may be gone already


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("publish", "watch"))
    parser.add_argument("url")
    parser.add_argument("--codec", choices=tuple(ENCODERS), default="VP8")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--setup", choices=("actpass", "active"), default="actpass")
    parser.add_argument("--trickle", action="store_true")
    parser.add_argument("--frames", type=int, default=None)
    args = parser.parse_args()
    Gst.init(None)
    started = time.monotonic()
    result = Client(args).run()
    result["ran_s"] = round(time.monotonic() - started, 2)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
