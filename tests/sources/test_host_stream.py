"""Host streaming's bookkeeping on the CPU: the order of chunks, the one-ahead uploads, the
two staging buffers and the events between them, the last partial chunk.

``DeviceFeeder`` asks the CUDA runtime for two streams, events, pinned buffers and
copies. Here a stand-in runtime (``FakeCuda``) does each of those on the CPU and writes
down what was asked, in order; an upload copies the rows as a real one does, so the
rows a consumer receives are the rows uploaded. What a GPU adds (that the copies truly
overlap) is left to the GPU tests (tests/gpu/test_gpu_scale.py).
"""

import contextlib
import logging
import types

import numpy as np
import pandas as pd
import pytest
import torch

from gpukmeans.sources import host_stream
from gpukmeans.sources.conditioning import Conditioning
from gpukmeans.sources.files import FileSource, open_table
from gpukmeans.sources.host_stream import DeviceFeeder, HostStreamSource


class FakeCuda:
    """What the feeder asks of the CUDA runtime, done on the CPU and logged in ``log``.

    Rows name themselves by their first value (row ``i`` of the test tables holds ``i``
    there), so the log reads: ``("upload", 4, "copy")`` is the upload of the chunk that
    starts at row 4 on the copy stream; ``("compute waits", 4)`` the compute stream
    waiting for that upload; ``("keep for compute", 4)`` its memory kept for the compute
    stream; ``("stage", buffer, 8)`` chunk 8 copied into staging buffer ``buffer``;
    ``("staging waits", 0)`` the host waiting for upload 0 before refilling its buffer;
    ``("allocate", buffer, rows)`` a pinned staging buffer. ``devices`` holds the device
    each stream was asked for, and ``upload_devices`` the target of each upload.
    """

    def __init__(self):
        self.log = []
        self.devices = {}
        self.upload_devices = []
        self.current_stream = "compute"
        self._event_rows = {}
        self._buffers = {}
        runtime = self

        class Event:
            def record(self, stream):
                # an event marks the upload just issued on that stream
                runtime._event_rows[id(self)] = runtime._last_upload

            def synchronize(self):
                runtime.log.append(("staging waits", runtime._event_rows[id(self)]))

        class Stream:
            def __init__(self, name):
                self.name = name

            def wait_event(self, event):
                runtime.log.append((f"{self.name} waits", runtime._event_rows[id(event)]))

        @contextlib.contextmanager
        def stream(on):
            previous, runtime.current_stream = runtime.current_stream, on.name
            try:
                yield
            finally:
                runtime.current_stream = previous

        def copy_stream(device):
            runtime.devices["copy stream"] = device
            return Stream("copy")

        def current_stream(device):
            runtime.devices["compute stream"] = device
            return Stream("compute")

        self.cuda = types.SimpleNamespace(Stream=copy_stream, Event=Event, stream=stream, current_stream=current_stream)

    def empty(self, shape, dtype, pin_memory=False):
        assert pin_memory, "staging buffers are pinned"
        buffer = torch.empty(shape, dtype=dtype).as_subclass(HostRows)
        name = f"buffer {len(self._buffers)}"
        self._buffers[buffer.untyped_storage().data_ptr()] = name
        self.log.append(("allocate", name, shape[0]))
        return buffer

    def buffer_name(self, rows) -> str:
        return self._buffers[rows.untyped_storage().data_ptr()]

    def upload(self, rows, device):
        self.upload_devices.append(device)
        self._last_upload = int(rows[0, 0])
        self.log.append(("upload", self._last_upload, self.current_stream))
        return rows.as_subclass(torch.Tensor).clone().as_subclass(DeviceRows)

    def __getattr__(self, name):
        return getattr(torch, name)


