"""Access tokens: HS256 keys, RS256/ES256 through a JWKS file or URL, and every refusal."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.auth import jwks as jwks_module
from gateway.auth.grants import Grants
from gateway.auth.jwks import JwksSource
from gateway.auth.minting import mint, signing_key
from gateway.auth.principal import Principal
from gateway.auth.tokens import TokenVerifier
from gateway.config import AuthKey, AuthSettings, Config, ConfigError
from gateway.errors import GatewayError

KEY = "testkey"
SECRET = "x" * 32
OTHER_SECRET = "y" * 32


def settings(**changes: Any) -> AuthSettings:
    values: dict[str, Any] = {"enabled": True, "keys": [AuthKey(KEY, SECRET)], **changes}
    return AuthSettings(**values)


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for an HS256 token of KEY; ``None`` values drop the claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": KEY,
        "sub": "alice",
        "name": "Alice",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "video": {"room": "demo", "roomJoin": True},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hs256(payload: dict[str, Any], secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", headers=headers or None)


async def refusal(verifier: TokenVerifier, token: str) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await verifier.verify(token)
    assert info.value.status == 401
    return info.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(
    header: dict[str, Any], payload: dict[str, Any], secret: bytes = SECRET.encode()
) -> str:
    """A token PyJWT would refuse to make: signed with HMAC-SHA256 by hand."""
    signed = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{b64(signature)}"


# --- HS256 ----------------------------------------------------------------------------------


async def test_hs256_token_gives_its_principal() -> None:
    verifier = TokenVerifier(settings())
    payload = claims()
    principal = await verifier.verify(hs256(payload))
    assert principal == Principal(
        "alice",
        Grants(room="demo", room_join=True),
        name="Alice",
        expires_at=float(payload["exp"]),
        key=KEY,
    )
    assert principal.authenticated
    assert (verifier.verified, verifier.refused) == (1, 0)


async def test_the_minted_token_verifies() -> None:
    verifier = TokenVerifier(settings())
    token = mint(KEY, SECRET, "bob", {"room": "a*", "canPublish": False}, name="Bob", ttl_s=60)
    principal = await verifier.verify(token)
    assert (principal.identity, principal.name, principal.key) == ("bob", "Bob", KEY)
    assert principal.grants.room == "a*"
    assert not principal.grants.can_publish
    assert principal.grants.can_subscribe  # LiveKit: left out means allowed


async def test_wrong_secret_is_refused() -> None:
    verifier = TokenVerifier(settings())
    error = await refusal(verifier, hs256(claims(), OTHER_SECRET))
    assert error.code == "invalid-token"
    assert "signature" in error.message.lower()
    assert (verifier.verified, verifier.refused) == (0, 1)


async def test_the_secret_of_another_key_is_refused() -> None:
    verifier = TokenVerifier(settings(keys=[AuthKey(KEY, SECRET), AuthKey("k2", OTHER_SECRET)]))
    assert (await verifier.verify(hs256(claims(iss="k2"), OTHER_SECRET))).key == "k2"
    error = await refusal(verifier, hs256(claims(iss=KEY), OTHER_SECRET))
    assert "signature" in error.message.lower()


async def test_unknown_issuer_is_refused() -> None:
    error = await refusal(TokenVerifier(settings()), hs256(claims(iss="stranger")))
    assert error.code == "invalid-token"
    assert "unknown signing key 'stranger'" in error.message


@pytest.mark.parametrize("issuer", [None, "", 42])
async def test_hs256_token_without_a_string_issuer_is_refused(issuer: Any) -> None:
    payload = claims(iss=None)
    if issuer is not None:
        payload["iss"] = issuer
    error = await refusal(TokenVerifier(settings()), handmade({"alg": "HS256"}, payload))
    assert error.code == "invalid-token"
    assert "'iss'" in error.message


@pytest.mark.parametrize("claim", ["exp", "sub"])
async def test_missing_required_claim_is_refused(claim: str) -> None:
    error = await refusal(TokenVerifier(settings()), hs256(claims(**{claim: None})))
    assert error.code == "invalid-token"
    assert f'"{claim}"' in error.message


async def test_expired_beyond_the_leeway_is_token_expired() -> None:
    now = int(time.time())
    error = await refusal(TokenVerifier(settings(leeway_s=30)), hs256(claims(exp=now - 90)))
    assert error.code == "token-expired"


async def test_expired_within_the_leeway_is_accepted() -> None:
    now = int(time.time())
    verifier = TokenVerifier(settings(leeway_s=30))
    principal = await verifier.verify(hs256(claims(exp=now - 10)))
    assert principal.identity == "alice"
    # Without leeway the same token is refused.
    error = await refusal(TokenVerifier(settings(leeway_s=0)), hs256(claims(exp=now - 10)))
    assert error.code == "token-expired"


async def test_not_yet_valid_is_refused() -> None:
    now = int(time.time())
    verifier = TokenVerifier(settings(leeway_s=30))
    error = await refusal(verifier, hs256(claims(nbf=now + 300)))
    assert error.code == "invalid-token"
    assert "not valid yet" in error.message
    # A clock a few seconds ahead of ours is forgiven by the leeway.
    assert (await verifier.verify(hs256(claims(nbf=now + 10)))).identity == "alice"


async def test_audience_is_required_when_configured() -> None:
    verifier = TokenVerifier(settings(audience="gateway-a"))
    assert (await verifier.verify(hs256(claims(aud="gateway-a")))).identity == "alice"
    missing = await refusal(verifier, hs256(claims()))
    assert '"aud"' in missing.message
    wrong = await refusal(verifier, hs256(claims(aud="gateway-b")))
    assert "audience" in wrong.message.lower()


async def test_audience_is_not_checked_when_not_configured() -> None:
    verifier = TokenVerifier(settings())
    assert (await verifier.verify(hs256(claims(aud="anything")))).identity == "alice"


async def test_token_size_bound_is_inclusive() -> None:
    token = hs256(claims(pad="p" * 600))
    assert (await TokenVerifier(settings(max_token_bytes=len(token))).verify(token)).identity
    error = await refusal(TokenVerifier(settings(max_token_bytes=len(token) - 1)), token)
    assert error.code == "invalid-token"
    assert f"exceeds {len(token) - 1} bytes" in error.message


async def test_oversized_token_is_refused_before_it_is_decoded() -> None:
    # Not even base64: only the size check can have refused it.
    error = await refusal(TokenVerifier(settings()), "!" * 8193)
    assert "exceeds 8192 bytes" in error.message


async def test_alg_none_is_refused() -> None:
    token = jwt.encode(claims(), None, algorithm="none")  # type: ignore[arg-type]
    error = await refusal(TokenVerifier(settings()), token)
    assert error.code == "invalid-token"
    assert "'none' is not accepted" in error.message


async def test_hand_made_alg_none_with_a_known_issuer_is_refused() -> None:
    signed = handmade({"alg": "none", "typ": "JWT"}, claims())
    error = await refusal(TokenVerifier(settings()), signed.rsplit(".", 1)[0] + ".")
    assert "not accepted" in error.message


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
async def test_other_hmac_algorithms_are_refused(algorithm: str) -> None:
    token = jwt.encode(claims(), SECRET * 2, algorithm=algorithm)
    error = await refusal(TokenVerifier(settings()), token)
    assert f"{algorithm!r} is not accepted" in error.message


async def test_asymmetric_token_without_a_jwks_is_refused() -> None:
    token = jwt.encode(claims(), rsa_key(), algorithm="RS256", headers={"kid": "rsa-1"})
    error = await refusal(TokenVerifier(settings()), token)
    assert "'RS256' is not accepted (['HS256'])" in error.message


@pytest.mark.parametrize(
    "garbage",
    ["", "garbage", "a.b", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.e30", "ü.ü.ü"],
)
async def test_malformed_tokens_are_refused(garbage: str) -> None:
    error = await refusal(TokenVerifier(settings()), garbage)
    assert error.code == "invalid-token"
    assert "malformed" in error.message or "invalid" in error.message


async def test_header_that_is_not_an_object_is_refused() -> None:
    token = handmade([1], claims())  # type: ignore[arg-type]
    error = await refusal(TokenVerifier(settings()), token)
    assert error.code == "invalid-token"


# --- identity, name and grants --------------------------------------------------------------


async def test_reserved_identity_is_refused() -> None:
    error = await refusal(TokenVerifier(settings()), hs256(claims(sub="anonymous")))
    assert "'anonymous' is reserved" in error.message


@pytest.mark.parametrize("identity", ["", "a" * 129, "line\nbreak", "tab\there", 7])
async def test_bad_identity_is_refused(identity: Any) -> None:
    error = await refusal(TokenVerifier(settings()), hs256(claims(sub=identity)))
    assert error.code == "invalid-token"


async def test_longest_identity_is_accepted() -> None:
    principal = await TokenVerifier(settings()).verify(hs256(claims(sub="i" * 128)))
    assert principal.identity == "i" * 128


@pytest.mark.parametrize("name", ["n" * 65, "new\nline", "\x00", 5, ["Alice"]])
async def test_bad_name_is_refused(name: Any) -> None:
    error = await refusal(TokenVerifier(settings()), hs256(claims(name=name)))
    assert "'name' must be at most 64 printable characters" in error.message


async def test_name_is_optional_and_may_be_64_characters() -> None:
    verifier = TokenVerifier(settings())
    assert (await verifier.verify(hs256(claims(name=None)))).name == ""
    assert (await verifier.verify(hs256(claims(name="N" * 64)))).name == "N" * 64


@pytest.mark.parametrize(
    ("video", "detail"),
    [
        ({"roomJoin": "yes"}, "'roomJoin' must be true or false"),
        ({"superpower": True}, "unknown grant 'superpower'"),
        ({"canPublishSources": ["webcam"]}, "unknown source"),
        ("everything", "must be an object"),
    ],
)
async def test_invalid_grant_is_refused(video: Any, detail: str) -> None:
    error = await refusal(TokenVerifier(settings()), hs256(claims(video=video)))
    assert error.message.startswith("invalid grant:")
    assert detail in error.message


async def test_token_without_a_video_grant_may_do_nothing() -> None:
    principal = await TokenVerifier(settings()).verify(hs256(claims(video=None)))
    grants = principal.grants
    assert not (grants.can_publish or grants.can_subscribe or grants.can_publish_data)
    assert not grants.room_join and grants.room is None


async def test_livekit_sdk_token_is_accepted() -> None:
    """Claims exactly as LiveKit's server SDKs write them (AccessToken.toJwt)."""
    now = int(time.time())
    payload = {
        "name": "Alice Smith",
        "video": {
            "room": "my-room",
            "roomJoin": True,
            "canPublish": True,
            "canSubscribe": True,
            "canPublishData": True,
            "canPublishSources": ["camera", "microphone", "screen_share"],
        },
        "metadata": "",
        "sub": "alice",
        "iss": KEY,
        "nbf": now,
        "exp": now + 21600,
        "jti": "alice",
    }
    principal = await TokenVerifier(settings()).verify(hs256(payload, typ="JWT"))
    assert (principal.identity, principal.name) == ("alice", "Alice Smith")
    grants = principal.grants
    assert grants.room == "my-room" and grants.room_join
    assert grants.can_publish and grants.can_subscribe and grants.can_publish_data
    assert grants.sources == ("camera", "microphone", "screen")
    assert grants.may_publish_source("screen_share") and grants.may_publish_source("screen")
    assert not grants.may_publish_source("screen_share_audio")
    assert not grants.covers("other-room")


