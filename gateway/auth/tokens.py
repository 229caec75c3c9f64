"""Access tokens: JWTs verified with PyJWT against HS256 keys or a JWKS (RS256/ES256)."""

from __future__ import annotations

from typing import Any

import jwt

from ..config import AuthSettings
from ..errors import GatewayError
from .grants import GrantError, parse_grants
from .jwks import JwksSource
from .principal import ANONYMOUS, Principal

ASYMMETRIC = ("RS256", "ES256")
MAX_IDENTITY = 128


def unauthorized(message: str, code: str = "invalid-token") -> GatewayError:
    return GatewayError(401, code, message)


def identity_problem(identity: object) -> str | None:
    """Why ``identity`` cannot be a token's ``sub``; None when it can."""
    if (
        not isinstance(identity, str)
        or not 1 <= len(identity) <= MAX_IDENTITY
        or not identity.isprintable()
    ):
        return f"'sub' must be 1-{MAX_IDENTITY} printable characters"
    if identity == ANONYMOUS:
        return f"the identity {ANONYMOUS!r} is reserved"
    return None


class TokenVerifier:
    """Turns a bearer token into a Principal, or refuses it with a 401 saying why.

    HS256 tokens name their key in ``iss`` (LiveKit's API key); RS256/ES256 tokens name
    theirs in the header's ``kid``, looked up in the configured JWKS. The algorithm comes
    from the key, never from the token alone (no ``none``, no HS256 with a public key).
    """

    def __init__(self, settings: AuthSettings, jwks: JwksSource | None = None) -> None:
        self._settings = settings
        self._secrets = {k.key: k.secret for k in settings.keys}
        self._jwks = jwks
        self.verified = 0
        self.refused = 0

    async def verify(self, token: str) -> Principal:
        try:
            principal = await self._verify(token)
        except GatewayError:
            self.refused += 1
            raise
        self.verified += 1
        return principal

    async def _verify(self, token: str) -> Principal:
        if len(token) > self._settings.max_token_bytes:
            raise unauthorized(f"the token exceeds {self._settings.max_token_bytes} bytes")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise unauthorized(f"malformed token: {exc}") from exc
        algorithm = header.get("alg")
        key: Any
        key_id: str
        if algorithm == "HS256":
            issuer = self._unverified_issuer(token)
            secret = self._secrets.get(issuer)
            if secret is None:
                raise unauthorized(f"unknown signing key {issuer[:64]!r} (the token's iss)")
            key, key_id = secret, issuer
        elif algorithm in ASYMMETRIC and self._jwks is not None:
            kid = header.get("kid")
            if kid is not None and not isinstance(kid, str):
                raise unauthorized("the token's kid must be a string")
            jwk = await self._jwks.key(kid)
            if jwk is None:
                raise unauthorized(f"no key {str(kid)[:64]!r} in the configured JWKS")
            if jwk.algorithm_name != algorithm:
                raise unauthorized(f"key {kid!r} is for {jwk.algorithm_name}, not {algorithm}")
            key, key_id = jwk.key, kid or ""
        else:
            accepted = ["HS256", *(ASYMMETRIC if self._jwks is not None else ())]
            raise unauthorized(f"token algorithm {algorithm!r} is not accepted ({accepted})")
        audience = self._settings.audience
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=audience,
                leeway=self._settings.leeway_s,
                options={"require": ["exp", "sub"], "verify_aud": audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise unauthorized("the token has expired", "token-expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise unauthorized("the token is not valid yet (nbf)") from exc
        except jwt.PyJWTError as exc:
            raise unauthorized(f"invalid token: {exc}") from exc
        return self._principal(claims, key_id)

    @staticmethod
    def _unverified_issuer(token: str) -> str:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise unauthorized(f"malformed token: {exc}") from exc
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise unauthorized("an HS256 token names its key in 'iss'")
        return issuer

    @staticmethod
    def _principal(claims: dict[str, Any], key_id: str) -> Principal:
        identity = claims.get("sub")
        problem = identity_problem(identity)
        if problem is not None:
            raise unauthorized(problem)
        assert isinstance(identity, str)
        name = claims.get("name", "")
        if not isinstance(name, str) or len(name) > 64 or not name.isprintable():
            raise unauthorized("'name' must be at most 64 printable characters")
        try:
            grants = parse_grants(claims.get("video"))
        except GrantError as exc:
            raise unauthorized(f"invalid grant: {exc}") from exc
        expires = claims.get("exp")
        try:
            expires_at = float(expires) if isinstance(expires, int | float) else None
        except OverflowError:  # PyJWT takes any integer; a float holds up to ~1.8e308
            raise unauthorized("'exp' is out of range") from None
        return Principal(identity, grants, name=name, expires_at=expires_at, key=key_id)
