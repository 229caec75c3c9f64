"""KeyframeRequester: at most one PLI per interval, coalescing the requests in between."""

from __future__ import annotations

import asyncio

from gateway.media.keyframes import KeyframeRequester

INTERVAL = 0.1


class Sends:
    """A send() callable that records its calls and answers ``ok``."""

    def __init__(self, ok: bool = True) -> None:
        self.ok = ok
        self.calls = 0

    def __call__(self) -> bool:
        self.calls += 1
        return self.ok


async def wait_past_interval() -> None:
    await asyncio.sleep(INTERVAL * 3)


async def test_first_request_sends_immediately() -> None:
    send = Sends()
    requester = KeyframeRequester(INTERVAL, send)
    requester.request()
    assert send.calls == 1
    assert requester.sent == 1
    assert requester.pending is False
    assert requester.coalesced == 0


async def test_requests_inside_the_interval_coalesce_into_one_send_at_its_end() -> None:
    send = Sends()
    requester = KeyframeRequester(INTERVAL, send)
    requester.request()
    for _ in range(5):
        requester.request()
    assert send.calls == 1, "a request inside the interval was sent at once"
    assert requester.pending is True
    assert requester.coalesced == 4  # the first of the five armed the timer
    await wait_past_interval()
    assert send.calls == 2
    assert requester.sent == 2
    assert requester.pending is False
    await wait_past_interval()
    assert send.calls == 2, "the coalesced requests were sent more than once"
    requester.close()


async def test_request_after_the_interval_sends_immediately() -> None:
    send = Sends()
    requester = KeyframeRequester(INTERVAL, send)
    requester.request()
    await wait_past_interval()
    requester.request()
    assert send.calls == 2
    assert requester.pending is False


async def test_interval_restarts_after_the_deferred_send() -> None:
    send = Sends()
    requester = KeyframeRequester(INTERVAL, send)
    requester.request()
    requester.request()
    await wait_past_interval()
    assert send.calls == 2
    requester.request()  # a full interval has passed since the deferred send
    assert send.calls == 3
    requester.request()
    assert send.calls == 3 and requester.pending
    requester.close()


async def test_keyframe_arriving_cancels_the_pending_send() -> None:
    send = Sends()
    requester = KeyframeRequester(INTERVAL, send)
    requester.request()
    requester.request()
    assert requester.pending
    requester.keyframe_arrived()
    assert requester.pending is False
    await wait_past_interval()
    assert send.calls == 1
    assert requester.sent == 1


async def test_keyframe_arrived_without_pending_request_changes_nothing() -> None:
    send = Sends()
    requester = KeyframeRequester(INTERVAL, send)
    requester.keyframe_arrived()
    requester.request()
    assert send.calls == 1


async def test_request_after_a_keyframe_cancelled_one_is_deferred_again() -> None:
    send = Sends()
    requester = KeyframeRequester(INTERVAL, send)
    requester.request()
    requester.request()
    requester.keyframe_arrived()
    requester.request()  # still inside the interval of the first send
    assert send.calls == 1 and requester.pending
    await wait_past_interval()
    assert send.calls == 2


async def test_failed_send_stays_pending_until_retry() -> None:
    send = Sends(ok=False)
    requester = KeyframeRequester(INTERVAL, send)
    requester.request()
    assert send.calls == 1
    assert requester.sent == 0
    assert requester.pending is True
    requester.request()
    assert requester.coalesced == 1
    await wait_past_interval()
    assert send.calls == 1, "a failed send was retried by itself"
    send.ok = True
    requester.retry()
    assert send.calls == 2
    assert requester.sent == 1
    assert requester.pending is False


async def test_failed_deferred_send_waits_for_retry() -> None:
    send = Sends()
    requester = KeyframeRequester(INTERVAL, send)
    requester.request()
    requester.request()
    send.ok = False
    await wait_past_interval()
    assert send.calls == 2
    assert requester.pending is True
    assert requester.sent == 1
    await wait_past_interval()
    assert send.calls == 2
    send.ok = True
    requester.retry()
    assert send.calls == 3
    assert requester.sent == 2 and requester.pending is False


async def test_retry_without_pending_request_sends_nothing() -> None:
    send = Sends()
    requester = KeyframeRequester(INTERVAL, send)
    requester.retry()
    assert send.calls == 0
    requester.request()
    requester.retry()
    assert send.calls == 1


async def test_retry_while_the_timer_is_armed_does_not_send_early() -> None:
    send = Sends()
    requester = KeyframeRequester(INTERVAL, send)
    requester.request()
    requester.request()
    requester.retry()
    assert send.calls == 1
    await wait_past_interval()
    assert send.calls == 2


async def test_close_cancels_the_pending_send() -> None:
    send = Sends()
    requester = KeyframeRequester(INTERVAL, send)
    requester.request()
    requester.request()
    requester.close()
    assert requester.pending is False
    await wait_past_interval()
    assert send.calls == 1


async def test_zero_interval_sends_every_request() -> None:
    send = Sends()
    requester = KeyframeRequester(0, send)
    for _ in range(4):
        requester.request()
    assert send.calls == 4
    assert requester.sent == 4
    assert requester.coalesced == 0


async def test_many_requesters_are_independent() -> None:
    sends = [Sends() for _ in range(3)]
    requesters = [KeyframeRequester(INTERVAL, s) for s in sends]
    for requester in requesters:
        requester.request()
        requester.request()
    await wait_past_interval()
    assert [s.calls for s in sends] == [2, 2, 2]


async def test_a_pli_no_keyframe_answers_is_sent_again(monkeypatch: object) -> None:
    from gateway.media import keyframes

    monkeypatch.setattr(keyframes, "ANSWER_S", INTERVAL * 2)  # type: ignore[attr-defined]
    send = Sends()
    requester = KeyframeRequester(INTERVAL, send)
    requester.request()
    await asyncio.sleep(INTERVAL * 2.5)  # ignored by the sender: asked again
    assert (send.calls, requester.unanswered) == (2, 1)
    requester.keyframe_arrived()  # answered: no more
    await asyncio.sleep(INTERVAL * 3)
    assert send.calls == 2
    requester.request()
    requester.close()  # a closed track asks nothing more
    await asyncio.sleep(INTERVAL * 3)
    assert send.calls == 3 and requester.unanswered == 1
