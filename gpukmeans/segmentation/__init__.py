"""Customer segmentation on top of :class:`gpukmeans.KMeans`: from a raw table to named segments.

Everything ``gpukmeans segment``, ``sweep``, ``predict``, ``rfm`` and ``demo`` do
is here, callable from Python:

>>> from gpukmeans.segmentation import segment                      # doctest: +SKIP
>>> result = segment("customers.csv", k=5, out="segments")          # doctest: +SKIP
>>> result.profiles                                                 # doctest: +SKIP
"""

from .demo import make_customers, run_demo
from .errors import InputError, OutputError
from .io import read_table, write_table
from .model_io import SegmentModel, load_model, nearest_centers, save_model
from .pipeline import SegmentationResult, SweepRun, parse_k_range, predict, segment, sweep_k
from .preprocess import Preprocessor, PreparedData, PreprocessReport
from .profiles import name_segments, profile_segments, segment_contrasts
from .rfm import RFMColumns, RFMResult, rfm, rfm_file

__all__ = [
    "InputError",
    "OutputError",
    "PreparedData",
    "PreprocessReport",
    "Preprocessor",
    "RFMColumns",
    "RFMResult",
    "SegmentModel",
    "SegmentationResult",
    "SweepRun",
    "load_model",
    "make_customers",
    "name_segments",
    "nearest_centers",
    "parse_k_range",
    "predict",
    "profile_segments",
    "read_table",
    "rfm",
    "rfm_file",
    "run_demo",
    "save_model",
    "segment",
    "segment_contrasts",
    "sweep_k",
    "write_table",
]