# --- minting --------------------------------------------------------------------------------


def test_mint_writes_livekit_claims() -> None:
    token = mint(KEY, SECRET, "carol", {"roomJoin": True}, ttl_s=90, now=1_000_000, audience="gw")
    payload = jwt.decode(
        token,
        SECRET,
        algorithms=["HS256"],
        audience="gw",
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert payload == {
        "iss": KEY,
        "sub": "carol",
        "nbf": 1_000_000,
        "iat": 1_000_000,
        "exp": 1_000_090,
        "video": {"roomJoin": True},
        "aud": "gw",
    }
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_mint_refuses_grants_the_gateway_would_refuse() -> None:
    with pytest.raises(ValueError, match="unknown grant 'roomjoin'"):
        mint(KEY, SECRET, "carol", {"roomjoin": True})


def test_signing_key_is_the_named_or_the_first() -> None:
    config = Config()
    with pytest.raises(ConfigError, match="no HS256 key configured"):
        signing_key(config)
    config.auth.keys = [AuthKey("one", SECRET), AuthKey("two", OTHER_SECRET)]
    assert signing_key(config) == ("one", SECRET)
    assert signing_key(config, "two") == ("two", OTHER_SECRET)
    with pytest.raises(ConfigError, match=r"no key 'three' \(configured: \['one', 'two'\]\)"):
        signing_key(config, "three")


# --- RS256 / ES256 through a JWKS -----------------------------------------------------------


@functools.cache
def rsa_key(index: int = 0) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ec_key(index: int = 0) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def rsa_jwk(kid: str | None, index: int = 0) -> dict[str, Any]:
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key(index).public_key(), as_dict=True)
    return {**jwk, "use": "sig", **({"kid": kid} if kid is not None else {})}