class HostRows(torch.Tensor):
    """Rows in host memory: a staging buffer, or a caller's tensor (``pinned`` or not)."""

    runtime: FakeCuda
    pinned = False

    def is_pinned(self):
        return self.pinned

    def copy_(self, rows):
        HostRows.runtime.log.append(("stage", HostRows.runtime.buffer_name(self), int(rows[0, 0])))
        return super().copy_(rows)

    def to(self, device, non_blocking=False):
        assert non_blocking, "uploads do not block the host"
        return HostRows.runtime.upload(self, device)


class PinnedRows(HostRows):
    pinned = True


class DeviceRows(torch.Tensor):
    """An uploaded chunk."""

    def record_stream(self, stream):
        HostRows.runtime.log.append((f"keep for {stream.name}", int(self[0, 0])))


@pytest.fixture
def runtime(monkeypatch):
    fake = FakeCuda()
    monkeypatch.setattr(host_stream, "torch", fake)
    monkeypatch.setattr(HostRows, "runtime", fake, raising=False)
    return fake


def _table(n_rows, n_features=3):
    """Row ``i`` is ``[i, i + 0.25, i + 0.5, ...]``: its first value names it."""
    return torch.arange(n_rows, dtype=torch.float64)[:, None] + 0.25 * torch.arange(n_features)


def _receive(runtime, chunks):
    """Every ``(start, rows, ...)`` of ``chunks``, as plain tensors, noting in the log when
    each is handed over."""
    received = []
    for start, rows, *rest in chunks:
        runtime.log.append(("handed over", start))
        received.append((start, rows.as_subclass(torch.Tensor).clone(), *rest))
    return received


def _position(log, entry) -> int:
    assert log.count(entry) == 1, f"{entry} should happen once: {log}"
    return log.index(entry)


def test_chunks_arrive_in_order_whole_and_the_last_one_partial(runtime):
    X = _table(10).as_subclass(HostRows)
    weights = torch.linspace(1.0, 2.0, 10, dtype=torch.float64)
    source = HostStreamSource(X, weights, chunk_size=4, device="cuda")
    received = _receive(runtime, source.chunks())
    assert [start for start, _, _ in received] == [0, 4, 8]
    assert [rows.shape for _, rows, _ in received] == [(4, 3), (4, 3), (2, 3)]
    assert torch.equal(torch.cat([rows for _, rows, _ in received]), _table(10))
    assert torch.equal(torch.cat([w for _, _, w in received]), weights)


def test_each_upload_is_queued_one_chunk_ahead_on_the_copy_stream(runtime):
    source = HostStreamSource(_table(10).as_subclass(HostRows), None, chunk_size=4, device="cuda")
    _receive(runtime, source.chunks())
    log = runtime.log
    uploads = [entry for entry in log if entry[0] == "upload"]
    assert uploads == [("upload", 0, "copy"), ("upload", 4, "copy"), ("upload", 8, "copy")]
    # chunk i+1 is on its way while chunk i is computed on, and no further ahead
    assert _position(log, ("upload", 4, "copy")) < _position(log, ("handed over", 0))
    assert _position(log, ("upload", 8, "copy")) < _position(log, ("handed over", 4))
    assert _position(log, ("upload", 8, "copy")) > _position(log, ("handed over", 0))
    for start in (0, 4, 8):
        # the compute stream waits for the chunk's own upload, and keeps its memory
        # until it is done with it, before the consumer sees it
        handed = _position(log, ("handed over", start))
        assert _position(log, ("upload", start, "copy")) < _position(log, ("compute waits", start)) < handed
        assert _position(log, ("keep for compute", start)) < handed


