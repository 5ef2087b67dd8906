"""Evaluate a metatomic model on every transformed copy of a structure, batched."""

from __future__ import annotations

import dataclasses

import torch
from metatomic.torch import ModelOutput, System

from equiscope import Grid

__all__ = ["OrbitResponses", "orbit_responses", "transformed_system"]


def transformed_system(system: System, matrix: torch.Tensor) -> System:
    """``g x``: positions (row vectors) and cell rows mapped by the 3x3 ``matrix``."""
    matrix = matrix.to(dtype=system.positions.dtype, device=system.positions.device)
    return System(
        types=system.types,
        positions=system.positions @ matrix.T,
        cell=system.cell @ matrix.T,
        pbc=system.pbc,
    )


@dataclasses.dataclass
class OrbitResponses:
    """Responses of one structure on a grid, float64, in the direct frame.

    ``energy`` ``[n_grid]``, ``forces`` ``[n_grid, atoms, 3]`` (conservative, from
    autograd), and ``features`` ``{path: [n_grid, samples, channels]}``.
    """

    energy: torch.Tensor
    forces: torch.Tensor | None
    features: dict[str, torch.Tensor]


def orbit_responses(
    model: torch.nn.Module,
    system: System,
    grid: Grid,
    *,
    forces: bool = True,
    features: tuple[str, ...] = (),
    batch_size: int = 32,
    neighbor_lists=None,
) -> OrbitResponses:
    """Evaluate ``model`` (a metatomic model module) on ``{g_i x}``.

    ``batch_size`` transformed copies go through the model in one call; neighbour
    lists are rebuilt for every copy with ``neighbor_lists(system)`` (default:
    metatrain's ``get_system_with_neighbor_lists``).
    """
    if neighbor_lists is None:
        from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

        requests = model.requested_neighbor_lists()

        def neighbor_lists(s):
            return get_system_with_neighbor_lists(s, requests)

    outputs = {"energy": ModelOutput(sample_kind="system")}
    for path in features:
        outputs[f"mtt::feature::{path}"] = ModelOutput(sample_kind="atom")
    dtype = system.positions.dtype
    energies, all_forces = [], []
    captured: dict[str, list[torch.Tensor]] = {path: [] for path in features}
    for start in range(0, grid.size, batch_size):
        matrices = grid.rotations[start : start + batch_size].to(dtype)
        copies = []
        for matrix in matrices:
            copy = transformed_system(system, matrix)
            if forces:
                copy.positions.requires_grad_(True)
            copies.append(neighbor_lists(copy))
        with torch.set_grad_enabled(forces):
            result = model(copies, outputs, None)
            energy = result["energy"].block().values.reshape(-1)
            if forces:
                grads = torch.autograd.grad(energy.sum(), [c.positions for c in copies])
                all_forces.append(-torch.stack(grads).detach())
        energies.append(energy.detach())
        for path in features:
            values = result[f"mtt::feature::{path}"].block().values.detach()
            captured[path].append(values.reshape(len(copies), -1, values.shape[-1]))
    return OrbitResponses(
        energy=torch.cat(energies).to(torch.float64),
        forces=torch.cat(all_forces).to(torch.float64) if forces else None,
        features={p: torch.cat(v).to(torch.float64) for p, v in captured.items()},
    )