def ec_jwk(kid: str | None, index: int = 0) -> dict[str, Any]:
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(ec_key(index).public_key(), as_dict=True)
    return {**jwk, "use": "sig", **({"kid": kid} if kid is not None else {})}


def rs256(payload: dict[str, Any], kid: str | None = "rsa-1", index: int = 0) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, rsa_key(index), algorithm="RS256", headers=headers)


def es256(payload: dict[str, Any], kid: str | None = "ec-1", index: int = 0) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, ec_key(index), algorithm="ES256", headers=headers)


def idp_claims(**changes: Any) -> dict[str, Any]:
    """An identity provider's token: no iss needed (the kid names the key)."""
    return claims(iss=None, **changes)


def write_jwks(path: Path, *keys: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"keys": list(keys)}))
    return path


@pytest.fixture
async def file_jwks(tmp_path: Path) -> AsyncIterator[JwksSource]:
    path = write_jwks(tmp_path / "jwks.json", rsa_jwk("rsa-1"), ec_jwk("ec-1"))
    source = JwksSource(str(path), 600.0)
    await source.start()
    yield source
    await source.close()


async def test_rs256_token_through_a_jwks_file(file_jwks: JwksSource) -> None:
    verifier = TokenVerifier(settings(keys=[]), file_jwks)
    principal = await verifier.verify(rs256(idp_claims(sub="rita")))
    assert (principal.identity, principal.key) == ("rita", "rsa-1")
    assert principal.grants.room == "demo"


