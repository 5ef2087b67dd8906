"""Known-answer metatomic models for tests (analytic, TorchScript-compatible)."""

from typing import Dict, List, Optional

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import (
    AtomisticModel,
    ModelCapabilities,
    ModelMetadata,
    ModelOutput,
    NeighborListOptions,
    System,
)


def _atom_samples(systems: List[System]) -> Labels:
    """``(system, atom)`` samples of every atom of every system."""
    device = systems[0].positions.device
    rows: List[torch.Tensor] = []
    for index, system in enumerate(systems):
        atom = torch.arange(len(system), dtype=torch.int32, device=device)
        rows.append(torch.stack([torch.full_like(atom, index), atom], dim=1))
    return Labels(["system", "atom"], torch.cat(rows))


def _energy_map(
    systems: List[System], per_atom: List[torch.Tensor], output: ModelOutput
) -> TensorMap:
    """Energies from per-atom contributions ``[n_atoms]`` of every system: per atom
    when ``output`` asks for it, summed per system otherwise."""
    device = systems[0].positions.device
    one = torch.zeros(1, 1, dtype=torch.int32, device=device)
    if output.sample_kind == "atom":
        samples = _atom_samples(systems)
        values = torch.cat(per_atom).reshape(-1, 1)
    else:
        samples = Labels(
            "system", torch.arange(len(systems), dtype=torch.int32, device=device)[:, None]
        )
        values = torch.stack([e.sum() for e in per_atom]).reshape(-1, 1)
    block = TensorBlock(
        values=values, samples=samples, components=[], properties=Labels("energy", one)
    )
    return TensorMap(Labels("_", one), [block])


def _energy_and_force_maps(
    systems: List[System],
    outputs: Dict[str, ModelOutput],
    energies: List[torch.Tensor],
    forces: List[torch.Tensor],
) -> Dict[str, TensorMap]:
    """TensorMaps of per-system energies and per-atom vectors, as metatomic wants."""
    device = systems[0].positions.device
    one = torch.zeros(1, 1, dtype=torch.int32, device=device)
    result: Dict[str, TensorMap] = {}
    if "energy" in outputs:  # one value per system: the sum of its single entry
        result["energy"] = _energy_map(systems, energies, ModelOutput(sample_kind="system"))
    if "non_conservative_force" in outputs:
        xyz = torch.arange(3, dtype=torch.int32, device=device)[:, None]
        values = torch.cat(forces)[:, :, None]
        samples = _atom_samples(systems)
        if outputs["non_conservative_force"].sample_kind == "system":  # the sums
            values = torch.stack([f.sum(0) for f in forces])[:, :, None]
            samples = Labels(
                "system", torch.arange(len(systems), dtype=torch.int32, device=device)[:, None]
            )
        block = TensorBlock(
            values=values,
            samples=samples,
            components=[Labels("xyz", xyz)],
            properties=Labels("non_conservative_force", one),
        )
        result["non_conservative_force"] = TensorMap(Labels("_", one), [block])
    return result


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
        for system in systems:
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
        return _energy_and_force_maps(systems, outputs, energies, forces)


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


class PairPotential(torch.nn.Module):
    """Shifted Lennard-Jones over a half neighbour list: exactly invariant energy,
    so conservative forces and stress are exactly equivariant."""

    def __init__(self, cutoff: float = 4.0, sigma: float = 2.0, epsilon: float = 0.2):
        super().__init__()
        self.sigma = sigma
        self.epsilon = epsilon
        self.cutoff = cutoff
        self._neighbors = NeighborListOptions(cutoff=cutoff, full_list=False, strict=True)

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self._neighbors]

    def _lj(self, r: torch.Tensor) -> torch.Tensor:
        x = (self.sigma / r) ** 6
        return 4.0 * self.epsilon * (x * x - x)

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        per_atom: List[torch.Tensor] = []
        for system in systems:
            block = system.get_neighbor_list(self._neighbors)
            vectors = block.values.reshape(-1, 3)
            r = torch.linalg.norm(vectors, dim=1)
            shift = self._lj(torch.full_like(r[:1], self.cutoff))
            pair = 0.5 * (self._lj(r) - shift)  # half of each pair to each of its atoms
            energy = torch.zeros(len(system), dtype=r.dtype, device=r.device)
            energy = energy.index_add(0, block.samples.column("first_atom").long(), pair)
            energy = energy.index_add(0, block.samples.column("second_atom").long(), pair)
            per_atom.append(energy)
        return {"energy": _energy_map(systems, per_atom, outputs["energy"])}


class EmbeddedAtoms(torch.nn.Module):
    """Many-body energy over a full neighbour list, ``E = sum_i sqrt(rho_i)`` with
    ``rho_i = sum_j exp(-r_ij) (1 + a (z . r_hat_ij)^2)``: ``a != 0`` plants an
    anisotropy, and the per-atom virials are not symmetric."""

    def __init__(self, anisotropy: float = 0.0, cutoff: float = 4.0):
        super().__init__()
        self.anisotropy = anisotropy
        self._neighbors = NeighborListOptions(cutoff=cutoff, full_list=True, strict=True)

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self._neighbors]

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        per_atom: List[torch.Tensor] = []
        for system in systems:
            block = system.get_neighbor_list(self._neighbors)
            vectors = block.values.reshape(-1, 3)
            r = torch.linalg.norm(vectors, dim=1)
            cos = vectors[:, 2] / r
            pair = torch.exp(-r) * (1.0 + self.anisotropy * cos * cos)
            first = block.samples.column("first_atom").long()
            rho = torch.zeros(len(system), dtype=r.dtype, device=r.device)
            rho = rho.index_add(0, first, pair)
            per_atom.append(torch.sqrt(rho + 1e-3))
        return {"energy": _energy_map(systems, per_atom, outputs["energy"])}


