"""Rows in host memory, computed on a CUDA device: chunked uploads overlapped with compute.

When the table does not fit in GPU memory it stays in host memory. A pinned tensor
(``torch.from_numpy(X).pin_memory()``) is uploaded straight from its pages; other host
memory goes chunk by chunk through one of two pinned staging buffers (pinning the
caller's pages in place could fail on memory CUDA cannot lock, such as a read-only
memory map, and leave an error behind for the next kernel launch). A side CUDA stream
uploads chunk i+1 while the compute stream works on chunk i; events order the two,
and a staging buffer is refilled only once its last upload has finished.
"""

import logging
from typing import Iterator, Optional

import torch

from .memory import InMemorySource

logger = logging.getLogger("gpukmeans")

# Share of free GPU memory the table may take before it is streamed from the host:
# the rest is left to chunk buffers, labels and the caller.
_DEVICE_SHARE_FOR_DATA = 0.5


def fits_on_device(n_bytes: int, device: torch.device) -> bool:
    """Whether ``n_bytes`` of data can be copied to ``device`` and leave room to work."""
    if device.type != "cuda":
        return True
    free_bytes, _ = torch.cuda.mem_get_info(device)
    return n_bytes <= _DEVICE_SHARE_FOR_DATA * free_bytes


class DeviceFeeder:
    """Uploads host chunks to ``device`` one chunk ahead of the consumer.

    ``feed`` takes an iterator of ``(start, host_rows)`` and yields
    ``(start, device_rows)``: when it hands over chunk i, the upload of chunk i+1 has
    already been queued on the copy stream, so it runs while chunk i is computed.
    """

    def __init__(self, device: torch.device, chunk_rows: int, n_features: int, dtype: torch.dtype):
        self.device = device
        self.copy_stream = torch.cuda.Stream(device)
        self._shape = (chunk_rows, n_features)
        self._dtype = dtype
        self._staging: list = [None, None]
        self._staging_free: list = [None, None]

    def _staging_buffer(self, slot: int, n_rows: int) -> torch.Tensor:
        if self._staging[slot] is None or self._staging[slot].shape[0] < n_rows:
            rows = max(n_rows, self._shape[0])
            self._staging[slot] = torch.empty((rows, self._shape[1]), dtype=self._dtype, pin_memory=True)
        elif self._staging_free[slot] is not None:
            self._staging_free[slot].synchronize()  # its previous upload must be done
        return self._staging[slot][:n_rows]

    def _upload(self, start: int, rows: torch.Tensor, slot: int):
        staged = not rows.is_pinned()
        if staged:
            buffer = self._staging_buffer(slot, rows.shape[0])
            buffer.copy_(rows)
            rows = buffer
        with torch.cuda.stream(self.copy_stream):
            on_device = rows.to(self.device, non_blocking=True)
            done = torch.cuda.Event()
            done.record(self.copy_stream)
        if staged:
            self._staging_free[slot] = done
        return start, on_device, done

    def feed(self, host_chunks: Iterator) -> Iterator:
        compute_stream = torch.cuda.current_stream(self.device)
        pending = None
        slot = 0
        for start, rows in host_chunks:
            uploaded = self._upload(start, rows, slot)
            slot ^= 1
            if pending is not None:
                yield self._ready(pending, compute_stream)
            pending = uploaded
        if pending is not None:
            yield self._ready(pending, compute_stream)

    @staticmethod
    def _ready(item, compute_stream):
        start, on_device, done = item
        compute_stream.wait_event(done)
        # Allocated on the copy stream, used on the compute stream: keep it until both are done.
        on_device.record_stream(compute_stream)
        return start, on_device


class HostStreamSource(InMemorySource):
    """Rows held in host memory, assigned on a CUDA device in uploaded chunks.

    Parameters
    ----------
    X : (n, d) float tensor in host memory, pinned or not, in its storage dtype
        (16-bit rows are uploaded as they are: half the bytes over the bus).
    sample_weight : (n,) tensor on ``device`` or None (one value per row is small).
    chunk_size : rows per upload and per kernel call.
    device : the CUDA device.
    """

    def __init__(self, X: torch.Tensor, sample_weight: Optional[torch.Tensor], chunk_size: int, device):
        # Rows, weights and chunking as in memory; only where a chunk is computed differs.
        super().__init__(X, sample_weight, chunk_size)
        self._device = torch.device(device)
        if not X.is_pinned():
            logger.info("gpukmeans: streaming host data through pinned staging buffers (pass a pinned tensor to skip them).")
        self._feeder = DeviceFeeder(self._device, self.chunk_size, X.shape[1], X.dtype)

    @property
    def device(self) -> torch.device:
        return self._device

    def chunks(self):
        host_chunks = (
            (start, self.X[start : start + self.chunk_size]) for start in range(0, self.n_samples, self.chunk_size)
        )
        for start, rows in self._feeder.feed(host_chunks):
            weights = None if self.sample_weight is None else self.sample_weight[start : start + rows.shape[0]]
            yield start, rows, weights

    def take_local(self, indices: torch.Tensor) -> torch.Tensor:
        return self.X[indices.cpu()].to(self._device).to(self.dtype)

    def _with_rows(self, rows: torch.Tensor, conditioning) -> "HostStreamSource":
        # The conditioned rows stay in host memory too: a table streamed for want of GPU
        # memory is conditioned once on the host, not on every pass.
        source = HostStreamSource(rows, self.sample_weight, self.chunk_size, self._device)
        source.conditioning = conditioning
        return source
