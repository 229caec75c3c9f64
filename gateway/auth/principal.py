"""Who is asking: the identity a token names (or an anonymous client), its grants, its address."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .grants import ALL, Grants

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    """An authenticated (or deliberately anonymous) client.

    ``identity`` is the token's ``sub``; every anonymous client shares the identity
    ``anonymous``, so what one anonymous client creates is protected only by the
    unguessable resource id of it (a WHIP/WHEP Location).
    """

    identity: str
    grants: Grants
    name: str = ""
    anonymous: bool = False
    expires_at: float | None = None  # the token's exp (epoch seconds)
    key: str | None = None  # the token's signing key id (iss or kid)

    @property
    def authenticated(self) -> bool:
        """Holds a token (TURN credentials and identities go only to these)."""
        return not self.anonymous

    def expired(self, leeway_s: float = 0.0, now: float | None = None) -> bool:
        if self.expires_at is None:
            return False
        return (time.time() if now is None else now) > self.expires_at + leeway_s


OPEN = Principal(ANONYMOUS, ALL, anonymous=True)
"""Every client when auth is off: allowed everything (the quick start on localhost)."""


@dataclass(frozen=True)
class Caller:
    """A request's principal and the address it came from (for per-client limits)."""

    principal: Principal = OPEN
    address: str | None = None


LOCAL = Caller()
"""An in-process caller with no address (tests, embedding code): the open principal."""
