"""Small molecules labelled with GFN2-xTB tight binding (tblite), generated here.

The molecules are those of ASE's G2 set made of H, C, N and O with 3 to 12 atoms,
taken in turn and rattled. Labels, stored as a single-point result (extxyz keeps them):
``energy`` (eV), ``forces`` (eV/A) and ``dipole`` (e A, a polar vector: the
lambda = 1, sigma = +1 target of a molecule; origin-free for neutral molecules). The
dipole is also in ``info["xtb_dipole"]``: metatrain reads per-structure targets from
``info`` only, and ASE's extxyz reader moves a ``dipole`` key into the calculator.
tblite is an optional dependency (``pip install "equiscope[xtb]"``); GFN2-xTB takes a
few milliseconds per molecule on one core, nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ase import Atoms

__all__ = ["G2_ELEMENTS", "g2_molecules", "generate_xtb_molecules", "with_xtb_labels"]

G2_ELEMENTS = ("H", "C", "N", "O")


def g2_molecules(
    elements: Sequence[str] = G2_ELEMENTS, *, min_atoms: int = 3, max_atoms: int = 12
) -> list[Atoms]:
    """The molecules of ASE's G2 collection made of ``elements`` only, with
    ``min_atoms`` to ``max_atoms`` atoms, in the collection's order."""
    from ase.collections import g2

    return [
        atoms
        for atoms in g2
        if set(atoms.get_chemical_symbols()) <= set(elements)
        and min_atoms <= len(atoms) <= max_atoms
    ]


def _calculator(method: str):
    try:
        from tblite.ase import TBLite
    except ImportError:
        raise ImportError(
            "GFN2-xTB labels need tblite: pip install 'equiscope[xtb]' (or tblite==0.8.0)"
        ) from None
    return TBLite(method=method, verbosity=0)


def with_xtb_labels(atoms, *, method: str = "GFN2-xTB"):
    """``atoms`` with the tight-binding energy, forces and dipole stored as a single-point
    result (and the dipole as ``info["xtb_dipole"]``). Raises ``RuntimeError`` naming the
    molecule if the SCF does not converge."""
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = _calculator(method)
    try:
        results = {
            "energy": atoms.get_potential_energy(),
            "forces": atoms.get_forces(),
            "dipole": atoms.get_dipole_moment(),
        }
    except Exception as error:  # tblite raises its own error types
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        formula = atoms.get_chemical_formula()
        raise RuntimeError(f"{method} failed on {formula}: {first[:160]}") from None
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info["xtb_dipole"] = results["dipole"].copy()
    return atoms


def generate_xtb_molecules(
    path: str | Path,
    n: int,
    *,
    seed: int = 0,
    rattle: float = 0.1,
    elements: Sequence[str] = G2_ELEMENTS,
    max_atoms: int = 12,
    method: str = "GFN2-xTB",
    progress: bool = False,
) -> Path:
    """Write ``n`` rattled G2 molecules (``rattle`` A, ASE's ``rattle`` seeded by
    ``seed + index``) with their GFN2-xTB labels to ``path`` (extxyz); returns ``path``."""
    import ase.io

    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    molecules = g2_molecules(elements, max_atoms=max_atoms)
    if not molecules:
        raise ValueError(f"no G2 molecule is made of {elements} with at most {max_atoms} atoms")
    indices = range(n)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc=f"{method} labels", unit="molecule")
    frames = []
    for index in indices:
        atoms = molecules[index % len(molecules)].copy()
        atoms.rattle(rattle, seed=seed + index)
        frames.append(with_xtb_labels(atoms, method=method))
    path = Path(path)
    ase.io.write(str(path), frames, format="extxyz")
    return path
