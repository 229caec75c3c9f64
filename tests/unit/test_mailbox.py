"""The loop-to-worker mailbox: never blocks the putter, drains whole, discards on overflow."""

from __future__ import annotations

import threading
import time

from gateway.processing.mailbox import Mailbox


def test_take_returns_everything_waiting_in_order() -> None:
    box: Mailbox[int] = Mailbox(10)
    for i in range(4):
        assert box.put(i)
    assert box.take() == [0, 1, 2, 3]
    assert box.take(timeout=0.01) == []


def test_overflow_discards_the_backlog_and_puts_the_marker_first() -> None:
    box: Mailbox[int] = Mailbox(3)
    for i in range(3):
        box.put(i)
    assert not box.put(3, overflow_marker=-1)
    assert box.take() == [-1, 3]
    assert (box.overflows, box.discarded, box.put_count) == (1, 3, 4)


def test_take_blocks_until_a_put_from_another_thread() -> None:
    box: Mailbox[str] = Mailbox(2)
    got: list[list[str] | None] = []
    worker = threading.Thread(target=lambda: got.append(box.take()))
    worker.start()
    time.sleep(0.05)
    assert got == []
    box.put("frame")
    worker.join(1)
    assert got == [["frame"]]


def test_close_wakes_the_worker_with_none_and_ignores_later_puts() -> None:
    box: Mailbox[int] = Mailbox(2)
    got: list[list[int] | None] = []
    worker = threading.Thread(target=lambda: got.append(box.take()))
    worker.start()
    time.sleep(0.02)
    box.close()
    worker.join(1)
    assert got == [None]
    box.put(1)
    assert box.take() is None and len(box) == 0
