"""TURN credentials from a shared secret: coturn's REST API scheme (use-auth-secret)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

_UNSAFE = re.compile(r"[^A-Za-z0-9_.@-]")


def rest_credentials(
    secret: str, identity: str, ttl_s: int, now: float | None = None
) -> tuple[str, str]:
    """(username, password): ``<expiry>:<identity>`` and base64(HMAC-SHA1(secret, username)).

    The TURN server checks the HMAC with the same secret and refuses the username after its
    expiry time, so a credential handed to one client is worth nothing a ``ttl_s`` later.
    """
    expiry = int(time.time() if now is None else now) + int(ttl_s)
    # coturn reads the expiry up to the first ':'; the rest only labels the allocation.
    username = f"{expiry}:{_UNSAFE.sub('_', identity)[:64] or 'client'}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")
