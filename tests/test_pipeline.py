"""Threaded stages: same items in the same order, errors carried over, bounded, stoppable."""

from __future__ import annotations

import threading
import time

import pytest

from audiogen.pipeline import threaded


def test_same_items_in_the_same_order():
    assert list(threaded(iter(range(100)), depth=3)) == list(range(100))
    assert list(threaded(iter([]))) == []


def test_producer_runs_on_another_thread_at_most_depth_ahead():
    made, threads = [], set()

    def producer():
        for i in range(50):
            threads.add(threading.current_thread().name)
            made.append(i)
            yield i

    stream = threaded(producer(), depth=2, name="probe")
    assert next(stream) == 0
    time.sleep(0.3)  # let the producer run as far ahead as it may
    # one taken, two in the queue, at most one more made and waiting to go in
    assert 3 <= len(made) <= 4
    assert threads == {"audiogen-probe"}
    stream.close()


def test_an_error_upstream_is_raised_downstream_after_the_good_items():
    def producer():
        yield 1
        yield 2
        raise RuntimeError("stage broke")

    stream = threaded(producer())
    assert next(stream) == 1 and next(stream) == 2
    with pytest.raises(RuntimeError, match="stage broke"):
        next(stream)


def test_closing_early_stops_the_producer_and_runs_its_cleanup():
    cleaned = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            cleaned.set()

    stream = threaded(endless(), depth=1)
    assert [next(stream) for _ in range(5)] == list(range(5))
    stream.close()  # joins the thread
    assert cleaned.is_set()
    assert not any(t.name == "audiogen-stage" and t.is_alive() for t in threading.enumerate())


def test_producer_runs_under_inference_mode():
    import torch

    def producer():
        yield torch.is_inference_mode_enabled()

    assert list(threaded(producer())) == [True]
    assert list(threaded(producer(), inference_mode=False)) == [False]


def test_the_next_item_is_made_while_this_one_is_consumed():
    # The consumer holds item 0 until the producer has started on item 1: only possible when
    # the two run at once (in a plain chain this would wait forever; here it times out if broken).
    working_on_next = threading.Event()

    def producer():
        yield 0
        working_on_next.set()
        yield 1

    stream = threaded(producer(), depth=1)
    assert next(stream) == 0
    assert working_on_next.wait(timeout=10)
    assert next(stream) == 1
