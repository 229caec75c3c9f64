"""Gateways with auth on, and the tokens their tests present."""

from __future__ import annotations

from typing import Any

from gateway.auth.minting import mint
from gateway.config import AuthKey, Config
from tests.conftest import loopback_config

KEY = "testkey"
SECRET = "a test secret that is long enough for HS256 (32+)"


def secure_config() -> Config:
    """A loopback gateway that takes only tokens signed with KEY/SECRET."""
    config = loopback_config()
    config.auth.enabled = True
    config.auth.keys = [AuthKey(KEY, SECRET)]
    return config


def token(
    identity: str,
    room: str | None = None,
    ttl_s: float = 600.0,
    name: str | None = None,
    **grants: Any,
) -> str:
    """A token for ``identity``: roomJoin on ``room`` unless a grant says otherwise."""
    video: dict[str, Any] = {"roomJoin": room is not None, **grants}
    if room is not None:
        video["room"] = room
    return mint(KEY, SECRET, identity, video, ttl_s=ttl_s, name=name)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}
