"""A small metatrain PET for demos, tests and benchmarks (built here, no download)."""

from __future__ import annotations

import torch

__all__ = ["tiny_pet"]


def tiny_pet(
    atomic_types: list[int],
    *,
    cutoff: float = 4.5,
    width: int = 32,
    layers: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> torch.nn.Module:
    """An untrained PET (metatrain's defaults, shrunk to ``width`` channels) that
    predicts an energy; seeded, in eval mode."""
    from metatrain.pet import PET
    from metatrain.utils.architectures import get_default_hypers
    from metatrain.utils.data import DatasetInfo
    from metatrain.utils.data.target_info import get_energy_target_info

    hypers = get_default_hypers("pet")["model"]
    hypers.update(
        cutoff=cutoff,
        d_pet=width,
        d_head=width,
        d_node=2 * width,
        d_feedforward=2 * width,
        num_heads=4,
        num_gnn_layers=layers,
    )
    info = DatasetInfo(
        length_unit="Angstrom",
        atomic_types=sorted(atomic_types),
        targets={"energy": get_energy_target_info("energy", {"unit": "eV"})},
    )
    torch.manual_seed(seed)
    return PET(hypers, info).to(dtype).eval()
