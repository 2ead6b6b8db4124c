"""Items of an iterator produced ahead by a background thread (file and table readers).

pyarrow decodes without the GIL, so the next batch is read while the caller computes
on this one.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")

_END = object()


def prefetched(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``items``, produced up to ``depth`` ahead by a background thread.

    Decoding a batch (pyarrow, without the GIL) then overlaps with the work done on
    the one before. An error of the producer is raised in the consumer, where the
    batch it stopped at would have been; a consumer that stops early stops the
    producer at its next batch.
    """
    handoff: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(entry) -> bool:
        while not stop.is_set():
            try:
                handoff.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer((item, None)):
                    return
            offer((_END, None))
        except BaseException as error:  # handed to the consumer, which raises it
            offer((None, error))

    producer = threading.Thread(target=produce, name="gpukmeans-batches", daemon=True)
    producer.start()
    try:
        while True:
            item, error = handoff.get()
            if error is not None:
                try:
                    raise error
                finally:
                    # The raised error's traceback holds this frame: without this, the frame
                    # and the error hold each other (and the reader) until the collector runs.
                    error = None
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        producer.join()


__all__ = ["prefetched"]
