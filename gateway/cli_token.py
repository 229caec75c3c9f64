"""``webrtc-gateway token``: mint an access token (and a web-app link) from config.yaml's keys."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any
from urllib.parse import quote, urlencode

from . import config as config_module
from .auth.grants import SOURCES
from .auth.minting import mint, signing_key

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``7d`` -> seconds."""
    match = _DURATION.match(text.strip())
    # At least a second: exp is whole seconds, so less would make exp == iat.
    if not match or float(match.group(1)) * _UNITS[match.group(2)] < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 1h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="webrtc-gateway token",
        description="Mint an HS256 access token with the gateway's configured key "
        "(auth.keys), in LiveKit's format. Grants not given are written as false.",
    )
    p.add_argument("--config", help="YAML settings file (default: embedded defaults)")
    p.add_argument("--key", help="which auth.keys entry signs (default: the first)")
    p.add_argument("--identity", required=True, help="the token's sub: who the client is")
    p.add_argument("--name", help="display name shown to others")
    p.add_argument("--room", help="room name, or a shell pattern such as 'class-*'")
    p.add_argument("--publish", action="store_true", help="may publish (WHIP, WS)")
    p.add_argument("--subscribe", action="store_true", help="may watch (WHEP, WS)")
    p.add_argument("--data", action="store_true", help="may chat")
    p.add_argument("--record", action="store_true", help="may record the room(s)")
    p.add_argument("--room-admin", action="store_true", help="moderates the room(s)")
    p.add_argument("--list", action="store_true", help="may list every room")
    p.add_argument("--admin", action="store_true", help="everything, every room")
    p.add_argument(
        "--sources",
        help=f"comma-separated sources it may publish (default: all; known: {sorted(SOURCES)})",
    )
    p.add_argument("--pipelines", help="comma-separated pipelines it may use (default: config)")
    p.add_argument("--ttl", type=duration, default=3600.0, help="lifetime, e.g. 30m, 1h (1h)")
    p.add_argument(
        "--url",
        help="also print a web-app link with the token, e.g. http://host:8080/room.html",
    )
    return p


def grants_of(args: argparse.Namespace) -> dict[str, Any]:
    joins = args.publish or args.subscribe or args.data
    grants: dict[str, Any] = {
        "roomJoin": bool(joins),
        "canPublish": args.publish,
        "canSubscribe": args.subscribe,
        "canPublishData": args.data,
        "roomRecord": args.record,
        "roomAdmin": args.room_admin,
        "roomList": args.list,
    }
    if args.admin:
        grants["admin"] = True
    if args.room is not None:
        grants["room"] = args.room
    if args.sources:
        grants["canPublishSources"] = [s.strip() for s in args.sources.split(",") if s.strip()]
    if args.pipelines is not None:
        grants["pipelines"] = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    return grants


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    grants = grants_of(args)
    needs_room = any(grants[k] for k in ("roomJoin", "roomRecord", "roomAdmin"))
    if needs_room and args.room is None:
        print(
            "token: --room is needed for --publish, --subscribe, --data, --record and --room-admin",
            file=sys.stderr,
        )
        return 2
    try:
        config = config_module.load(args.config)
        key, secret = signing_key(config, args.key)
        token = mint(
            key,
            secret,
            args.identity,
            grants,
            name=args.name,
            ttl_s=args.ttl,
            audience=config.auth.audience,
        )
    except (config_module.ConfigError, ValueError) as exc:  # GrantError is a ValueError
        print(f"token: {exc}", file=sys.stderr)
        return 2
    print(token)
    if args.url:
        query: dict[str, str] = {"token": token}
        if args.room is not None and not any(c in args.room for c in "*?["):
            query["room"] = args.room
        separator = "&" if "?" in args.url else "?"
        print(f"{args.url}{separator}{urlencode(query, quote_via=quote)}")
    return 0
