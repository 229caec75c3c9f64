"""Making access tokens: the CLI's `token` command and tests."""

from __future__ import annotations

import time
from typing import Any

import jwt

from ..config import Config, ConfigError
from .grants import parse_grants
from .tokens import identity_problem


def mint(
    key: str,
    secret: str,
    identity: str,
    grants: dict[str, Any],
    *,
    name: str | None = None,
    ttl_s: float = 3600.0,
    now: float | None = None,
    audience: str | None = None,
) -> str:
    """An HS256 token as LiveKit makes them: iss = key, sub = identity, video = grants."""
    parse_grants(grants)  # refuse what the gateway would refuse
    problem = identity_problem(identity)
    if problem is not None:
        raise ValueError(problem)
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": key,
        "sub": identity,
        "nbf": issued,
        "iat": issued,
        "exp": issued + int(ttl_s),
        "video": grants,
    }
    if name:
        claims["name"] = name
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")


def signing_key(config: Config, key: str | None = None) -> tuple[str, str]:
    """The (key, secret) to sign with: the named one, or the first configured."""
    keys = config.auth.keys
    if not keys:
        raise ConfigError("auth.keys: no HS256 key configured to sign tokens with")
    if key is None:
        return keys[0].key, keys[0].secret
    for item in keys:
        if item.key == key:
            return item.key, item.secret
    raise ConfigError(f"auth.keys: no key {key!r} (configured: {[k.key for k in keys]})")
