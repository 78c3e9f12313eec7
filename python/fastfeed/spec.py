"""What the Feeder's arguments shared by every sample mode resolve to: a `FeedSpec`."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Optional, Tuple, Union

import numpy as np

from .arguments import INT32_MAX, check_bool, check_choice, check_int, check_optional_int, check_seed
from .device.upload import cuda_device_ready

logger = logging.getLogger("fastfeed")


@dataclass(frozen=True)
class FeedSpec:
    """The Feeder's resolved options that do not depend on the sample mode."""

    batch_size: int
    shuffle: bool
    seed: int
    drop_last: bool
    steps_per_epoch: Optional[int]
    rank: int
    world_size: int
    output: str  # "torch" or "numpy"
    check_finite: Union[bool, str]  # False, "raise", "skip" or "mask"
    device: str  # "cpu" or "cuda[:n]"
    device_cache: bool
    # Worker threads: the explicit num_threads, or (auto_threads) the most the tuner may use,
    # of which busy_threads while the training loop computes (run/tuning.py).
    num_threads: int
    progress: bool
    # Whether the caller passed batch_size (batch_size=None means 1): batch_tokens sizes whole
    # sequences' batches instead, and refuses an explicit batch_size.
    batch_size_given: bool = True
    auto_threads: bool = False
    busy_threads: int = 1

    @property
    def on_gpu(self) -> bool:
        return self.device != "cpu"


def resolve_spec(
    *,
    batch_size: Any,
    shuffle: Any,
    seed: Any,
    drop_last: Any,
    steps_per_epoch: Any,
    rank: Any,
    world_size: Any,
    output: Any,
    check_finite: Any,
    device: Any,
    device_cache: Any,
    num_threads: Any,
    progress: Any,
) -> FeedSpec:
    """Checks every shared argument and fills in the defaults that depend on the machine."""
    r, world = _resolve_ranks(rank, world_size)
    out = _resolve_output(output)
    finite = _resolve_check_finite(check_finite)
    cache = check_bool("device_cache", device_cache)
    dev = _resolve_device(device, cache, out, finite)
    if num_threads is None:
        threads, busy = auto_thread_caps(cache)
    else:
        threads = busy = _clamped_threads(num_threads)
    return FeedSpec(
        batch_size=1 if batch_size is None else check_int("batch_size", batch_size, 1),
        shuffle=check_bool("shuffle", shuffle),
        seed=check_seed(seed),
        drop_last=check_bool("drop_last", drop_last),
        steps_per_epoch=check_optional_int("steps_per_epoch", steps_per_epoch, 1),
        rank=r,
        world_size=world,
        output=out,
        check_finite=finite,
        device=dev,
        device_cache=cache,
        num_threads=threads,
        progress=check_bool("progress", progress),
        batch_size_given=batch_size is not None,
        auto_threads=num_threads is None,
        busy_threads=busy,
    )


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def auto_thread_caps(device_cache: bool) -> Tuple[int, int]:
    """(most, busy): how many workers num_threads=None may have claim blocks, at all and while
    the training loop computes. The tuner has no more workers build than there are cores beside
    the loop's own thread (busy = cores - 1); only while the loop waits for batches more than a
    tenth of its time may it lend its core to one more (most = cores), which then shortens its
    steps more than sharing the core lengthens them. So on 2 cores one worker feeds a loop that
    computes, two one that mostly waits; on a 16-core GPU machine (device="cuda", whose copies
    the loop's thread issues) 15 and 16. With device_cache the workers only draw sample starts
    (about 85 ns each, shuffled): half the cores, up to 8, outrun the GPU's gathers."""
    cores = cpu_count()
    most = min(8, max(2, cores // 2), cores) if device_cache else cores
    return most, max(1, min(most, cores - 1))


# More worker threads than this many per core only contend for the cores (and each holds buffers).
MAX_THREADS_PER_CORE = 4


def _clamped_threads(num_threads: Any) -> int:
    """`num_threads`, at most MAX_THREADS_PER_CORE per core: a config written for a larger
    machine still runs here, without thousands of threads."""
    asked = check_int("num_threads", num_threads, 1, INT32_MAX)
    most = MAX_THREADS_PER_CORE * cpu_count()
    if asked > most:
        logger.info("fastfeed: num_threads=%d is more than %d per core; using %d", asked, MAX_THREADS_PER_CORE, most)
    return min(asked, most)


def _distributed_defaults() -> Tuple[int, int]:
    """(rank, world_size) of an initialised torch.distributed group, else (0, 1)."""
    if "torch" not in sys.modules:  # a process that never imported torch has no process group,
        return 0, 1  # and importing it here would cost a second and 200 MB
    try:
        import torch.distributed as dist
    except ImportError:
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _resolve_ranks(rank: Any, world_size: Any) -> Tuple[int, int]:
    default_rank, default_world = _distributed_defaults() if rank is None or world_size is None else (0, 1)
    world = default_world if world_size is None else check_int("world_size", world_size, 1)
    r = default_rank if rank is None else check_int("rank", rank, 0)
    if r >= world:
        raise ValueError(f"rank={r} is out of range for world_size={world} (ranks are 0..{world - 1})")
    return r, world


def _resolve_output(output: Any) -> str:
    if output is None:
        return "torch" if torch_available() else "numpy"
    check_choice("output", output, ("torch", "numpy"))
    if output == "torch" and not torch_available():
        raise ValueError("output='torch' needs PyTorch: pip install torch")
    return str(output)


def _resolve_check_finite(check_finite: Any) -> Union[bool, str]:
    if isinstance(check_finite, (bool, np.bool_)):
        return "raise" if check_finite else False
    if check_finite is None:
        return False
    if check_finite == "raise":
        return "raise"
    if check_finite in ("skip", "mask"):
        return str(check_finite)
    raise ValueError(f"check_finite must be False, 'raise', 'skip' or 'mask', got {check_finite!r}")


def _resolve_device(device: Any, device_cache: bool, output: str, check_finite: Union[bool, str]) -> str:
    name = str(device)
    if name == "cpu":
        if device_cache:
            raise ValueError(
                "device_cache=True needs a CUDA device (device='cuda'); the data stays in host memory with device='cpu'"
            )
        return name
    if not (name == "cuda" or name.startswith("cuda:")):
        raise ValueError(f"device must be 'cpu' or 'cuda[:n]', got {device!r}")
    why = cuda_device_ready(name)
    if why is not None:
        raise ValueError(f"device={name!r}: {why}; use device='cpu'")
    if output != "torch":
        raise ValueError(f"device={name!r} yields torch tensors: it needs output='torch', not {output!r}")
    if device_cache and check_finite == "raise":
        raise ValueError(
            "device_cache=True gathers on the GPU, where no sample is checked: use "
            "check_finite='skip' (one scan of the source when the Feeder is made) or False"
        )
    return name
