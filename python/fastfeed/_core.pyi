"""Type stub for fastfeed's private native module (csrc/bindings.cpp)."""
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

class FormatError(ValueError): ...

class NpyFile:
    @staticmethod
    def open(path: str) -> NpyFile: ...
    @property
    def dtype(self) -> str: ...
    @property
    def shape(self) -> Tuple[int, ...]: ...
    @property
    def path(self) -> str: ...
    @property
    def data_offset(self) -> int: ...
    def advise_random_access(self, random: bool) -> None: ...

class RaggedFile:
    """A dataset's values: `count` sequences back to back in one memory-mapped file, cut by int64
    offsets. In a list of series handed to the core it stands for all its sequences, in order."""
    @staticmethod
    def open(
        values_path: str, offsets_path: str, count: int, num_steps: int, dtype: str, row_elems: int
    ) -> RaggedFile: ...
    @property
    def count(self) -> int: ...
    @property
    def num_steps(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def row_elems(self) -> int: ...
    @property
    def values_path(self) -> str: ...
    @property
    def offsets_path(self) -> str: ...
    def lengths(self) -> npt.NDArray[np.int64]: ...
    def advise_random_access(self, random: bool) -> None: ...

_SeriesItem = Union[np.ndarray, NpyFile, RaggedFile]

class Assembler:
    def __init__(
        self, inputs: List[_SeriesItem], targets: List[_SeriesItem], window: int,
        sampling_rate: int, stride: int, horizon: int, start_index: int, end_index: int,
        x_dtype: str, y_dtype: str, x_mean: Sequence[float], x_std: Sequence[float],
        y_mean: Sequence[float], y_std: Sequence[float], check_finite: bool = False,
    ) -> None: ...
    @property
    def num_samples(self) -> int: ...

class Sequences:
    """Whole sequences (and their step targets or labels) as the core reads them."""
    def __init__(self, inputs: List[_SeriesItem], step_targets: List[_SeriesItem],
                 labels: Optional[_SeriesItem]) -> None: ...

# (x, y, mask, lengths, segment_ids, position_ids, cu_seqlens), None where a block has no such output.
_Arrays = Tuple[Optional[np.ndarray], ...]

class Pipeline:
    @staticmethod
    def windows(
        assembler: Assembler, shuffle: bool, seed: int, rank: int, world: int, pad: bool, batch_size: int,
        epoch: int, first_batch: int, end_batch: int, steps_per_epoch: int, batches_per_block: int,
        x_feat: List[int], y_feat: List[int], num_threads: int, prefetch: int,
    ) -> Pipeline: ...
    @staticmethod
    def sequences(
        data: Sequences, batch_size: int, shuffle: bool, seed: int, drop_last: bool, bucket: bool,
        bucket_pool: int, pack: bool, max_len: int, pad_multiple: int, pad_left: bool, truncate_left: bool,
        pad_value: float, x_dtype: str, y_dtype: str, x_mean: Sequence[float], x_std: Sequence[float],
        check_finite: bool, x_feat: List[int], y_feat: List[int], rank: int, world: int, epoch: int,
        first_batch: int, end_batch: int, steps_per_epoch: int, num_threads: int, prefetch: int,
    ) -> Pipeline: ...
    def next(self) -> Optional[Tuple[_Arrays, int, int, Optional[str], float, int]]:
        """(arrays, first_batch, num_batches, error, build_seconds, queued) of the next block, or None."""
    def close(self) -> None: ...

def fingerprint(series: List[_SeriesItem], rows: int) -> int: ...
def permutation(n: int, seed: int, epoch: int, positions: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
def moments(series: List[_SeriesItem], start: int, end: int) -> Tuple[List[float], List[float], int]: ...
def gather_windows(
    source: Union[np.ndarray, NpyFile], starts: npt.ArrayLike, window: int, rate: int, out_dtype: np.dtype, tail: List[int]
) -> np.ndarray: ...
