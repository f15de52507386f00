"""Stages of a stream on threads of their own, joined by bounded queues.

Generation is a chain of iterators — the prior draws latent chunks, the VAE decodes them to mel,
the vocoder turns mel into audio — and run one after another they keep one core busy. Each
:func:`threaded` link runs the iterator before it on its own thread, so the prior can draw the
next chunk while the vocoder renders this one. PyTorch releases the GIL inside its kernels, so
the stages really run at once. The queues are bounded: a stage runs at most ``depth`` items ahead
of the one after it, so memory stays bounded however long the stream.

What comes out is exactly what the plain chain yields, in the same order: each stage still sees its
items one after another, and no random state is shared between stages (the prior owns its
generator).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

Item = TypeVar("Item")
_END = object()  # the producer finished
POLL_SECONDS = 0.1  # how often a blocked producer checks whether the consumer has gone


class _Failure:
    """The exception a producer raised, carried across the queue to be raised in the consumer."""

    def __init__(self, error: BaseException):
        self.error = error


def threaded(items: Iterable[Item], depth: int = 2, name: str = "stage", inference_mode: bool = True,
             torch_threads: int | None = None) -> Iterator[Item]:
    """Iterate ``items`` on a background thread, at most ``depth`` items ahead of the caller.

    An exception in the producer is raised in the consumer at the point it would have been in the
    plain chain. When the consumer stops early (closes this generator, or is garbage-collected),
    the producer stops at its next item and the thread ends.

    Args:
        items: the upstream iterator; it is advanced only on the background thread.
        depth: the queue's size (>= 1).
        inference_mode: run the producer under ``torch.inference_mode`` (a thread-local setting:
            the caller's mode does not reach a new thread).
        torch_threads: intra-op threads for the producer's torch ops (also per thread; None: torch's
            default for a new thread, every core).
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stopped = threading.Event()

    def put(item: Any) -> bool:
        while not stopped.is_set():
            try:
                buffer.put(item, timeout=POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            if torch_threads is not None:
                import torch

                torch.set_num_threads(torch_threads)
            if inference_mode:
                import torch

                with torch.inference_mode():
                    _drain(items, put)
            else:
                _drain(items, put)
        except BaseException as err:  # noqa: B036 - carried to the consumer, which re-raises it
            put(_Failure(err))
            return
        put(_END)

    worker = threading.Thread(target=produce, name=f"audiogen-{name}", daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stopped.set()
        worker.join()


def _drain(items: Iterable[Any], put: Any) -> None:
    iterator = iter(items)
    try:
        for item in iterator:
            if not put(item):
                return
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # an upstream generator's own cleanup runs on the thread that ran it
