"""Phonons at Gamma of fcc copper: raw model vs O- and I-averaged heads
====================================================================

Trains a tiny PET on EMT copper (as ``equiscope demo`` does, but 40 epochs, about a
minute: after 10 the model has no energy minimum near the EMT lattice constant) unless
``--model`` is given, then computes the force constants of a 4-atom fcc Cu cell
(a = 3.61 A, in a random orientation) by finite displacements with ``ase.phonons``
(supercell 1x1x1, central differences, no sum-rule correction, no symmetrisation) for
EMT (the reference the PET was trained on), the raw model and O- and I-averaged heads
(with inversion). Prints, for each: the three acoustic frequencies at Gamma, the nine
optical ones grouped into their two cubic multiplets with the spread inside each, the
acoustic-sum-rule violation ``max |sum_j Phi_ij|`` and the cubic-symmetry violation of
the force constants, ``max |Phi_g(i)g(j) - R Phi_ij R^T|`` over the 48 operations of the
crystal; plots the frequencies side by side to ``gamma_phonons.png``.

Expected physics: the 12 modes at Gamma of the conventional cell are the Gamma point
(3 acoustic, frequency 0) and the three X points of the fcc zone folded back: 6
transverse modes with one frequency and 3 longitudinal modes with another. The
acoustic sum rule follows from translation invariance, which every model here has
exactly (PET sees only relative positions), so the acoustic frequencies are zero for
every head up to the finite-difference and float32 noise. The degeneracies follow
from the cubic rotations: a model that is not rotation-invariant splits the
multiplets and gives force constants that break the cubic symmetry; averaging removes
the low-lambda part of that breaking (O: lambda = 1, 2, 3, 5; I: 1-5, 7, 8, 9). With
``--aligned`` (cube edges along x, y, z) the O grid contains all the crystal's
rotations, so the O-averaged force constants are cubic exactly (up to float32 noise);
the I grid contains only their tetrahedral subgroup (no 4-fold axes), so a small
breaking remains. Central differences in a rotated frame are not exactly covariant:
the EMT row shows that floor (it shrinks as ``--delta`` squared).

Run it with:

.. code-block:: bash

    python examples/04_gamma_phonons.py [--model model.pt] [--aligned]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import tempfile
import warnings
from pathlib import Path

import ase.build
import matplotlib
import numpy as np
import torch
from ase import units
from ase.calculators.emt import EMT
from ase.phonons import Phonons
from ase.spacegroup.symmetrize import check_symmetry
from metatomic_ase import MetatomicCalculator
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from equiscope_ase import EquiscopeCalculator
from equiscope_atoms.demo import generate_copper, train_pet

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# sqrt(eV / (A^2 amu)) in THz
THZ = np.sqrt(units._e / units._amu) * 1e10 / (2 * np.pi) / 1e12


# %%
# Force constants by finite displacements (``ase.phonons``, central differences, no
# sum-rule correction) and the diagnostics computed from them.


def structure(a: float, aligned: bool) -> ase.Atoms:
    atoms = ase.build.bulk("Cu", "fcc", a=a, cubic=True)
    if not aligned:
        rotation = Rotation.random(random_state=7).as_matrix()
        atoms.set_cell(atoms.cell.array @ rotation.T, scale_atoms=True)
    return atoms


def force_constants(atoms: ase.Atoms, calculator, delta: float, folder: Path) -> np.ndarray:
    """Gamma-point force constants ``Phi[3 i + a, 3 j + b]`` (eV/A^2), from central
    differences, as measured: no acoustic sum rule imposed, no symmetrisation."""
    phonons = Phonons(atoms, calculator, supercell=(1, 1, 1), delta=delta, name=str(folder))
    phonons.run()
    phonons.read(method="standard", symmetrize=0, acoustic=False)
    return phonons.get_force_constant().sum(axis=0)  # one cell: the Gamma sum is trivial


def frequencies(phi: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Gamma frequencies (THz) of the symmetric part of ``phi``; an imaginary mode
    is returned as a negative frequency."""
    weights = np.repeat(masses, 3) ** -0.5
    dynamical = 0.5 * (phi + phi.T) * weights[:, None] * weights[None, :]
    squared = np.linalg.eigvalsh(dynamical)
    return np.sign(squared) * np.sqrt(np.abs(squared)) * THZ


def sum_rule_violation(phi: np.ndarray) -> float:
    """max |sum_j Phi_ij| (eV/A^2): the force on i when every atom moves together."""
    n = phi.shape[0] // 3
    blocks = phi.reshape(n, 3, n, 3)
    return float(np.abs(blocks.sum(axis=0)).max())


def symmetry_violation(phi: np.ndarray, atoms: ase.Atoms) -> float:
    """max |Phi_g(i)g(j) - R Phi_ij R^T| (eV/A^2) over the crystal's space-group
    operations g = (R, t) found by spglib."""
    dataset = check_symmetry(atoms, symprec=1e-5)
    lattice = atoms.cell.array  # rows are the cell vectors
    fractional = atoms.get_scaled_positions()
    n = len(atoms)
    blocks = phi.reshape(n, 3, n, 3).transpose(0, 2, 1, 3)  # [i, j, a, b]
    worst = 0.0
    for rotation, translation in zip(dataset.rotations, dataset.translations, strict=True):
        cartesian = lattice.T @ rotation @ np.linalg.inv(lattice.T)
        moved = fractional @ rotation.T + translation
        image = np.empty(n, dtype=int)
        for i, position in enumerate(moved):
            offset = fractional - position
            image[i] = np.argmin(np.abs(offset - np.round(offset)).sum(axis=1))
        expected = np.einsum("ac,ijcd,bd->ijab", cartesian, blocks, cartesian)
        worst = max(worst, float(np.abs(blocks[np.ix_(image, image)] - expected).max()))
    return worst


