"""Known-answer ASE calculators: a base calculator plus planted terms with analytic
forces, stress, per-atom energies and per-atom stresses (float64, numpy).

- ``p2``: a P_2 anisotropy along the unit vector ``axis``, over neighbour pairs,

      E_2 = (a / 2) sum_{i != j, r_ij < rc} phi(r_ij) P_2(r_hat_ij . u),
      phi(r) = (1 - (r / rc)^2)^2      (smooth at the cutoff: NVE-safe),

  a degree-2, parity-even function of the orientation: the octahedral and
  icosahedral groups average it out exactly, so the averaged calculator is the base.
- ``chiral``: a rotation-invariant, parity-odd (pseudoscalar) term on atoms 0-3,

      E_c = c det[r_1 - r_0, r_2 - r_0, r_3 - r_0],

  unchanged by rotations, sign-flipped by improper elements (sector (0, -1)); its
  strain derivative is ``E_c * 1``, so its stress is ``E_c / V`` on the diagonal.

Stress follows ASE: ``sigma = (1/V) dE/d eps`` for ``x -> x (1 + eps)``; per-atom
stresses sum to it and per-atom energies to the energy.
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.stress import full_3x3_to_voigt_6_stress
from vesin import ase_neighbor_list as neighbor_list

__all__ = ["PlantedCalculator"]

_PROPERTIES = ["energy", "free_energy", "energies", "forces", "stress", "stresses"]


class PlantedCalculator(Calculator):
    """``base`` (EMT by default) plus a planted P_2 anisotropy (``p2``, along ``axis``,
    cutoff ``cutoff``) and a planted chiral term (``chiral``)."""

    def __init__(self, base=None, *, p2=0.0, chiral=0.0, axis=(0.0, 0.0, 1.0), cutoff=4.0):
        super().__init__()
        self.base = EMT() if base is None else base
        self.p2 = float(p2)
        self.chiral = float(chiral)
        axis = np.asarray(axis, dtype=np.float64)
        self.axis = axis / np.linalg.norm(axis)
        self.cutoff = float(cutoff)
        provided = set(self.base.implemented_properties)
        self.implemented_properties = [p for p in _PROPERTIES if p in provided]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        n = len(atoms)
        lattice = atoms.cell.rank == 3
        wanted = [p for p in ("energy", "energies", "forces") if p in self.implemented_properties]
        if lattice:
            wanted.append("stress")
            if "stresses" in properties:
                wanted.append("stresses")
        base = {name: np.array(self.base.get_property(name, atoms)) for name in wanted}
        energies = np.zeros(n)
        forces = np.zeros((n, 3))
        virials = np.zeros((n, 3, 3))  # per atom: sum of D (x) dE/dD
        self._add_p2(atoms, energies, forces, virials)
        self._add_chiral(atoms, energies, forces, virials)
        self.results = {
            "energy": float(base["energy"]) + energies.sum(),
            "free_energy": float(base["energy"]) + energies.sum(),
            "forces": base["forces"] + forces,
        }
        if "energies" in base:
            self.results["energies"] = base["energies"] + energies
        if lattice and "stress" in base:
            volume = atoms.get_volume()
            stress = full_3x3_to_voigt_6_stress(virials.sum(0) / volume)
            self.results["stress"] = base["stress"] + stress
            if "stresses" in base:
                per_atom = full_3x3_to_voigt_6_stress(virials / volume)
                self.results["stresses"] = base["stresses"] + per_atom

    def _add_p2(self, atoms, energies, forces, virials) -> None:
        if self.p2 == 0.0:
            return
        i, j, d = neighbor_list("ijD", atoms, self.cutoff)
        r = np.linalg.norm(d, axis=1)
        unit = d / r[:, None]
        cos = unit @ self.axis
        p2 = 0.5 * (3 * cos**2 - 1)
        s = 1 - (r / self.cutoff) ** 2
        phi = s**2
        dphi = -4 * r / self.cutoff**2 * s
        half = 0.5 * self.p2  # every pair is listed in both directions
        np.add.at(energies, i, half * phi * p2)
        # g = dE/dD for each listed D = r_j - r_i (+ shift)
        g = half * (
            (dphi * p2)[:, None] * unit
            + (phi * 3 * cos / r)[:, None] * (self.axis[None, :] - cos[:, None] * unit)
        )
        np.add.at(forces, i, g)
        np.add.at(forces, j, -g)
        np.add.at(virials, i, np.einsum("pa,pb->pab", d, g))

    def _add_chiral(self, atoms, energies, forces, virials) -> None:
        if self.chiral == 0.0:
            return
        p = atoms.positions
        d1, d2, d3 = p[1] - p[0], p[2] - p[0], p[3] - p[0]
        energy = self.chiral * np.linalg.det(np.stack([d1, d2, d3]))
        grads = self.chiral * np.stack([np.cross(d2, d3), np.cross(d3, d1), np.cross(d1, d2)])
        forces[1:4] -= grads
        forces[0] += grads.sum(0)
        energies[:4] += energy / 4
        virials[:4] += energy / 4 * np.eye(3)  # dE/d eps = E 1 (det of D (1 + eps))
