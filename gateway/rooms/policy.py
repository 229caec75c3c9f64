"""The one place that decides who a client is and what it may do, for every entry point."""

from __future__ import annotations

from dataclasses import dataclass

from ..auth.grants import parse_grants
from ..auth.jwks import JwksSource
from ..auth.principal import ANONYMOUS, OPEN, Principal
from ..auth.tokens import TokenVerifier, unauthorized
from ..config import AuthSettings
from ..errors import GatewayError

# What each action needs (see docs/security.md).
ACTIONS = (
    "join",  # take part in a room over the WebSocket
    "watch",  # see a room's state and events, its stats and renditions
    "publish",  # send media into a room (WHIP, WS publish/offer)
    "subscribe",  # receive a room's media (WHEP, WS subscribe/offer)
    "pipeline",  # receive through a named pipeline
    "data",  # chat
    "record",  # start/stop recording a room; list, play and delete its recordings
    "control",  # change a live rendition's parameters (every viewer of it sees them)
    "session",  # touch a session (trickle, delete, switch pipeline, read): its owner only
    "list",  # list every room
    "stats",  # gateway-wide stats, every rendition
    "info",  # harmless facts (the configured pipelines' names)
)


@dataclass
class Request:
    """Who asks for what: the action, its room, and the client's principal.

    ``source`` (publish), ``pipeline`` (pipeline) and ``owner`` (session: the identity
    that created the session) narrow the action.
    """

    action: str
    room: str | None
    transport: str  # "whip", "whep", "ws" or "http"
    principal: Principal = OPEN
    source: str | None = None
    pipeline: str | None = None
    owner: str | None = None


def forbidden(message: str) -> GatewayError:
    return GatewayError(403, "forbidden", message)


class AccessPolicy:
    """Authenticates tokens and checks every request against the principal's grants.

    With ``auth.enabled`` off every client is the open principal, allowed everything
    (the quick start on localhost). A deployment with its own rules subclasses this and
    extends ``check``; every WHIP, WHEP, WebSocket and API request passes here before
    anything is created or changed, so a refusal changes nothing.
    """

    def __init__(self, settings: AuthSettings | None = None) -> None:
        self.settings = settings or AuthSettings()
        self.jwks = (
            JwksSource(self.settings.jwks, self.settings.jwks_refresh_s)
            if self.settings.jwks is not None
            else None
        )
        self.verifier = TokenVerifier(self.settings, self.jwks)
        anonymous = self.settings.anonymous
        self._anonymous = (
            Principal(ANONYMOUS, parse_grants(anonymous, lenient_defaults=False), anonymous=True)
            if anonymous is not None
            else None
        )
        self._default_pipelines = tuple(self.settings.default_pipelines)
        self.refused = 0

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    async def start(self) -> None:
        if self.enabled and self.jwks is not None:
            await self.jwks.start()

    async def close(self) -> None:
        if self.jwks is not None:
            await self.jwks.close()

    async def authenticate(self, token: str | None) -> Principal:
        """The principal of a bearer token (None or "": the client sent none)."""
        if not self.enabled:
            return OPEN
        if not token:
            if self._anonymous is not None:
                return self._anonymous
            raise unauthorized("this gateway needs an access token", "token-required")
        return await self.verifier.verify(token)

    def check(self, request: Request) -> None:
        """Raise 401/403 to refuse; return to allow."""
        try:
            self._check(request)
        except GatewayError:
            self.refused += 1
            raise

    def _check(self, request: Request) -> None:
        principal = request.principal
        if principal.expired(self.settings.leeway_s):
            raise unauthorized("the token has expired", "token-expired")
        grants = principal.grants
        if grants.admin:
            return
        action, room = request.action, request.room
        who = principal.identity if principal.authenticated else "an anonymous client"
        if action not in ACTIONS:
            raise forbidden(f"unknown action {action!r}")
        if action == "info":
            return
        if action in ("list", "stats"):
            if action == "list" and grants.room_list:
                return
            raise forbidden(f"{who} may not {'list rooms' if action == 'list' else 'read stats'}")
        if room is None or not grants.covers(room):
            raise forbidden(f"{who} has no grant for room {room!r}")
        if action == "record":
            if not grants.room_record:
                raise forbidden(f"{who} may not record room {room!r}")
            return
        if action == "control":
            if not grants.room_admin:
                raise forbidden(f"{who} may not change room {room!r}'s processing")
            return
        if action == "session":
            if grants.room_admin:
                return
            if request.owner is None or request.owner != principal.identity:
                raise forbidden(f"the session belongs to another identity than {who}")
            return
        if not (grants.room_join or grants.room_admin):
            raise forbidden(f"{who} may not join room {room!r}")
        if action == "publish":
            if not grants.can_publish:
                raise forbidden(f"{who} may not publish in room {room!r}")
            if request.source is not None and not grants.may_publish_source(request.source):
                raise forbidden(f"{who} may not publish a {request.source!r} track")
        elif action == "subscribe":
            if not grants.can_subscribe:
                raise forbidden(f"{who} may not subscribe in room {room!r}")
        elif action == "pipeline":
            if request.pipeline is None or not grants.may_use_pipeline(
                request.pipeline, self._default_pipelines
            ):
                raise forbidden(f"{who} may not use pipeline {request.pipeline!r}")
        elif action == "data" and not grants.can_publish_data:
            raise forbidden(f"{who} may not send data or chat in room {room!r}")
