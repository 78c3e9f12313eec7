"""fastfeed: ordered data (time series, sequences, streams) into PyTorch training loops, fast.

    from fastfeed import Feeder
    for x, y in Feeder(series, window=64, horizon=1, batch_size=256, shuffle=True):
        ...
"""
from __future__ import annotations

from . import compat, reference
from .batch import Batch
from .build import build_info, cuda_available
from .dataset import DatasetInfo, append_dataset, open_dataset, write_dataset
from .errors import FeedError, FormatError
from .feeder import Feeder
from .stats import FeedStats
from .stream import Stream

__version__ = "0.1.0"
__all__ = [
    "Feeder", "FeedStats", "Stream", "Batch", "FeedError", "FormatError", "DatasetInfo", "write_dataset", "append_dataset",
    "open_dataset", "build_info", "cuda_available", "compat", "reference", "__version__",
]
