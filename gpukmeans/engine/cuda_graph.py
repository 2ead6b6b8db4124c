"""Recording a piece of GPU work once and replaying it as a CUDA graph.

A Lloyd iteration on a million rows is one kernel of about 0.1 ms on a current GPU and
some thirty small launches around it (the totals added up, the centres divided out, their
norms, shift and empty flags), each a few microseconds of Python and driver time on the
host. The GPU waits for the host between them, so the iteration costs several times its
kernel. Replayed from a graph, the same launches cost the host one call.

A replay runs exactly the recorded kernels on the same tensors, so its results are
those of running the work again, bit for bit. The recorded work must read and write only
tensors that outlive the recording, and must not wait on the host: no ``.cpu()``, no
``.item()``, no Python decision taken on a GPU value.

``GPUKMEANS_CUDA_GRAPHS=0`` turns recording off (to compare, or to rule it out when
debugging).
"""

import os

import torch


def cuda_graphs_enabled() -> bool:
    """Whether work may be recorded as CUDA graphs (``GPUKMEANS_CUDA_GRAPHS`` not ``0``)."""
    return os.environ.get("GPUKMEANS_CUDA_GRAPHS", "1").strip() != "0"


class RecordedWork:
    """``work()`` recorded as a CUDA graph on ``device``: nothing runs until :meth:`replay`.

    ``work`` returns a tuple of tensors; each replay rewrites those same tensors and
    returns them. Recording skips what ``torch.cuda.graph`` does around a capture for
    general use (a garbage collection and emptying the allocator's cache, tens of
    milliseconds in a large process), which this small, self-contained work does not need.
    """

    def __init__(self, work, device):
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.device(device):
            # A capture must not run on the legacy default stream.
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                # thread_local: other threads' CUDA calls (a loader's pinned copies) do not
                # invalidate the capture
                self._graph.capture_begin(capture_error_mode="thread_local")
                try:
                    self.outputs = work()
                finally:
                    self._graph.capture_end()
            torch.cuda.current_stream().wait_stream(stream)

    def replay(self):
        self._graph.replay()
        return self.outputs
