"""Short-lived signed URLs: a `<video src>` cannot send a bearer token, so it gets a URL
that proves the gateway handed it out, for one path, until it expires."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlencode

from ..errors import GatewayError


class UrlSigner:
    """HMAC-SHA256 over (path, expiry) with a secret of the gateway's (random per process
    unless ``auth.url_signing_secret`` is set, e.g. for several gateway processes)."""

    def __init__(self, secret: str | None, ttl_s: float) -> None:
        self._secret = secret.encode() if secret is not None else secrets.token_bytes(32)
        self.ttl_s = ttl_s

    def sign(self, path: str, now: float | None = None) -> str:
        expires = int((time.time() if now is None else now) + self.ttl_s)
        return f"{path}?{urlencode({'expires': expires, 'sig': self._mac(path, expires)})}"

    def check(self, path: str, expires: str, signature: str, now: float | None = None) -> None:
        """Raise 403 unless ``signature`` is ours for ``path`` and has not expired."""
        try:
            when = int(expires)
        except ValueError:
            raise GatewayError(403, "bad-signature", "the URL's expiry is not a number") from None
        if not hmac.compare_digest(self._mac(path, when), signature):
            raise GatewayError(403, "bad-signature", "the URL's signature is not valid")
        if (time.time() if now is None else now) > when:
            raise GatewayError(403, "url-expired", "the signed URL has expired; ask for a new one")

    def _mac(self, path: str, expires: int) -> str:
        message = f"{path}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()