def groups(optical: np.ndarray) -> list[np.ndarray]:
    """The nine optical frequencies as two cubic multiplets: 6 + 3 or 3 + 6, the
    grouping with the smaller spreads."""
    optical = np.sort(optical)
    return min(
        ([optical[:6], optical[6:]], [optical[:3], optical[3:]]),
        key=lambda split: sum(np.ptp(group) for group in split),
    )


def multiplets(optical: np.ndarray) -> list[tuple[float, int, float]]:
    """(mean, size, max - min) of each optical multiplet."""
    return [(float(g.mean()), len(g), float(np.ptp(g))) for g in groups(optical)]


# %%
# The models compared: EMT (the reference the PET learned), the raw PET and its O- and
# I-averaged heads (with inversion).


def main():
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--model", help="exported model (default: train a tiny PET)")
    parser.add_argument("--output", default="gamma_phonons.png")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (no --model)")
    parser.add_argument("--a", type=float, default=3.61, help="lattice constant (A)")
    parser.add_argument("--delta", type=float, default=0.005, help="displacement (A)")
    parser.add_argument("--aligned", action="store_true", help="cube edges along x, y, z")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    work = Path(tempfile.mkdtemp(prefix="equiscope-phonons-"))
    if args.model is None:
        data = generate_copper(work / "train.xyz", 48)
        _, model = train_pet(work / "train", data, epochs=args.epochs, n_train=48)
    else:
        model = Path(args.model)
    heads = {
        "EMT (reference)": EMT(),
        "raw": MetatomicCalculator(str(model)),
        "O average": EquiscopeCalculator(model, grid="octahedral"),
        "I average": EquiscopeCalculator(model, grid="icosahedral"),
    }
    atoms = structure(args.a, args.aligned)
    orientation = "aligned" if args.aligned else "random orientation"
    print(f"fcc Cu, 4-atom cell, a = {args.a} A, {orientation}, delta = {args.delta} A")
    results = {}
    for index, (name, calculator) in enumerate(tqdm(heads.items(), leave=False)):
        phi = force_constants(atoms, calculator, args.delta, work / f"phonon-{index}")
        omega = frequencies(phi, atoms.get_masses())
        order = np.argsort(np.abs(omega))
        results[name] = {
            "acoustic": omega[order[:3]],
            "optical": omega[order[3:]],
            "sum rule": sum_rule_violation(phi),
            "symmetry": symmetry_violation(phi, atoms),
        }
    print(
        f"{'head':<16}{'acoustic (THz)':>30}{'optical multiplets: mean (size, spread) THz':>50}"
        f"{'|sum_j Phi_ij|':>16}{'cubic violation':>17}"
    )
    for name, result in results.items():
        acoustic = " ".join(f"{x:9.1e}" for x in result["acoustic"])
        optical = "  ".join(f"{m:.3f} (x{k}, {s:.1e})" for m, k, s in multiplets(result["optical"]))
        print(
            f"{name:<16}{acoustic:>30}{optical:>50}"
            f"{result['sum rule']:>16.1e}{result['symmetry']:>17.1e}"
        )
    print("units: eV/A^2 for the last two columns")
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for index, result in enumerate(results.values()):
        omega = np.concatenate([result["acoustic"], result["optical"]])
        left.hlines(omega, index - 0.35, index + 0.35, color=f"C{index}")
        splitting = np.concatenate([group - group.mean() for group in groups(result["optical"])])
        floor = np.full_like(splitting, 1e-7)
        right.scatter(
            index + np.linspace(-0.25, 0.25, len(splitting)),
            np.maximum(np.abs(splitting), floor),
            color=f"C{index}",
            s=12,
        )
    for axis in (left, right):
        axis.set_xticks(range(len(results)), list(results), fontsize=8)
    left.set_ylabel("frequency at Gamma (THz)")
    left.set_title(f"fcc Cu, conventional cell, {orientation}", fontsize=10)
    right.set_yscale("log")
    right.set_ylabel("|frequency - multiplet mean| (THz)")
    right.set_title("splitting of the optical multiplets (cubic: 0)", fontsize=10)
    figure.tight_layout()
    figure.savefig(args.output, dpi=120)
    print(f"figure: {args.output}")


# %%
# Run
# ---
# The table gives the three acoustic frequencies, the two optical multiplets with the
# spread inside each (THz), the acoustic-sum-rule violation and the cubic-symmetry
# violation of the force constants (eV/A^2).

if __name__ == "__main__":
    # TorchScript's optimising executor spends 1-2 s profiling the first two calls of
    # every model; for runs this short, plain execution is faster
    with torch.jit.optimized_execution(False):
        main()