async def test_es256_token_through_a_jwks_file(file_jwks: JwksSource) -> None:
    verifier = TokenVerifier(settings(keys=[]), file_jwks)
    principal = await verifier.verify(es256(idp_claims(sub="eve")))
    assert (principal.identity, principal.key) == ("eve", "ec-1")


async def test_hs256_keys_and_a_jwks_work_side_by_side(file_jwks: JwksSource) -> None:
    verifier = TokenVerifier(settings(), file_jwks)
    assert (await verifier.verify(hs256(claims()))).key == KEY
    assert (await verifier.verify(rs256(idp_claims()))).key == "rsa-1"


async def test_token_signed_by_a_key_not_in_the_jwks_is_refused(file_jwks: JwksSource) -> None:
    verifier = TokenVerifier(settings(keys=[]), file_jwks)
    error = await refusal(verifier, rs256(idp_claims(), kid="rsa-1", index=1))
    assert error.code == "invalid-token"
    assert "signature" in error.message.lower()


async def test_expired_asymmetric_token_is_token_expired(file_jwks: JwksSource) -> None:
    verifier = TokenVerifier(settings(keys=[]), file_jwks)
    error = await refusal(verifier, es256(idp_claims(exp=int(time.time()) - 120)))
    assert error.code == "token-expired"