def export(module: torch.nn.Module, path, *, outputs=None, types=(1, 6, 8, 29), cutoff=10.0):
    """Save ``module`` as an exported metatomic model at ``path`` (float64)."""
    if outputs is None:
        outputs = {"energy": ModelOutput(unit="eV", sample_kind="atom")}
    capabilities = ModelCapabilities(
        outputs=outputs,
        atomic_types=list(types),
        interaction_range=cutoff,
        length_unit="Angstrom",
        supported_devices=["cpu"],
        dtype="float64",
    )
    AtomisticModel(module.eval(), ModelMetadata(name="test"), capabilities).save(str(path))
    return path


def write_copper(path, n: int = 2, *, labels: bool = True, repeat=(1, 1, 2), disorder=False):
    """Rattled fcc copper cells (8 atoms by default) written as extxyz, with EMT
    energies, forces and stress as labels. ``disorder=True`` draws the positions at
    random in the cell instead (at least 1.7 A apart), so that pair forces do not
    cancel by lattice symmetry."""
    import ase.build
    import ase.io
    import numpy as np

    from equiscope_atoms.demo import with_emt_labels

    frames = []
    for index in range(n):
        atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)
        atoms.rattle(0.1, seed=index)
        if disorder:
            generator = np.random.default_rng(index)
            positions = []
            while len(positions) < len(atoms):
                candidate = generator.random(3) @ atoms.cell.array
                trial = ase.Atoms(
                    "Cu" * (len(positions) + 1),
                    cell=atoms.cell,
                    pbc=True,
                    positions=[*positions, candidate],
                )
                if (
                    len(positions) == 0
                    or trial.get_distances(
                        len(positions), list(range(len(positions))), mic=True
                    ).min()
                    > 1.7
                ):
                    positions.append(candidate)
            atoms.positions = np.array(positions)
        frames.append(with_emt_labels(atoms) if labels else atoms)
    ase.io.write(str(path), frames, format="extxyz")
    return path


class MultipoleAnisotropy(torch.nn.Module):
    """Planted anisotropy in every lambda = 1..6 (all pairs, no neighbour list):

    energy = sum_{i<j} exp(-r_ij) + sum_i exp(-|u_i|) sum_l c_l P_l(z . u_i / |u_i|),
    with u_i the position of atom i relative to the centroid;
    non_conservative_force_i = sum_j exp(-r) r_hat_ij + b
    """

    def __init__(self, coefficients: List[float], bias: List[float]):
        super().__init__()
        self.coefficients = [float(c) for c in coefficients]
        self.register_buffer("bias", torch.tensor(bias, dtype=torch.float64))

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        energies: List[torch.Tensor] = []
        forces: List[torch.Tensor] = []
        for system in systems:
            p = system.positions
            d = p[None, :, :] - p[:, None, :]
            n = p.shape[0]
            mask = (~torch.eye(n, dtype=torch.bool, device=p.device)).to(p.dtype)
            r = torch.sqrt((d**2).sum(-1) + (1.0 - mask))
            unit = d / r[:, :, None]
            u = p - p.mean(0, keepdim=True)
            distance = torch.sqrt((u**2).sum(-1))
            x = u[:, 2] / distance
            previous = torch.ones_like(x)
            current = x
            angular = torch.zeros_like(x)
            for lam in range(1, len(self.coefficients) + 1):
                angular = angular + self.coefficients[lam - 1] * current
                following = ((2 * lam + 1) * x * current - lam * previous) / (lam + 1)
                previous = current
                current = following
            energy = 0.5 * (torch.exp(-r) * mask).sum() + (torch.exp(-distance) * angular).sum()
            energies.append(energy.reshape(1, 1))
            f = (torch.exp(-r)[:, :, None] * unit * mask[:, :, None]).sum(1)
            forces.append(f + self.bias.to(p.dtype))
        return _energy_and_force_maps(systems, outputs, energies, forces)


class SignedVolume(PairPotential):
    """Shifted Lennard-Jones pairs plus a pressure term on the SIGNED cell volume,

    ``E = sum_pairs LJ(|r_j - r_i + S cell|) + p det(cell)``,

    with the pair vectors rebuilt from the positions, the cell and the neighbour
    list's cell shifts ``S``. Exactly invariant for every right-handed description of
    the structure (``det(cell) = V``); a left-handed cell flips the pressure term (and
    the hydrostatic stress ``p``), and a neighbour list whose shifts do not match the
    cell gives wrong pair vectors."""

    def __init__(self, pressure: float = 0.05, cutoff: float = 4.0):
        super().__init__(cutoff=cutoff, sigma=2.0, epsilon=0.2)  # PairPotential's LJ
        self.pressure = pressure

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        per_atom: List[torch.Tensor] = []
        for system in systems:
            samples = system.get_neighbor_list(self._neighbors).samples
            first = samples.column("first_atom").long()
            second = samples.column("second_atom").long()
            shifts = samples.values[:, 2:5].to(system.positions.dtype)
            p = system.positions
            vectors = p[second] - p[first] + shifts @ system.cell
            r = torch.linalg.norm(vectors, dim=1)
            pair = 0.5 * (self._lj(r) - self._lj(torch.full_like(r[:1], self.cutoff)))
            energy = torch.zeros(len(system), dtype=r.dtype, device=r.device)
            energy = energy.index_add(0, first, pair).index_add(0, second, pair)
            volume = torch.linalg.det(system.cell)  # signed
            per_atom.append(energy + self.pressure * volume / len(system))
        return {"energy": _energy_map(systems, per_atom, outputs["energy"])}
