"""Signed URLs: one path, until it expires, only from the gateway that signed it."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.auth.signed_urls import UrlSigner
from gateway.errors import GatewayError

SECRET = "s" * 32
PATH = "/api/recordings/demo/2026-01-01T10-00-00.webm"


def parts(url: str) -> tuple[str, str, str]:
    """(path, expires, sig) of a signed URL."""
    split = urlsplit(url)
    query = parse_qs(split.query, strict_parsing=True)
    assert set(query) == {"expires", "sig"}
    return split.path, query["expires"][0], query["sig"][0]


def refusal(signer: UrlSigner, path: str, expires: str, sig: str, now: float) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        signer.check(path, expires, sig, now=now)
    assert info.value.status == 403
    return info.value


def test_sign_writes_expiry_and_an_hmac_sha256() -> None:
    signer = UrlSigner(SECRET, ttl_s=300)
    path, expires, sig = parts(signer.sign(PATH, now=1000.4))
    assert (path, expires) == (PATH, "1300")
    expected = hmac.new(SECRET.encode(), f"{PATH}\n1300".encode(), hashlib.sha256).hexdigest()
    assert sig == expected


def test_round_trip_until_the_expiry() -> None:
    signer = UrlSigner(SECRET, ttl_s=300)
    path, expires, sig = parts(signer.sign(PATH, now=1000))
    signer.check(path, expires, sig, now=1000)
    signer.check(path, expires, sig, now=1300)  # the last second is still valid
    error = refusal(signer, path, expires, sig, now=1300.5)
    assert error.code == "url-expired"
    assert "expired" in error.message


def test_round_trip_with_the_real_clock() -> None:
    signer = UrlSigner(None, ttl_s=60)
    signer.check(*parts(signer.sign(PATH)))
    _, expires, _ = parts(signer.sign(PATH))
    assert abs(int(expires) - (time.time() + 60)) < 5


def test_tampered_path_is_refused() -> None:
    signer = UrlSigner(SECRET, ttl_s=300)
    _, expires, sig = parts(signer.sign(PATH, now=1000))
    for other in (PATH + "x", "/api/recordings/demo/other.webm", PATH.upper(), ""):
        error = refusal(signer, other, expires, sig, now=1000)
        assert (error.code, error.message) == ("bad-signature", "the URL's signature is not valid")


def test_tampered_expiry_is_refused() -> None:
    signer = UrlSigner(SECRET, ttl_s=300)
    path, expires, sig = parts(signer.sign(PATH, now=1000))
    later = str(int(expires) + 86400)
    assert refusal(signer, path, later, sig, now=1000).code == "bad-signature"
    # Even once the real expiry has passed, a longer one is not believed.
    assert refusal(signer, path, later, sig, now=2000).code == "bad-signature"


@pytest.mark.parametrize("expires", ["", "soon", "1300.0", "1e3", "0x514"])
def test_expiry_that_is_not_a_number_is_refused(expires: str) -> None:
    signer = UrlSigner(SECRET, ttl_s=300)
    path, _, sig = parts(signer.sign(PATH, now=1000))
    error = refusal(signer, path, expires, sig, now=1000)
    assert error.code == "bad-signature"
    assert "not a number" in error.message


def test_tampered_signature_is_refused() -> None:
    signer = UrlSigner(SECRET, ttl_s=300)
    path, expires, sig = parts(signer.sign(PATH, now=1000))
    flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
    for bad in (flipped, sig[:-1], sig.upper(), "", sig + "0"):
        assert refusal(signer, path, expires, bad, now=1000).code == "bad-signature"


def test_signature_is_checked_before_the_expiry() -> None:
    # A forged URL learns nothing from the error, not even whether it has expired.
    signer = UrlSigner(SECRET, ttl_s=300)
    path, expires, _ = parts(signer.sign(PATH, now=1000))
    assert refusal(signer, path, expires, "00" * 32, now=5000).code == "bad-signature"


def test_signers_with_different_secrets_disagree() -> None:
    ours, theirs = UrlSigner(SECRET, ttl_s=300), UrlSigner("t" * 32, ttl_s=300)
    url = ours.sign(PATH, now=1000)
    assert theirs.sign(PATH, now=1000) != url
    assert refusal(theirs, *parts(url), now=1000).code == "bad-signature"


def test_signers_sharing_a_secret_agree() -> None:
    """Several gateway processes with one auth.url_signing_secret accept each other's URLs."""
    url = UrlSigner(SECRET, ttl_s=300).sign(PATH, now=1000)
    UrlSigner(SECRET, ttl_s=10).check(*parts(url), now=1200)


def test_random_secrets_differ_per_signer() -> None:
    first, second = UrlSigner(None, ttl_s=300), UrlSigner(None, ttl_s=300)
    url = first.sign(PATH, now=1000)
    first.check(*parts(url), now=1000)
    assert refusal(second, *parts(url), now=1000).code == "bad-signature"