def test_two_staging_buffers_alternate_and_are_refilled_only_after_their_upload(runtime):
    X = _table(18).as_subclass(HostRows)
    source = HostStreamSource(X, None, chunk_size=4, device="cuda")
    first_pass = _receive(runtime, source.chunks())
    second_pass = _receive(runtime, source.chunks())
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first_pass, second_pass))
    log = runtime.log
    assert [entry for entry in log if entry[0] == "allocate"] == [
        ("allocate", "buffer 0", 4), ("allocate", "buffer 1", 4)]  # once, for every pass
    stages = [i for i, entry in enumerate(log) if entry[0] == "stage"]
    pass_starts = [0, 4, 8, 12, 16]
    assert [log[i][1:] for i in stages] == 2 * [(f"buffer {i % 2}", start) for i, start in enumerate(pass_starts)]
    # a buffer is refilled only once the upload that last read it is done (the previous
    # pass's included)
    last_read = {}
    for i in stages:
        _, buffer, row = log[i]
        if buffer in last_read:
            assert log[i - 1] == ("staging waits", last_read[buffer])
        last_read[buffer] = row
    # the last chunk (2 rows) is the front of its buffer
    assert [rows.shape[0] for _, rows, _ in first_pass] == [4, 4, 4, 4, 2]
    assert torch.equal(torch.cat([rows for _, rows, _ in first_pass]), _table(18))


def test_pinned_rows_are_uploaded_as_they_are(runtime):
    X = _table(10).as_subclass(PinnedRows)
    source = HostStreamSource(X, None, chunk_size=4, device="cuda")
    received = _receive(runtime, source.chunks())
    assert torch.equal(torch.cat([rows for _, rows, _ in received]), _table(10))
    kinds = {entry[0] for entry in runtime.log}
    assert not kinds & {"allocate", "stage", "staging waits"}
    assert [entry for entry in runtime.log if entry[0] == "upload"] == [
        ("upload", 0, "copy"), ("upload", 4, "copy"), ("upload", 8, "copy")]


def test_a_feeder_hands_over_nothing_for_no_chunks_and_one_for_one(runtime):
    feeder = DeviceFeeder(torch.device("cuda"), 4, 3, torch.float64)
    assert list(feeder.feed(iter([]))) == []
    one = _table(3).as_subclass(HostRows)
    ((start, rows),) = list(feeder.feed(iter([(0, one)])))
    assert start == 0 and torch.equal(rows.as_subclass(torch.Tensor), _table(3))


def test_a_file_read_for_a_gpu_goes_through_the_feeder(runtime, tmp_path):
    # batches of 7 rows cut into chunks of 3: the feeder sees chunks that restart at
    # each batch, and hands them over in order with their weights
    # (tenths: a float32 staging buffer would round them)
    frame = pd.DataFrame((_table(20) + 0.1).numpy(), columns=["a", "b", "c"])
    frame.to_parquet(tmp_path / "table.parquet", row_group_size=7)
    weights = torch.arange(20, dtype=torch.float64)
    gpu = torch.device("cuda", 1)
    source = FileSource(open_table(tmp_path / "table.parquet"), (0, 20), chunk_size=3,
                        device=gpu, sample_weight=weights)
    received = _receive(runtime, source.chunks())
    assert [start for start, _, _ in received] == [0, 3, 6, 7, 10, 13, 14, 17]
    assert all(rows.dtype == torch.float64 for _, rows, _ in received)
    assert torch.equal(torch.cat([rows for _, rows, _ in received]), _table(20) + 0.1)
    assert set(runtime.upload_devices) == {gpu}
    assert torch.equal(torch.cat([w for _, _, w in received]), weights)
    uploads = [row for kind, row, *_ in runtime.log if kind == "upload"]
    assert uploads == [0, 3, 6, 7, 10, 13, 14, 17]


def test_rows_keep_their_dtype_and_go_to_the_feeders_device(runtime):
    # tenths are not float32 values: a staging buffer of another dtype would round them
    X = (_table(10) + 0.1).as_subclass(HostRows)
    gpu = torch.device("cuda", 1)  # not the current device: every stream and copy must name it
    source = HostStreamSource(X, None, chunk_size=4, device=gpu)
    received = _receive(runtime, source.chunks())
    assert all(rows.dtype == torch.float64 for _, rows, _ in received)
    assert torch.equal(torch.cat([rows for _, rows, _ in received]), _table(10) + 0.1)
    assert runtime.devices == {"copy stream": gpu, "compute stream": gpu}
    assert runtime.upload_devices == [gpu, gpu, gpu]