async def test_hs256_signed_with_the_public_key_is_refused(file_jwks: JwksSource) -> None:
    """Algorithm confusion: the public key (which anyone may have) used as an HMAC secret."""
    pem = (
        rsa_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    verifier = TokenVerifier(settings(), file_jwks)
    header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
    # Naming the JWKS key: HS256 keys are only ever auth.keys, never a JWKS entry.
    error = await refusal(verifier, handmade(header, claims(iss="rsa-1"), pem))
    assert "unknown signing key 'rsa-1'" in error.message
    # Naming an HS256 key: the public key is not its secret.
    error = await refusal(verifier, handmade(header, claims(iss=KEY), pem))
    assert "signature" in error.message.lower()
    assert (verifier.verified, verifier.refused) == (0, 2)


async def test_missing_kid_with_several_keys_is_refused(file_jwks: JwksSource) -> None:
    error = await refusal(TokenVerifier(settings(keys=[]), file_jwks), rs256(idp_claims(), None))
    assert "no key 'None' in the configured JWKS" in error.message


async def test_missing_kid_with_a_single_key_uses_it(tmp_path: Path) -> None:
    source = JwksSource(str(write_jwks(tmp_path / "one.json", rsa_jwk(None))), 600.0)
    await source.start()
    try:
        principal = await TokenVerifier(settings(keys=[]), source).verify(rs256(idp_claims(), None))
        assert (principal.identity, principal.key) == ("alice", "")
    finally:
        await source.close()


async def test_unknown_kid_is_refused(file_jwks: JwksSource) -> None:
    error = await refusal(TokenVerifier(settings(keys=[]), file_jwks), rs256(idp_claims(), "nope"))
    assert "no key 'nope' in the configured JWKS" in error.message


async def test_kid_that_is_not_a_string_is_refused(file_jwks: JwksSource) -> None:
    token = handmade({"alg": "RS256", "kid": 7}, idp_claims())
    error = await refusal(TokenVerifier(settings(keys=[]), file_jwks), token)
    assert error.code == "invalid-token"
    assert "kid must be a string" in error.message or "Key ID" in error.message


async def test_kid_of_a_key_for_another_algorithm_is_refused(file_jwks: JwksSource) -> None:
    verifier = TokenVerifier(settings(keys=[]), file_jwks)
    # Signed with the EC key but naming the RSA key: refused before any verification.
    error = await refusal(verifier, es256(idp_claims(), kid="rsa-1"))
    assert "key 'rsa-1' is for RS256, not ES256" in error.message
    error = await refusal(verifier, rs256(idp_claims(), kid="ec-1"))
    assert "key 'ec-1' is for ES256, not RS256" in error.message


async def test_jwks_without_a_usable_key_does_not_start(tmp_path: Path) -> None:
    for name, text in [("empty.json", '{"keys": []}'), ("list.json", "[]"), ("bad.json", "{")]:
        path = tmp_path / name
        path.write_text(text)
        source = JwksSource(str(path), 600.0)
        with pytest.raises(RuntimeError, match="no usable key"):
            await source.start()
        assert source.failures == 1
    with pytest.raises(RuntimeError, match="no usable key"):
        await JwksSource(str(tmp_path / "absent.json"), 600.0).start()


async def test_unknown_kid_rereads_the_file_at_most_every_30_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_jwks(tmp_path / "jwks.json", rsa_jwk("rsa-1"))
    source = JwksSource(str(path), 600.0)
    await source.start()
    try:
        verifier = TokenVerifier(settings(keys=[]), source)
        write_jwks(path, rsa_jwk("rsa-1"), rsa_jwk("rsa-2", index=1))  # the provider rotates
        rotated = rs256(idp_claims(), kid="rsa-2", index=1)
        # Loaded a moment ago: an unknown kid does not make every token re-read the set.
        await refusal(verifier, rotated)
        assert source.refreshes == 1
        monkeypatch.setattr(jwks_module, "UNKNOWN_KID_REFRESH_S", 0.0)
        assert (await verifier.verify(rotated)).key == "rsa-2"
        assert source.refreshes == 2
    finally:
        await source.close()


# --- JWKS from a URL ------------------------------------------------------------------------


@dataclass
class JwksServer:
    url: str
    keys: list[dict[str, Any]]
    status: int = 200
    body: bytes | None = None  # instead of the keys
    hits: list[str] = field(default_factory=list)


@pytest.fixture
async def jwks_server() -> AsyncIterator[JwksServer]:
    served = JwksServer("", [rsa_jwk("rsa-1")])

    async def handle(request: web.Request) -> web.Response:
        served.hits.append(request.path)
        if served.status != 200 and served.body is None:
            return web.Response(status=served.status, text="nope")
        if served.status != 200:
            return web.Response(status=served.status, body=served.body, headers={"Location": "/x"})
        body = served.body if served.body is not None else json.dumps({"keys": served.keys})
        return web.Response(body=body, content_type="application/json")

    async def elsewhere(request: web.Request) -> web.Response:
        raise web.HTTPFound("/jwks.json")

    app = web.Application()
    app.router.add_get("/jwks.json", handle)
    app.router.add_get("/moved", elsewhere)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    served.url = f"http://{host}:{port}/jwks.json"
    try:
        yield served
    finally:
        await runner.cleanup()


async def wait_for(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


async def test_jwks_from_a_url(jwks_server: JwksServer) -> None:
    source = JwksSource(jwks_server.url, 600.0)
    await source.start()
    try:
        verifier = TokenVerifier(settings(keys=[]), source)
        assert (await verifier.verify(rs256(idp_claims()))).identity == "alice"
        assert jwks_server.hits == ["/jwks.json"]
    finally:
        await source.close()


async def test_jwks_url_is_refreshed_and_picks_up_a_rotated_key(jwks_server: JwksServer) -> None:
    source = JwksSource(jwks_server.url, 0.02)
    await source.start()
    try:
        verifier = TokenVerifier(settings(keys=[]), source)
        old, new = rs256(idp_claims()), rs256(idp_claims(sub="bob"), kid="rsa-2", index=1)
        assert (await verifier.verify(old)).identity == "alice"
        jwks_server.keys = [rsa_jwk("rsa-2", index=1)]  # the old key is retired
        loaded = source.refreshes
        await wait_for(lambda: source.refreshes > loaded)
        assert (await verifier.verify(new)).identity == "bob"
        error = await refusal(verifier, old)
        assert "no key 'rsa-1'" in error.message
    finally:
        await source.close()
    # Closed: the refresh task is gone, the server hears nothing more.
    hits = len(jwks_server.hits)
    await asyncio.sleep(0.05)
    assert len(jwks_server.hits) == hits


async def test_failed_refresh_keeps_the_previous_keys(jwks_server: JwksServer) -> None:
    source = JwksSource(jwks_server.url, 600.0)
    await source.start()
    try:
        verifier = TokenVerifier(settings(keys=[]), source)
        jwks_server.status = 500
        await source.refresh()
        jwks_server.status, jwks_server.body = 200, b"not json"
        await source.refresh()
        assert (source.refreshes, source.failures) == (1, 2)
        assert (await verifier.verify(rs256(idp_claims()))).identity == "alice"
    finally:
        await source.close()


async def test_oversized_jwks_is_not_loaded(jwks_server: JwksServer) -> None:
    padding = " " * (jwks_module.MAX_JWKS_BYTES + 1)
    jwks_server.body = json.dumps({"keys": jwks_server.keys}).encode() + padding.encode()
    source = JwksSource(jwks_server.url, 600.0)
    with pytest.raises(RuntimeError, match="no usable key"):
        await source.start()
    assert source.failures == 1


async def test_jwks_url_redirects_are_not_followed(jwks_server: JwksServer) -> None:
    source = JwksSource(jwks_server.url.replace("/jwks.json", "/moved"), 600.0)
    with pytest.raises(RuntimeError, match="no usable key"):
        await source.start()
    assert jwks_server.hits == []


async def test_a_redirect_carrying_a_key_set_is_not_a_key_set(jwks_server: JwksServer) -> None:
    jwks_server.status = 302  # answered with the keys' JSON as its body, say
    jwks_server.body = json.dumps({"keys": jwks_server.keys}).encode()
    source = JwksSource(jwks_server.url, 600.0)
    with pytest.raises(RuntimeError, match="no usable key"):
        await source.start()
    assert jwks_server.hits == ["/jwks.json"]
