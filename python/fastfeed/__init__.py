"""fastfeed: ordered data (time series, sequences, streams) into PyTorch training loops, fast.

from fastfeed import Feeder
for x, y in Feeder(series, window=64, horizon=1, batch_size=256, shuffle=True):
    ...
"""

from __future__ import annotations

from . import compat, reference
from ._version import __version__
from .batch import Batch
from .build import build_info, cuda_available
from .errors import FeedError, FormatError
from .feeder import Feeder
from .io.dataset import DatasetInfo, append_dataset, open_dataset, write_dataset
from .mix import Mixture, mix
from .run.stats import FeedStats
from .stream import Stream

__all__ = [
    "Batch",
    "DatasetInfo",
    "FeedError",
    "FeedStats",
    "Feeder",
    "FormatError",
    "Mixture",
    "Stream",
    "__version__",
    "append_dataset",
    "build_info",
    "compat",
    "cuda_available",
    "mix",
    "open_dataset",
    "reference",
    "write_dataset",
]
