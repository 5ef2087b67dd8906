"""Audits sharded over processes with ``torch.distributed`` (launched by ``torchrun``).

An audit is a sum over structures: every structure's orbit is evaluated on its own,
and the report adds up per-structure quantities (squared errors, sector norms).
Process ``r`` of ``n`` therefore takes the ``r``-th contiguous block of the
structures (blocks of about equal cost, e.g. atom count), and the blocks' partial
sums are gathered and added in block order, so the merged report is the one a single
process writes (same numbers, same per-structure order).

``torchrun --nproc-per-node N -m equiscope.cli audit ...`` sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; :func:`from_environment` joins that process group. Only
small pickled results travel, so the group is ``gloo`` on CPUs and GPUs alike; with
CUDA every process takes the device of its local rank. Ranks that finish their block
wait for the others up to :data:`TIMEOUT`.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime
import itertools
import os
from collections.abc import Sequence
from typing import TypeVar

import torch

__all__ = ["TIMEOUT", "Shards", "close", "from_environment"]

T = TypeVar("T")

TIMEOUT = datetime.timedelta(hours=24)
"""How long a rank waits for the others (gloo's default, 30 min, is shorter than a
long audit's imbalance between blocks)."""


@dataclasses.dataclass(frozen=True)
class Shards:
    """This process's place among ``size`` processes auditing together."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """Whether more than one process takes part."""
        return self.size > 1

    @property
    def leader(self) -> bool:
        """The process that shows progress and writes files."""
        return self.rank == 0

    def block(self, items: list[T], costs: Sequence[float] | None = None) -> list[T]:
        """This rank's contiguous block, in rank order. Block ``r`` starts at the first
        item whose preceding ``costs`` (default: 1 each) reach ``r / size`` of the total,
        so every block's cost is within one item's cost of the mean."""
        if costs is None:
            costs = [1.0] * len(items)
        if len(costs) != len(items):
            raise ValueError(f"{len(costs)} costs for {len(items)} items")
        before = [0.0, *itertools.accumulate(costs)]  # before[i]: cost of items[:i]
        total = before[-1]

        def boundary(rank: int) -> int:
            if rank >= self.size:
                return len(items)
            return bisect.bisect_left(before, total * rank / self.size)

        return items[boundary(self.rank) : boundary(self.rank + 1)]

    def all_gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        gathered: list = [None] * self.size
        torch.distributed.all_gather_object(gathered, value)
        return gathered

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (so all ranks take the same decisions)."""
        if not self.distributed:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    @classmethod
    def current(cls) -> Shards:
        """The initialised default process group, or one process."""
        distributed = torch.distributed
        if not (distributed.is_available() and distributed.is_initialized()):
            return cls()
        local = int(os.environ.get("LOCAL_RANK", distributed.get_rank()))
        return cls(distributed.get_rank(), distributed.get_world_size(), local)


def from_environment(device: str = "cpu") -> tuple[Shards, str]:
    """Join the process group ``torchrun`` describes in the environment.

    Returns the shards and the device this process should use: ``cuda`` becomes
    ``cuda:<LOCAL_RANK>``. Without ``WORLD_SIZE > 1`` nothing is initialised. Raises a
    one-line ``ValueError`` naming the device when this process has no GPU to take.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return Shards(), device
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device '{device}' cannot be used: CUDA is not available")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"device '{device}' cannot be used: local rank {local_rank} has no GPU "
                f"({torch.cuda.device_count()} visible; one process per GPU)"
            )
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="gloo", timeout=TIMEOUT)
    return Shards(rank, size, local_rank), device


def close(shards: Shards) -> None:
    """Leave the process group joined by :func:`from_environment`."""
    if shards.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
