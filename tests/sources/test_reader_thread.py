"""The background thread that reads a file's batches ahead (``gpukmeans._prefetch``): it hands
every item over in order, raises its errors in the consumer, and ends with its iterator.

A reader that never stops would make a wait in these tests block for ever: each close runs in
a thread of its own that must return within ``WAIT`` seconds, and every test runs under
``bounded``, which turns any other wait of more than ``SECONDS`` into a failure.
"""

import gc
import signal
import threading
import time
import weakref

import numpy as np
import pandas as pd
import pytest
import torch

from gpukmeans._prefetch import prefetched
from gpukmeans.sources.files import FileSource, open_table

WAIT = 2  # for a close; the longest it takes is one poll of the reader, 0.05 s
SECONDS = 10  # for a whole test, beyond every WAIT: an alarm that interrupts a join corrupts it


@pytest.fixture(autouse=True)
def bounded():
    """Fail the test if it runs more than ``SECONDS``: the alarm interrupts a wait of the main
    thread (a queue's ``get``, a thread's ``join``) with an error."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"blocked for more than {SECONDS} s: a reader thread that never stops?")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _started_reader(stream):
    """The first item of ``stream`` and the reader thread that its first step started."""
    before = set(threading.enumerate())
    first = next(stream)
    (reader,) = [thread for thread in threading.enumerate() if thread not in before]
    # a stream left open when the program ends must not keep it alive
    assert reader.daemon
    return first, reader


def _returns_in_time(action):
    """Run ``action`` (a close) in a thread of its own, so that a close that waits for ever
    fails the test instead of blocking it; raise its error, if any."""
    errors = []

    def run():
        try:
            action()
        except BaseException as error:
            errors.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=WAIT)
    assert not worker.is_alive(), "closing the stream does not return: its reader thread does not stop"
    if errors:
        raise errors[0]


def _assert_ended(thread):
    """The reader ended by the time its stream was closed (the close waits for it)."""
    assert not thread.is_alive(), "the reader thread outlived its iterator"


def test_the_reader_thread_stops_when_the_consumer_closes_the_stream():
    produced = []

    def numbers():
        for i in range(1000):
            produced.append(i)
            yield i

    stream = prefetched(numbers(), depth=2)
    first, reader = _started_reader(stream)
    assert [first, next(stream), next(stream)] == [0, 1, 2]
    # Close once the reader waits for room (three handed over, two in the queue, one being
    # offered): a reader that waits without polling the stop flag then never ends.
    while len(produced) < 6:
        time.sleep(0.01)
    time.sleep(0.1)
    _returns_in_time(stream.close)
    _assert_ended(reader)
    assert len(produced) == 6


def test_the_reader_thread_stops_when_a_stream_is_dropped_or_read_to_the_end():
    # a consumer that stops without closing: the generator is closed as it is freed
    dropped = [prefetched(iter(range(1000)), depth=2)]
    _, reader = _started_reader(dropped[0])
    _returns_in_time(lambda: (dropped.clear(), gc.collect()))  # the last reference, freed there
    _assert_ended(reader)
    whole = prefetched(iter(range(5)), depth=2)
    first, reader = _started_reader(whole)
    assert [first, *whole] == [0, 1, 2, 3, 4]
    _assert_ended(reader)


def test_a_consumer_slower_than_the_reader_gets_every_item_in_order():
    # the reader waits for room in the queue in short polls; a consumer that takes longer
    # than a poll over each item (its own work, here a pause) must still get the rest
    stream = prefetched(iter(range(4)), depth=1)
    first, reader = _started_reader(stream)
    items = [first]
    for item in stream:
        time.sleep(0.08)
        items.append(item)
    assert items == [0, 1, 2, 3]
    _assert_ended(reader)


def test_a_file_pass_stopped_early_leaves_no_reader_thread(tmp_path):
    # a pass that ends early (a draw reads one block, an error in the consumer) stops
    # reading the file too
    frame = pd.DataFrame(np.arange(3000 * 4, dtype=np.float32).reshape(3000, 4), columns=list("abcd"))
    frame.to_parquet(tmp_path / "one.parquet", row_group_size=400)
    source = FileSource(open_table(tmp_path / "one.parquet", list("abcd")), (0, 3000), chunk_size=100,
                        device=torch.device("cpu"))
    chunks = source.chunks()
    (start, rows, weights), reader = _started_reader(chunks)
    assert start == 0 and rows.shape == (100, 4) and weights is None
    np.testing.assert_array_equal(rows.numpy(), frame.to_numpy()[:100])
    _returns_in_time(chunks.close)
    _assert_ended(reader)


def test_an_error_while_reading_reaches_the_consumer_after_the_items_before_it():
    def broken():
        yield 1
        yield 2
        raise ValueError("bad batch")

    stream = prefetched(broken())
    first, reader = _started_reader(stream)
    assert [first, next(stream)] == [1, 2]
    with pytest.raises(ValueError, match="bad batch"):
        next(stream)
    _assert_ended(reader)


def test_an_error_raised_in_the_consumer_frees_the_stream_without_the_collector():
    # The error's traceback holds the stream's frame: were that frame to hold the error
    # too, the two (and the reader's iterator, with the file it reads) would wait for the
    # garbage collector. Disabled here, so that only reference counts free them.
    def broken():
        yield 1
        yield 2  # the reader waits to hand it over while _started_reader looks for it
        raise ValueError("bad batch")

    items = broken()
    freed = weakref.ref(items)
    stream = prefetched(items)
    del items
    gc.disable()
    try:
        first, reader = _started_reader(stream)
        assert [first, next(stream)] == [1, 2]
        with pytest.raises(ValueError, match="bad batch"):
            next(stream)
        _assert_ended(reader)
        del stream
        assert freed() is None
    finally:
        gc.enable()
