"""Known-answer ASE calculators for tests (analytic energies, autograd forces and
stress in float64; no metatensor or metatomic)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes


class TorchEnergyCalculator(Calculator):
    """Energy ``E(positions, cell)`` written in torch; forces ``-dE/dr`` and, for a 3D
    periodic cell, the stress ``(1/V) dE/d eps`` (Voigt order) by autograd through a
    strain ``eps``. ``signed_volume=True`` divides by ``det(cell)`` instead of ``V``,
    as a model that uses the signed volume would."""

    implemented_properties: ClassVar[list[str]] = ["energy", "forces", "stress"]

    def __init__(self, *, signed_volume: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.signed_volume = signed_volume

    def energy(self, positions: torch.Tensor, cell: torch.Tensor, atoms) -> torch.Tensor:
        raise NotImplementedError

    def extra(self, positions: torch.Tensor, atoms) -> dict:
        """Further results ``{name: array}`` (none by default)."""
        return {}

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        positions = torch.tensor(atoms.positions, dtype=torch.float64, requires_grad=True)
        cell = torch.tensor(atoms.cell.array, dtype=torch.float64)
        strain = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
        deformation = torch.eye(3, dtype=torch.float64) + strain
        energy = self.energy(positions @ deformation, cell @ deformation, atoms)
        forces, virial = torch.autograd.grad(energy, [positions, strain])
        self.results["energy"] = self.results["free_energy"] = float(energy.detach())
        self.results["forces"] = -forces.numpy()
        if atoms.cell.rank == 3 and all(atoms.pbc):
            volume = float(torch.det(cell)) if self.signed_volume else atoms.get_volume()
            s = virial.numpy() / volume
            self.results["stress"] = np.array(
                [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]]
            )
        with torch.no_grad():
            for name, value in self.extra(positions.detach(), atoms).items():
                self.results[name] = np.asarray(value)


def _pairs(atoms, cutoff: float):
    """``(i, j, shifts)`` of every pair within ``cutoff`` (full list, periodic images)."""
    from ase.neighborlist import neighbor_list

    i, j, shifts = neighbor_list("ijS", atoms, cutoff)
    return (
        torch.from_numpy(i).long(),
        torch.from_numpy(j).long(),
        torch.from_numpy(shifts).to(torch.float64),
    )


class PairCalculator(TorchEnergyCalculator):
    """Shifted Lennard-Jones over periodic images, with an optional planted
    anisotropy ``(1 + a P_2(z . r_hat))`` on every pair:
    ``E = 1/2 sum_(i != j) [LJ(r) - LJ(r_c)] (1 + a P_2)``."""

    def __init__(self, *, anisotropy: float = 0.0, cutoff: float = 4.0, **kwargs):
        super().__init__(**kwargs)
        self.anisotropy = anisotropy
        self.cutoff = cutoff

    @staticmethod
    def _lj(r):
        x = (2.0 / r) ** 6
        return 0.8 * (x * x - x)

    def energy(self, positions, cell, atoms):
        i, j, shifts = _pairs(atoms, self.cutoff)
        vectors = positions[j] - positions[i] + shifts @ cell
        r = vectors.norm(dim=1)
        cos = vectors[:, 2] / r
        p2 = 0.5 * (3 * cos**2 - 1)
        pair = self._lj(r) - self._lj(torch.tensor(self.cutoff, dtype=torch.float64))
        return 0.5 * (pair * (1 + self.anisotropy * p2)).sum()


class PlantedAnisotropy(TorchEnergyCalculator):
    """All pairs, no cell (as ``tests/_models.PlantedAnisotropy``):
    ``E = sum_(i<j) exp(-r) (1 + a P_2(z . r_hat))``. Declared extras: ``dipole``
    ``sum_i q_i r_i + b`` (per structure, ``b`` a constant bias: ``A^2 = |b|^2``),
    ``charges`` ``q_i = 0.1 Z_i`` (per atom, invariant) and ``axial``
    ``sum_(i<j) r_i x r_j`` (a pseudovector, exactly equivariant)."""

    implemented_properties: ClassVar[list[str]] = [
        "energy",
        "forces",
        "stress",
        "dipole",
        "charges",
        "axial",
    ]

    def __init__(self, anisotropy: float, bias=(0.0, 0.0, 0.0), **kwargs):
        super().__init__(**kwargs)
        self.anisotropy = anisotropy
        self.bias = np.asarray(bias, dtype=np.float64)

    def energy(self, positions, cell, atoms):
        d = positions[None, :, :] - positions[:, None, :]
        n = positions.shape[0]
        upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
        d = d[upper]
        r = d.norm(dim=1)
        p2 = 0.5 * (3 * (d[:, 2] / r) ** 2 - 1)
        return (torch.exp(-r) * (1 + self.anisotropy * p2)).sum()

    def extra(self, positions, atoms):
        charges = 0.1 * atoms.numbers.astype(np.float64)
        p = positions.numpy()
        dipole = charges @ p + self.bias
        axial = sum(np.cross(p[i], p[j]) for i in range(len(p)) for j in range(i + 1, len(p)))
        return {"dipole": dipole, "charges": charges, "axial": axial}


class Chiral(TorchEnergyCalculator):
    """Pairs ``sum_(i<j) exp(-r)`` plus a planted chiral term ``c det[r_1 - r_0,
    r_2 - r_0, r_3 - r_0]``: rotation invariant, odd under inversion (a pseudoscalar)."""

    def __init__(self, chirality: float, **kwargs):
        super().__init__(**kwargs)
        self.chirality = chirality

    def energy(self, positions, cell, atoms):
        d = positions[None, :, :] - positions[:, None, :]
        n = positions.shape[0]
        upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
        pairs = torch.exp(-d[upper].norm(dim=1)).sum()
        edges = positions[1:4] - positions[0]
        return pairs + self.chirality * torch.linalg.det(edges)


class Failing(Calculator):
    """Raises on the ``fail_at``-th call (0-based) to test error messages."""

    implemented_properties: ClassVar[list[str]] = ["energy", "forces"]

    def __init__(self, fail_at: int, **kwargs):
        super().__init__(**kwargs)
        self.fail_at = fail_at
        self.calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.calls == self.fail_at:
            raise RuntimeError("planted failure\nsecond line")
        self.calls += 1
        self.results["energy"] = 0.0
        self.results["forces"] = np.zeros((len(self.atoms), 3))


def cubic(seed: int = 1):
    """A rattled conventional fcc copper cell doubled along z (8 atoms)."""
    import ase.build

    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((1, 1, 2))
    atoms.rattle(0.1, seed=seed)
    return atoms


def triclinic():
    """Copper atoms at random positions of a triclinic cell, none closer than 1.8 A."""
    import ase

    cell = np.array([[4.1, 0.0, 0.0], [1.3, 3.9, 0.0], [-0.7, 0.9, 4.4]])
    fractions = np.random.default_rng(3).random((6, 3))
    atoms = ase.Atoms("Cu6", scaled_positions=fractions, cell=cell, pbc=True)
    keep = [0]
    for index in range(1, len(atoms)):
        if atoms.get_distances(index, keep, mic=True).min() > 1.8:
            keep.append(index)
    return atoms[keep]
