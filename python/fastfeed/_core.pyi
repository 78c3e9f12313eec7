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

_SeriesItem = Union[np.ndarray, NpyFile]

class Assembler:
    def __init__(
        self, inputs: List[_SeriesItem], targets: List[_SeriesItem], window: int,
        sampling_rate: int, stride: int, horizon: int, start_index: int, end_index: int,
        x_dtype: str, y_dtype: str, x_mean: Sequence[float], x_std: Sequence[float],
        y_mean: Sequence[float], y_std: Sequence[float], check_finite: bool = False,
    ) -> None: ...
    @property
    def num_samples(self) -> int: ...

class Pipeline:
    def __init__(
        self, assembler: Assembler, shuffle: bool, seed: int, epoch: int, batch_size: int,
        first_batch: int, end_batch: int, batches_per_block: int, num_threads: int,
        prefetch: int, x_dtype: np.dtype, x_tail: List[int], y_dtype: np.dtype, y_tail: List[int],
    ) -> None: ...
    def next(self) -> Optional[Tuple[np.ndarray, Optional[np.ndarray], int, int, Optional[str]]]:
        """(x, y, first_batch, num_batches, error) of the next block, or None at the end."""
    def close(self) -> None: ...

def permutation(n: int, seed: int, epoch: int, positions: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]: ...
def moments(series: List[_SeriesItem], start: int, end: int) -> Tuple[List[float], List[float], int]: ...
def gather_windows(
    source: _SeriesItem, starts: npt.ArrayLike, window: int, rate: int, out_dtype: np.dtype, tail: List[int]
) -> np.ndarray: ...
