"""Known-answer metatomic models for tests (analytic, TorchScript-compatible)."""

from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import (
    AtomisticModel,
    ModelCapabilities,
    ModelMetadata,
    ModelOutput,
    System,
)


class PlantedAnisotropy(torch.nn.Module):
    """All-pairs model with a planted anisotropy along z.

    energy = sum_{i<j} exp(-r) (1 + a P_2(z . r_hat))
    non_conservative_force_i = sum_j exp(-r) r_hat_ij + b    (b: constant bias vector)
    """

    def __init__(self, anisotropy: float, bias: List[float]):
        super().__init__()
        self.anisotropy = anisotropy
        self.register_buffer("bias", torch.tensor(bias, dtype=torch.float64))

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        energies: List[torch.Tensor] = []
        forces: List[torch.Tensor] = []
        samples: List[torch.Tensor] = []
        for index, system in enumerate(systems):
            p = system.positions
            d = p[None, :, :] - p[:, None, :]
            n = p.shape[0]
            mask = ~torch.eye(n, dtype=torch.bool, device=p.device)
            r = torch.sqrt((d**2).sum(-1) + (~mask).to(p.dtype))
            unit = d / r[:, :, None]
            cos = unit[:, :, 2]
            p2 = 0.5 * (3.0 * cos**2 - 1.0)
            pair = torch.exp(-r) * (1.0 + self.anisotropy * p2) * mask.to(p.dtype)
            energies.append(0.5 * pair.sum().reshape(1, 1))
            f = (torch.exp(-r)[:, :, None] * unit * mask[:, :, None].to(p.dtype)).sum(1)
            forces.append(f + self.bias.to(p.dtype))
            atoms = torch.arange(n, dtype=torch.int32, device=p.device)
            samples.append(torch.stack([torch.full_like(atoms, index), atoms], dim=1))
        device = systems[0].positions.device
        result: Dict[str, TensorMap] = {}
        if "energy" in outputs:
            block = TensorBlock(
                values=torch.cat(energies),
                samples=Labels(
                    "system",
                    torch.arange(len(systems), dtype=torch.int32, device=device)[:, None],
                ),
                components=[],
                properties=Labels("energy", torch.zeros(1, 1, dtype=torch.int32, device=device)),
            )
            result["energy"] = TensorMap(
                Labels("_", torch.zeros(1, 1, dtype=torch.int32, device=device)),
                [block],
            )
        if "non_conservative_force" in outputs:
            block = TensorBlock(
                values=torch.cat(forces)[:, :, None],
                samples=Labels(["system", "atom"], torch.cat(samples)),
                components=[
                    Labels(
                        "xyz",
                        torch.arange(3, dtype=torch.int32, device=device)[:, None],
                    )
                ],
                properties=Labels(
                    "non_conservative_force",
                    torch.zeros(1, 1, dtype=torch.int32, device=device),
                ),
            )
            result["non_conservative_force"] = TensorMap(
                Labels("_", torch.zeros(1, 1, dtype=torch.int32, device=device)),
                [block],
            )
        return result


def atomistic(module: torch.nn.Module) -> AtomisticModel:
    capabilities = ModelCapabilities(
        outputs={
            "energy": ModelOutput(unit="eV", sample_kind="system"),
            "non_conservative_force": ModelOutput(unit="eV/Angstrom", sample_kind="atom"),
        },
        atomic_types=[1, 6, 8],
        interaction_range=10.0,
        length_unit="Angstrom",
        supported_devices=["cpu"],
        dtype="float64",
    )
    return AtomisticModel(module.eval(), ModelMetadata(name="planted"), capabilities)


def unit_points(n: int, generator: torch.Generator) -> torch.Tensor:
    """Random points on the unit sphere, float64 ``[n, 3]``."""
    points = torch.randn(n, 3, dtype=torch.float64, generator=generator)
    return points / points.norm(dim=1, keepdim=True)


def orbit(points: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """``g_i p`` for every grid element and point: ``[n_grid, n_points, 3]``."""
    return torch.einsum("nab,pb->npa", rotations, points)


def molecule(generator: torch.Generator, n: int = 5) -> System:
    positions = 1.5 * torch.randn(n, 3, dtype=torch.float64, generator=generator)
    return System(
        types=torch.tensor([6, 1, 1, 8, 1][:n], dtype=torch.int32),
        positions=positions,
        cell=torch.zeros(3, 3, dtype=torch.float64),
        pbc=torch.zeros(3, dtype=torch.bool),
    )


def rotated_system(system: System, matrix: torch.Tensor) -> System:
    return System(
        types=system.types,
        positions=system.positions @ matrix.T,
        cell=system.cell @ matrix.T,
        pbc=system.pbc,
    )
