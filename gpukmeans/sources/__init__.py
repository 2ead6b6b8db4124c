"""Where rows come from: one factory for every caller, and the data sources it builds.

:func:`open_source` (in :mod:`.factory`) turns an array, tensor, CuPy array, file path
or folder into a :class:`DataSource` (the seam every pass is written against, see
:mod:`.base`): rows in memory (:mod:`.memory`), in host memory streamed to a GPU
(:mod:`.host_stream`), in Parquet or CSV files read anew on every pass (:mod:`.files`),
or one rank's share of a table split across torch.distributed ranks
(:mod:`.distributed`). Before a fit computes on them, rows are conditioned
(:mod:`.conditioning`) and stored in their storage dtype (:mod:`.storage`); chunks are
sized by :mod:`.chunking`.
"""

from .base import DataSource, RowsByIndex
from .conditioning import Conditioning, RowMoments, local_moments
from .factory import OpenedRows, conditioned_for_fit, open_source, validate_sample_weight, validated_rows
from .files import FileSource, is_path
from .host_stream import HostStreamSource
from .memory import InMemorySource

__all__ = [
    "Conditioning",
    "DataSource",
    "FileSource",
    "HostStreamSource",
    "InMemorySource",
    "OpenedRows",
    "RowMoments",
    "RowsByIndex",
    "conditioned_for_fit",
    "is_path",
    "local_moments",
    "open_source",
    "validate_sample_weight",
    "validated_rows",
]
