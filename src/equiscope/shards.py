"""Audits sharded over processes with ``torch.distributed`` (launched by ``torchrun``).

An audit is a sum over structures: every structure's orbit is evaluated on its own,
and the report adds up per-structure quantities (squared errors, sector norms).
Process ``r`` of ``n`` therefore takes the ``r``-th contiguous block of the
structures, and the blocks' partial sums are gathered and added in block order,
so the merged report is the one a single process writes (same numbers, same
per-structure order).

``torchrun --nproc-per-node N -m equiscope.cli audit ...`` sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; :func:`from_environment` joins that process group
(``gloo`` on CPUs, ``nccl`` on CUDA devices, one device per local rank).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, TypeVar

import torch

__all__ = ["Shards", "close", "from_environment"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Shards:
    """This process's place among ``size`` processes auditing together."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def leader(self) -> bool:
        """The process that shows progress and writes files."""
        return self.rank == 0

    def block(self, items: list[T]) -> list[T]:
        """This rank's contiguous block: sizes differ by at most one, in rank order."""
        start = len(items) * self.rank // self.size
        stop = len(items) * (self.rank + 1) // self.size
        return items[start:stop]

    def all_gather(self, value: Any) -> list:
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
    ``cuda:<LOCAL_RANK>``. Without ``WORLD_SIZE > 1`` nothing is initialised.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return Shards(), device
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = "gloo"
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(device)
        backend = "nccl"
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend=backend)
    return Shards(rank, size, local_rank), device


def close(shards: Shards) -> None:
    """Leave the process group joined by :func:`from_environment`."""
    if shards.distributed and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
