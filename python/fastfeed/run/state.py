"""The resumable state of a Feeder: its format, and the fingerprint that ties it to a
configuration and to the data."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .._core import fingerprint
from ..arguments import check_int
from ..io.sources import SeriesSet

STATE_VERSION = 4  # 2: whole-source digests, bucketed batches shuffled without shuffle=True;
# 3: disjoint rank shares, virtual epochs of whole sequences in full batches; 4: with drop_last too,
# those virtual epochs stream every sequence or row of the share
# Sources up to this size are hashed whole for the state's data digest (see data_digest).
_WHOLE_DIGEST_BYTES = 256 << 20


def data_digest(series: SeriesSet, targets: Optional[SeriesSet], *beside: SeriesSet) -> str:
    """A hash of the data's shape and values. Sources up to _WHOLE_DIGEST_BYTES are hashed
    whole, so any changed value is caught (tens of milliseconds at the limit, once per Feeder);
    larger ones by a few rows at the ends, so that a state of a many-GiB file costs a few pages
    read: that catches a different file, a changed length or different values at the ends.
    `beside`: other data the samples read (covariates, known and static fields)."""
    h = hashlib.sha256()
    h.update(json.dumps([series.dtype, list(series.feat), series.count]).encode())
    h.update(np.asarray(series.lengths, dtype=np.int64).tobytes())
    for s in (series, targets, *beside):
        if s is not None:
            h.update(str(fingerprint(list(s.items), 8, _WHOLE_DIGEST_BYTES)).encode())
    return h.hexdigest()[:32]


def normalization_digest(norms: Tuple[Tuple[list, list], ...]) -> Optional[str]:
    """A short hash of the (mean, std) values applied to inputs and targets, or None when
    nothing is normalised: the values themselves may be thousands of floats."""
    if not any(mean for mean, _ in norms):
        return None
    h = hashlib.sha256()
    for mean, std in norms:
        h.update(np.asarray(mean, np.float64).tobytes() + b"|" + np.asarray(std, np.float64).tobytes() + b";")
    return h.hexdigest()[:16]


def make_state(epoch: int, batch: int, fingerprint: Dict[str, Any]) -> Dict[str, Any]:
    """A small dict of plain values: fits torch.save and JSON."""
    return {"fastfeed_state": STATE_VERSION, "epoch": epoch, "batch": batch, "fingerprint": dict(fingerprint)}


# What may differ between the Feeder that saved a state and the one that loads it. The rank:
# all ranks save after the same number of batches, so any rank's state serves any rank. The
# world size and the batch size: an elastic resume (where the sample mode can take over
# another configuration's stream).
RANK_KEYS = ("rank",)
# (stream_shares marks virtual epochs on several ranks, whose passes every rank streams through
# in equal shares: it comes and goes with world_size.)
ELASTIC_KEYS = ("world_size", "batch_size", "stream_shares")


def read_state(
    state: Any, fingerprint: Dict[str, Any], batches_per_epoch: int, elastic: bool = False
) -> Tuple[int, int, bool]:
    """(epoch, batch, rescaled): where a state says the stream goes on, after checking it
    belongs to a Feeder with this fingerprint; `rescaled` when it was saved with another
    world_size or batch_size (accepted only where `elastic`; (epoch, batch) then count the
    saving Feeder's batches). Raises ValueError naming every difference."""
    if not isinstance(state, dict) or "fastfeed_state" not in state:
        raise ValueError(
            f"not a fastfeed Feeder state (expected the dict that Feeder.state_dict() returns, version {STATE_VERSION})"
        )
    if state["fastfeed_state"] != STATE_VERSION:
        raise ValueError(
            f"this Feeder state has version {state['fastfeed_state']!r}, from another fastfeed "
            f"release; this one reads version {STATE_VERSION} only (the order of batches may differ)"
        )
    try:
        epoch, batch, theirs = int(state["epoch"]), int(state["batch"]), dict(state["fingerprint"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"malformed fastfeed state: {e}") from None
    if isinstance(theirs.get("seed"), int):
        # Earlier releases took any integer seed and shuffled by it modulo 2**64; seeds are now
        # given in [0, 2**64), so a state saved with seed=-1 resumes a Feeder with seed=2**64 - 1.
        theirs["seed"] %= 2**64
    differ = [k for k in sorted(set(fingerprint) | set(theirs)) if fingerprint.get(k) != theirs.get(k)]
    rescaled = any(k in ELASTIC_KEYS for k in differ)
    other = [k for k in differ if k not in RANK_KEYS + ELASTIC_KEYS]
    differences = [f"{k}: saved {theirs.get(k)!r}, this feeder {fingerprint.get(k)!r}" for k in differ if other]
    if other:
        why = (
            " (batch_tokens cuts each pass into its batches, which the ranks share by position: another "
            "budget cuts other batches, so the saved point is no point of the new stream)"
            if "batch_tokens" in other
            and theirs.get("batch_tokens") is not None
            and fingerprint.get("batch_tokens") is not None
            else ""
        )
        raise ValueError(
            "this state comes from a Feeder with a different configuration or data: " + "; ".join(differences) + why
        )
    if rescaled and not elastic:
        raise ValueError(
            "this state comes from a Feeder with another "
            + " and ".join(
                f"{k} (saved {theirs.get(k)!r}, this feeder {fingerprint.get(k)!r})"
                for k in differ
                if k in ELASTIC_KEYS
            )
            + "; the state holds no stream position to take over (it was saved by an earlier release): "
            "resume it with the world_size and batch_size it was saved with"
        )
    if rescaled:
        if epoch < 0 or batch < 0:
            raise ValueError(f"state position epoch={epoch}, batch={batch} is out of range")
        return epoch, batch, True
    if epoch < 0 or not 0 <= batch <= batches_per_epoch:
        raise ValueError(
            f"state position epoch={epoch}, batch={batch} is out of range (an epoch has {batches_per_epoch} batches)"
        )
    # Every batch of the epoch delivered: what comes next is the next epoch's first.
    return (epoch, batch, False) if batch < batches_per_epoch else (epoch + 1, 0, False)


def pass_reads(value: Any) -> List[Tuple[int, int, int]]:
    """A state's reads of bucketed batches: [world_size, batch_size, batches each rank read] per
    configuration that read part of the resumed pass, in turn. Raises ValueError naming the entry."""
    reads = []
    for i, r in enumerate(value):
        if len(r) != 3:
            raise ValueError(f"reads[{i}] must be [world_size, batch_size, batches], got {r!r}")
        reads.append(
            (
                check_int(f"reads[{i}] world_size", r[0], 1),
                check_int(f"reads[{i}] batch_size", r[1], 1),
                check_int(f"reads[{i}] batches", r[2], 1),
            )
        )
    return reads
