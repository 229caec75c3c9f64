"""Abuse limits: token buckets, their bounded per-key table, and session/socket admission."""

from __future__ import annotations

import pytest

from gateway.config import LimitSettings
from gateway.errors import GatewayError
from gateway.limits import buckets
from gateway.limits.admission import Admission
from gateway.limits.buckets import KeyedRateLimit, RateLimit


class Clock:
    """Stands in for the ``time`` module inside gateway.limits.buckets only."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(buckets, "time", fake)
    return fake


# --- RateLimit ------------------------------------------------------------------------------


def test_burst_then_refused(clock: Clock) -> None:
    bucket = RateLimit(rate=2.0, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.refused == 1
    assert not bucket.take()
    assert bucket.refused == 2


def test_refills_at_the_rate(clock: Clock) -> None:
    bucket = RateLimit(rate=2.0, burst=3)
    for _ in range(3):
        assert bucket.take()
    clock.advance(0.25)  # half a token
    assert not bucket.take()
    clock.advance(0.25)  # one whole token
    assert bucket.take()
    assert not bucket.take()


def test_refill_stops_at_the_burst(clock: Clock) -> None:
    bucket = RateLimit(rate=2.0, burst=3)
    clock.advance(3600)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_refused_takes_do_not_use_up_tokens(clock: Clock) -> None:
    bucket = RateLimit(rate=1.0, burst=1)
    assert bucket.take()
    clock.advance(0.5)
    assert not bucket.take()
    assert not bucket.take()
    clock.advance(0.5)  # 0.5 + 0.5 of refill: the refusals cost nothing
    assert bucket.take()


@pytest.mark.parametrize(
    ("rate", "waited_s", "retry_after_s"),
    [
        (2.0, 0.0, 1),  # half a second rounds up to one
        (0.5, 0.0, 2),
        (0.25, 0.0, 4),
        (0.25, 2.0, 2),  # half a token there: two more seconds
        (0.25, 3.0, 1),
    ],
)
def test_retry_after_is_whole_seconds_until_the_next_token(
    clock: Clock, rate: float, waited_s: float, retry_after_s: int
) -> None:
    bucket = RateLimit(rate=rate, burst=1)
    assert bucket.take()
    clock.advance(waited_s)
    assert not bucket.take()
    assert bucket.retry_after_s == retry_after_s


def test_retry_after_is_at_least_one_second(clock: Clock) -> None:
    assert RateLimit(rate=5.0, burst=2).retry_after_s == 1  # full: still a valid header value


# --- KeyedRateLimit -------------------------------------------------------------------------


def test_each_key_has_its_own_bucket(clock: Clock) -> None:
    limit = KeyedRateLimit(rate=1.0, burst=2, max_keys=10)
    assert limit.take("10.0.0.1") is None
    assert limit.take("10.0.0.1") is None
    refusing = limit.take("10.0.0.1")
    assert refusing is not None
    assert refusing.retry_after_s == 1
    assert refusing.refused == 1
    assert limit.take("10.0.0.2") is None
    assert len(limit) == 2


def test_the_table_forgets_the_least_recently_seen_key(clock: Clock) -> None:
    limit = KeyedRateLimit(rate=1.0, burst=1, max_keys=2)
    assert limit.take("a") is None
    assert limit.take("b") is None
    assert limit.take("a") is not None  # a is now the most recently seen
    assert limit.take("c") is None  # full: b goes, not a
    assert len(limit) == 2
    assert limit.take("a") is not None  # a kept its history
    assert limit.take("b") is None  # b was forgotten: a fresh bucket
    assert len(limit) == 2


def test_a_flood_of_keys_stays_bounded(clock: Clock) -> None:
    limit = KeyedRateLimit(rate=1.0, burst=1, max_keys=100)
    for i in range(5000):
        assert limit.take(f"198.51.100.{i}") is None
    assert len(limit) == 100


# --- Admission ------------------------------------------------------------------------------


def limits(**changes: float) -> LimitSettings:
    values = {
        "sessions_per_ip_per_s": 1.0,
        "sessions_per_ip_burst": 2,
        "sessions_per_identity_per_s": 0.5,
        "sessions_per_identity_burst": 3,
        "max_pending_sessions": 5,
        "max_sockets_per_ip": 2,
        "tracked_clients": 100,
        **changes,
    }
    return LimitSettings(**values)  # type: ignore[arg-type]


def refused(call: object, *args: object) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        call(*args)  # type: ignore[operator]
    return info.value


def test_sessions_per_ip(clock: Clock) -> None:
    admission = Admission(limits())
    admission.admit_session("10.0.0.1", None, 0)
    admission.admit_session("10.0.0.1", None, 0)
    error = refused(admission.admit_session, "10.0.0.1", None, 0)
    assert (error.status, error.code, error.retry_after_s) == (429, "rate-limited", 1)
    assert "per second from one address" in error.message
    assert error.to_json() == {"error": "rate-limited", "message": error.message, "retry_after": 1}
    admission.admit_session("10.0.0.2", None, 0)  # another address is not held up
    clock.advance(1.0)
    admission.admit_session("10.0.0.1", None, 0)
    assert admission.stats()["refused"] == {"sessions_per_ip": 1}


def test_sessions_per_identity_across_addresses(clock: Clock) -> None:
    admission = Admission(limits())
    for i in range(3):
        admission.admit_session(f"10.0.0.{i}", "alice", 0)
    error = refused(admission.admit_session, "10.0.0.9", "alice", 0)
    assert (error.status, error.code, error.retry_after_s) == (429, "rate-limited", 2)
    assert "per identity" in error.message
    admission.admit_session("10.0.0.9", "bob", 0)
    admission.admit_session(None, "carol", 0)  # no address: only the identity counts
    stats = admission.stats()
    assert stats["refused"] == {"sessions_per_identity": 1}
    assert (stats["tracked_addresses"], stats["tracked_identities"]) == (4, 3)


def test_max_pending_sessions(clock: Clock) -> None:
    admission = Admission(limits(sessions_per_ip_burst=1))
    admission.admit_session("10.0.0.1", None, 4)
    error = refused(admission.admit_session, "10.0.0.2", "bob", 5)
    assert (error.status, error.code, error.retry_after_s) == (503, "too-many-pending", 2)
    assert "5 sessions are still connecting" in error.message
    # Refused before any rate is charged: the same client may try again at once.
    admission.admit_session("10.0.0.2", "bob", 0)
    assert admission.stats()["refused"] == {"pending_sessions": 1}


def test_no_address_and_no_identity_only_counts_pending(clock: Clock) -> None:
    admission = Admission(limits())
    for _ in range(50):
        admission.admit_session(None, None, 0)
    stats = admission.stats()
    assert (stats["tracked_addresses"], stats["tracked_identities"], stats["refused"]) == (0, 0, {})


def test_tracked_clients_bound_the_tables(clock: Clock) -> None:
    admission = Admission(limits(tracked_clients=10))
    for i in range(30):
        admission.admit_session(f"10.0.1.{i}", f"user{i}", 0)
    stats = admission.stats()
    assert (stats["tracked_addresses"], stats["tracked_identities"]) == (10, 10)


def test_sockets_per_ip_open_and_close(clock: Clock) -> None:
    admission = Admission(limits())
    admission.open_socket("10.0.0.1")
    admission.open_socket("10.0.0.1")
    error = refused(admission.open_socket, "10.0.0.1")
    assert (error.status, error.code, error.retry_after_s) == (429, "too-many-sockets", 5)
    assert "at most 2 signaling sockets per address" in error.message
    admission.open_socket("10.0.0.2")
    assert admission.stats()["open_sockets"] == 3
    admission.close_socket("10.0.0.1")
    admission.open_socket("10.0.0.1")  # a slot came free
    for _ in range(2):
        admission.close_socket("10.0.0.1")
    admission.close_socket("10.0.0.2")
    assert admission.stats()["open_sockets"] == 0
    assert admission.stats()["refused"] == {"sockets_per_ip": 1}
    # Every address closed is forgotten: the next client starts from zero.
    admission.open_socket("10.0.0.1")
    admission.open_socket("10.0.0.1")


def test_sockets_without_an_address_are_not_counted(clock: Clock) -> None:
    admission = Admission(limits(max_sockets_per_ip=1))
    for _ in range(5):
        admission.open_socket(None)
    admission.close_socket(None)
    assert admission.stats()["open_sockets"] == 0


def test_refusals_decided_elsewhere_are_counted(clock: Clock) -> None:
    admission = Admission(limits())
    admission.refuse("candidates")
    admission.refuse("candidates")
    admission.refuse("m_lines")
    assert admission.stats()["refused"] == {"candidates": 2, "m_lines": 1}


def test_stats_shape(clock: Clock) -> None:
    assert Admission(LimitSettings()).stats() == {
        "refused": {},
        "tracked_addresses": 0,
        "tracked_identities": 0,
        "open_sockets": 0,
    }
