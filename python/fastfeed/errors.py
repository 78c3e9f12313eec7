"""The exceptions fastfeed raises."""
from __future__ import annotations

from ._core import FormatError

__all__ = ["FormatError", "FeedError", "MissingFileError"]


class FeedError(RuntimeError):
    """Assembling a batch failed; raised in the consumer at that batch, naming the sample."""


class MissingFileError(FormatError, FileNotFoundError):
    """A source file does not exist (both a FormatError and a FileNotFoundError)."""
