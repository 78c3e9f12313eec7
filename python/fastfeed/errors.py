"""The exceptions fastfeed raises."""

from __future__ import annotations

from typing import Any

from ._core import FormatError

__all__ = ["FeedError", "FormatError", "MissingFileError"]


class FeedError(RuntimeError):
    """Assembling a batch failed; raised in the consumer at that batch, naming the sample."""


class MissingFileError(FormatError, FileNotFoundError):
    """A source file does not exist (both a FormatError and a FileNotFoundError).

    Raised as ``MissingFileError(errno.ENOENT, message, filename)``; ``str()`` is the message.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # ValueError comes first in the MRO, so OSError's constructor never fills these in.
        if len(args) == 3:
            self.errno, self.strerror, self.filename = args

    def __str__(self) -> str:
        return self.strerror if isinstance(self.strerror, str) else super().__str__()