def test_a_short_first_chunk_still_gets_a_whole_chunks_buffer(runtime):
    # a file's first batch may be shorter than a chunk; the buffer is sized for the
    # full chunks that follow, so that they reuse it
    feeder = DeviceFeeder(torch.device("cuda"), 4, 3, torch.float64)
    X = _table(10).as_subclass(HostRows)
    received = list(feeder.feed(iter([(0, X[0:2]), (2, X[2:6]), (6, X[6:10])])))
    assert [entry for entry in runtime.log if entry[0] == "allocate"] == [
        ("allocate", "buffer 0", 4), ("allocate", "buffer 1", 4)]
    assert [start for start, _ in received] == [0, 2, 6]
    assert torch.equal(torch.cat([rows.as_subclass(torch.Tensor) for _, rows in received]), _table(10))


def test_a_table_fits_on_the_device_up_to_half_its_free_memory(runtime):
    asked = []

    def mem_get_info(device):
        asked.append(device)
        return 1000, 4000  # free and total bytes

    runtime.cuda.mem_get_info = mem_get_info
    gpu = torch.device("cuda", 1)
    assert host_stream.fits_on_device(500, gpu)
    assert not host_stream.fits_on_device(501, gpu)
    assert asked == [gpu, gpu]
    assert host_stream.fits_on_device(10**15, torch.device("cpu"))  # computed where the rows are
    assert asked == [gpu, gpu]


def test_unpinned_rows_are_announced_and_pinned_ones_are_not(runtime, caplog):
    caplog.set_level(logging.INFO, logger="gpukmeans")
    HostStreamSource(_table(4).as_subclass(PinnedRows), None, chunk_size=2, device="cuda")
    assert caplog.messages == []
    HostStreamSource(_table(4).as_subclass(HostRows), None, chunk_size=2, device="cuda")
    assert caplog.messages == [
        "gpukmeans: streaming host data through pinned staging buffers (pass a pinned tensor to skip them)."]


def test_rows_taken_by_index_reach_the_device_in_the_compute_dtype(runtime, monkeypatch):
    gpu = torch.device("cuda", 1)
    source = HostStreamSource(_table(10).to(torch.bfloat16).as_subclass(HostRows), None, chunk_size=4, device=gpu)
    copied_to = []

    def blocking_copy(rows, device):  # a few rows (centres) are copied as they are asked for
        copied_to.append(device)
        return rows.as_subclass(torch.Tensor).clone()

    monkeypatch.setattr(HostRows, "to", blocking_copy)
    taken = source.take_local(torch.tensor([7, 2]))
    assert copied_to == [gpu]
    assert taken.dtype == torch.float32  # bfloat16 rows compute in float32
    assert torch.equal(taken, _table(10)[[7, 2]].float())  # i + 0.25 j: exact in bfloat16


def test_conditioned_rows_stay_in_host_memory_with_their_weights_and_chunks(runtime):
    gpu = torch.device("cuda", 1)
    weights = torch.linspace(1.0, 2.0, 10, dtype=torch.float64)
    source = HostStreamSource(_table(10) + 1000.0, weights, chunk_size=4, device=gpu)
    conditioning = Conditioning(shift=torch.full((3,), 1000.0, dtype=torch.float64), exponent=1)
    conditioned = source.conditioned(conditioning)
    assert isinstance(conditioned, HostStreamSource) and conditioned.conditioning is conditioning
    assert conditioned.device == gpu and conditioned.X.device.type == "cpu"
    assert torch.equal(conditioned.X, _table(10) / 2)  # (x - 1000) * 2**-1
    received = _receive(runtime, conditioned.chunks())
    assert [start for start, _, _ in received] == [0, 4, 8]
    assert torch.equal(torch.cat([rows for _, rows, _ in received]), _table(10) / 2)
    assert torch.equal(torch.cat([w for _, _, w in received]), weights)
    assert runtime.upload_devices == [gpu, gpu, gpu]
