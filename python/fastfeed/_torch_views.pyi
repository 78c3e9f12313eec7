"""Type stub for fastfeed's optional native module csrc/torch_views.cpp (built only where the
build could import torch; see views.py)."""

from typing import List

import torch

TORCH_VERSION: str
"""The torch version this module was compiled against; views.py uses it under no other."""

def rows(tensor: torch.Tensor, start: int, stop: int) -> List[torch.Tensor]:
    """[tensor[start], ..., tensor[stop - 1]] as views of tensor's storage, made without the
    dispatcher. Refuses subclasses, tensors that require grad, non-strided layouts and
    0-d tensors (ValueError), and a range outside the rows (IndexError)."""
    ...
