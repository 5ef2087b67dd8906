"""Read structures to audit with ASE, check them, and keep their reference labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

__all__ = ["DataError", "Structure", "read_structures"]


class DataError(ValueError):
    """The data file is missing, unreadable, empty or holds invalid structures."""


@dataclasses.dataclass
class Structure:
    """One structure, as a metatomic ``System``, with optional reference labels
    (energy in eV, forces in eV/A, stress in eV/A^3, ASE's sign convention) and
    ``labels`` of other outputs by name (float64, metatensor's layout) and the keys
    they were read from."""

    system: object
    index: int
    energy: float | None = None
    forces: torch.Tensor | None = None
    stress: torch.Tensor | None = None
    labels: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    label_keys: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def n_atoms(self) -> int:
        return len(self.system)

    @property
    def periodic(self) -> bool:
        return bool(self.system.pbc.all()) and abs(float(torch.det(self.system.cell))) > 0


def _labels(atoms):
    results = dict(getattr(atoms.calc, "results", {}) or {})
    energy = results.get("energy", atoms.info.get("energy"))
    forces = results.get("forces", atoms.arrays.get("forces"))
    stress = results.get("stress", atoms.info.get("stress"))
    if stress is not None:
        stress = np.asarray(stress, dtype=np.float64)
        if stress.shape == (6,):
            xx, yy, zz, yz, xz, xy = stress
            stress = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        stress = torch.tensor(stress.reshape(3, 3))
    if forces is not None:
        forces = torch.tensor(np.asarray(forces, dtype=np.float64))
    return (None if energy is None else float(energy)), forces, stress


def _label(atoms, key: str, where: str, output: str) -> torch.Tensor:
    """The values stored under ``key`` in ``info``, ``arrays`` or the calculator's
    results (ASE's extxyz reader moves keys such as ``dipole`` there)."""
    results = dict(getattr(atoms.calc, "results", {}) or {})
    for source in (atoms.info, atoms.arrays, results):
        if key in source:
            try:
                values = torch.tensor(np.asarray(source[key], dtype=np.float64))
            except (TypeError, ValueError):
                raise DataError(f"{where}: label '{key}' (for {output}) is not numeric") from None
            if not torch.isfinite(values).all():
                raise DataError(f"{where}: label '{key}' (for {output}) has NaN or infinite values")
            return values
    raise DataError(f"{where} has no label '{key}' (for {output})")


def _unreadable(path: Path, error: Exception) -> str:
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"data file {path} could not be read by ASE ({type(error).__name__}: {message[:160]})"


def read_structures(
    path: str | Path,
    *,
    atomic_types: list[int] | None = None,
    limit: int | None = None,
    sample: str = "first",
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    labels: dict[str, str] | None = None,
) -> list[Structure]:
    """Read the frames of ``path`` (streamed with ``ase.io.iread``): all, or ``limit``
    of them, the first (nothing after them is read) or, with ``sample="random"``,
    drawn by seeded reservoir sampling over the whole file (at most ``limit`` frames
    held in memory); structures keep their frame index. Raise :class:`DataError` naming
    the file and frame on empty data, NaN positions or unsupported atom types.

    ``labels`` maps output names to the keys of their reference values in each frame
    (``{"mtt::dipole": "xtb_dipole"}``), in metatensor's layout ``[rows, *components,
    properties]`` (Cartesian ``x, y, z``; spherical ``o3_mu = -lambda..lambda``);
    energy, forces and stress are found without."""
    import ase.io
    from metatomic.torch import systems_to_torch

    from equiscope.sampling import SAMPLE_MODES, choose

    from .models import type_names

    path = Path(path)
    if path.is_dir():
        raise DataError(f"data {path} is a directory; give a structure file (e.g. extxyz)")
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} holds no structures (it is empty)")
    if sample not in SAMPLE_MODES:
        raise DataError(f"unknown sampling '{sample}'; expected one of {', '.join(SAMPLE_MODES)}")
    if limit is not None and limit < 1:
        raise DataError(f"structure limit must be at least 1, got {limit}")
    try:
        frames = list(choose(ase.io.iread(str(path), index=":"), limit, how=sample, seed=seed))
    except Exception as error:
        raise DataError(_unreadable(path, error)) from None
    if len(frames) == 0:
        raise DataError(f"data file {path} holds no structures")
    structures = []
    for index, atoms in frames:
        where = f"{path} frame {index}"
        if len(atoms) == 0:
            raise DataError(f"{where} has no atoms")
        if not np.isfinite(atoms.positions).all():
            raise DataError(f"{where} has NaN or infinite positions")
        if not np.isfinite(atoms.cell.array).all():
            raise DataError(f"{where} has a NaN or infinite cell")
        if atomic_types is not None:
            unknown = sorted(set(atoms.numbers.tolist()) - set(atomic_types))
            if unknown:
                raise DataError(
                    f"{where} has atomic types {type_names(unknown)} that the model does not "
                    f"know (it knows {type_names(sorted(atomic_types))})"
                )
        energy, forces, stress = _labels(atoms)
        extra = {out: _label(atoms, key, where, out) for out, key in (labels or {}).items()}
        system = systems_to_torch(atoms, dtype=dtype)
        structures.append(
            Structure(system, index, energy, forces, stress, extra, dict(labels or {}))
        )
    return structures
