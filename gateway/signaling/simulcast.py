"""Simulcast in SDP (RFC 8853, rids of RFC 8851): the layers an offer sends per m-line, and
the answer lines that accept them. aiortc's SDP parser drops these attributes."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import bad_request

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"

_RID_ID = re.compile(r"[A-Za-z0-9_-]{1,16}")
_RID_LINE = re.compile(r"^a=rid:(\S+) (send|recv)(?: (.*))?$")
_SIMULCAST_LINE = re.compile(r"^a=simulcast:(.*)$")
_EXTMAP_LINE = re.compile(r"^a=extmap:(\d+)(?:/\S+)? (\S+)")


@dataclass(frozen=True)
class Layers:
    """One m-line's simulcast: its rids in the order the offer lists them, which of them
    start paused (``~rid``), and the header extension ids that carry them."""

    mid: str
    rids: tuple[str, ...]
    paused: frozenset[str]
    rid_extension: int
    repaired_extension: int | None


def _sections(sdp: str) -> list[list[str]]:
    """The session part, then each media section, as lines."""
    sections: list[list[str]] = [[]]
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    return sections


def _mid(section: list[str]) -> str | None:
    return next((line[6:].strip() for line in section if line.startswith("a=mid:")), None)


def offered_layers(sdp: str, max_layers: int) -> dict[str, Layers]:
    """Per video m-line that offers to send simulcast: its layers. An m-line whose rids
    come without the rid header extension is left out (it is received as one layer: the
    documented fallback); an offer naming a rid it never declared, more than ``max_layers``
    layers, or a malformed rid is refused (400)."""
    found: dict[str, Layers] = {}
    for section in _sections(sdp)[1:]:
        if not section[0].startswith("m=video"):
            continue
        simulcast = [m.group(1) for line in section if (m := _SIMULCAST_LINE.match(line))]
        if not simulcast:
            continue
        mid = _mid(section)
        if mid is None:
            continue
        declared = _declared_rids(section)
        rids, paused = _send_rids(simulcast[0])
        for rid in rids:
            if rid not in declared:
                raise bad_request(
                    f"m-line {mid}: a=simulcast names rid {rid!r}, which no a=rid declares",
                    "unknown-rid",
                )
        if len(rids) > max_layers:
            raise bad_request(
                f"m-line {mid} offers {len(rids)} simulcast layers; at most {max_layers} "
                "are accepted",
                "too-many-layers",
            )
        extensions = {
            uri: int(number)
            for line in section
            if (match := _EXTMAP_LINE.match(line))
            for number, uri in [match.groups()]
        }
        if RID_URI not in extensions or len(rids) < 2:
            continue
        found[mid] = Layers(
            mid,
            tuple(rids),
            frozenset(paused),
            extensions[RID_URI],
            extensions.get(REPAIRED_RID_URI),
        )
    return found


def _declared_rids(section: list[str]) -> set[str]:
    declared: set[str] = set()
    for line in section:
        match = _RID_LINE.match(line)
        if line.startswith("a=rid:") and match is None:
            raise bad_request(f"a malformed rid line: {line[:80]!r}", "invalid-sdp")
        if match is not None and match.group(2) == "send":
            declared.add(_rid(match.group(1)))
    return declared


def _send_rids(value: str) -> tuple[list[str], set[str]]:
    """``send q;h;~f`` (a receive part may follow): each stream's first alternative."""
    parts = value.split()
    if len(parts) < 2 or len(parts) % 2:
        raise bad_request(f"a malformed a=simulcast line: {value[:80]!r}", "invalid-sdp")
    streams = dict(zip(parts[::2], parts[1::2], strict=True))
    if "send" not in streams:
        return [], set()
    rids: list[str] = []
    paused: set[str] = set()
    for stream in streams["send"].split(";"):
        first = stream.split(",")[0]
        rid = _rid(first.removeprefix("~"))
        if rid in rids:
            raise bad_request(f"a=simulcast lists rid {rid!r} twice", "invalid-sdp")
        rids.append(rid)
        if first.startswith("~"):
            paused.add(rid)
    return rids, paused


def _rid(value: str) -> str:
    if not _RID_ID.fullmatch(value):
        raise bad_request(f"a malformed rid {value[:40]!r}", "invalid-sdp")
    return value


def accept_layers(answer: str, layers: dict[str, Layers]) -> str:
    """The answer with each simulcast m-line's rids accepted: ``a=rid:X recv`` and
    ``a=simulcast:recv ...`` in its section (RFC 8853 5.3), in the offer's order."""
    if not layers:
        return answer
    out: list[str] = []
    for index, section in enumerate(_sections(answer)):
        out.extend(section)
        mid = _mid(section) if index else None
        if mid is None or mid not in layers:
            continue
        accepted = layers[mid]
        out.extend(f"a=rid:{rid} recv" for rid in accepted.rids)
        out.append("a=simulcast:recv " + ";".join(accepted.rids))
    return "\r\n".join(out) + "\r\n"
