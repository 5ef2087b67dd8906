"""Cell relaxation of fcc copper that keeps (or loses) its space group, raw vs averaged
====================================================================================

Trains a tiny PET on EMT copper (as ``equiscope demo`` does, but 40 epochs, about a
minute: after 10 the model has no energy minimum near the EMT lattice constant) unless
``--model`` is given, then relaxes a 4-atom fcc Cu cell with a wrong lattice constant
(isotropic strain, space group Fm-3m, 225) in a random orientation, with BFGS on a
``FrechetCellFilter``, for the raw model and O- and I-averaged heads (with inversion),
each once with ``ase.constraints.FixSymmetry`` and once without. Prints the space group
before and after (spglib at a tight and a loose tolerance), the final lattice
parameters, how far the cell is from cubic, energy, residual force and number of
steps, and plots the largest generalised force (atoms and cell) and the distortion
against the step to ``relax_symmetry.png``.

Expected physics: fcc is a Bravais lattice, so the forces on its atoms vanish for any
translation-invariant model; a model that is not rotation-invariant can still break
the cubic symmetry through the stress (a deviatoric part). With ``FixSymmetry`` every
head keeps Fm-3m by construction (the constraint symmetrises forces and stress), and
the heads differ only in the lattice constant and energy. Without it, the raw model's
anisotropic stress shears the cell and the space group is lost; the averaged heads are
exactly invariant under their own group, so the stress they give is cubic up to the
sectors they do not remove (lambda = 4, 6, ... for O, 6, 10, ... for I): much smaller,
so Fm-3m survives at a loose tolerance. With ``--aligned`` (cube edges along x, y, z)
the O grid contains all the crystal's rotations and the I grid their tetrahedral
subgroup, which is enough to make a stress cubic: both averaged heads then keep Fm-3m
exactly, and on this crystal the O average gives exactly what the raw model gives
with FixSymmetry.

Run it with:

.. code-block:: bash

    python examples/03_relax_keeps_symmetry.py [--model model.pt] [--aligned]
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
from ase.constraints import FixSymmetry
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from ase.spacegroup.symmetrize import check_symmetry
from metatomic_ase import MetatomicCalculator
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from equiscope_ase import EquiscopeCalculator
from equiscope_atoms.demo import generate_copper, train_pet

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TIGHT, LOOSE = 1e-5, 1e-3  # spglib tolerances (Angstrom)


# %%
# Symmetry diagnostics: the space group found by spglib, how far the cell is from
# cubic, and the deviatoric (shear) part of the stress, the only way a model can break
# the symmetry of a Bravais lattice.


def space_group(atoms: ase.Atoms, symprec: float) -> str:
    dataset = check_symmetry(atoms, symprec=symprec)
    return f"{dataset.international} ({dataset.number})"


def distortion(atoms: ase.Atoms) -> float:
    """How far the cell is from cubic, independent of its orientation: the largest
    element of ``G / (tr G / 3) - 1`` for the metric ``G = L L^T`` of the cell."""
    metric = atoms.cell.array @ atoms.cell.array.T
    return float(np.abs(3.0 * metric / np.trace(metric) - np.eye(3)).max())


def deviatoric_stress(atoms: ase.Atoms, calculator) -> float:
    """Largest element of the traceless part of the stress (GPa)."""
    atoms = atoms.copy()
    atoms.calc = calculator
    stress = atoms.get_stress(voigt=False)
    return float(np.abs(stress - np.trace(stress) / 3 * np.eye(3)).max() / units.GPa)


def start_structure(a: float, aligned: bool) -> ase.Atoms:
    """fcc Cu, conventional 4-atom cell, optionally in a random orientation."""
    atoms = ase.build.bulk("Cu", "fcc", a=a, cubic=True)
    if not aligned:
        rotation = Rotation.random(random_state=7).as_matrix()
        atoms.set_cell(atoms.cell.array @ rotation.T, scale_atoms=True)
    return atoms


# %%
# One relaxation: BFGS on a ``FrechetCellFilter`` (atoms and cell), optionally with
# ``FixSymmetry``.


def relax(atoms: ase.Atoms, calculator, symmetric: bool, fmax: float, steps: int) -> dict:
    atoms = atoms.copy()
    atoms.calc = calculator
    if symmetric:
        atoms.set_constraint(FixSymmetry(atoms, symprec=TIGHT))
    frame = FrechetCellFilter(atoms)
    history, shape = [], []

    def record():
        history.append(float(np.linalg.norm(frame.get_forces(), axis=1).max()))
        shape.append(distortion(atoms))

    optimizer = BFGS(frame, logfile=None)
    optimizer.attach(record, interval=1)
    optimizer.run(fmax=fmax, steps=steps)
    atoms.set_constraint()
    return {
        "atoms": atoms,
        "history": np.array(history),
        "distortion": np.array(shape),
        "steps": optimizer.get_number_of_steps(),
        "energy": atoms.get_potential_energy() / len(atoms),
        "fmax": history[-1],
    }


# %%
# The heads compared: the raw model and the O- and I-averaged heads (with inversion),
# each relaxed with and without ``FixSymmetry``.


def main():
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--model", help="exported model (default: train a tiny PET)")
    parser.add_argument("--output", default="relax_symmetry.png")
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (no --model)")
    parser.add_argument("--a", type=float, default=3.72, help="initial lattice constant (A)")
    parser.add_argument("--fmax", type=float, default=1e-3, help="convergence (eV/A)")
    parser.add_argument("--steps", type=int, default=60, help="most BFGS steps per run")
    parser.add_argument("--aligned", action="store_true", help="cube edges along x, y, z")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    if args.model is None:
        work = Path(tempfile.mkdtemp(prefix="equiscope-relax-"))
        data = generate_copper(work / "train.xyz", 48)
        _, model = train_pet(work / "train", data, epochs=args.epochs, n_train=48)
    else:
        model = Path(args.model)
    heads = {
        "raw": MetatomicCalculator(str(model)),
        "O average": EquiscopeCalculator(model, grid="octahedral"),
        "I average": EquiscopeCalculator(model, grid="icosahedral"),
    }
    start = start_structure(args.a, args.aligned)
    print(
        f"start: fcc Cu, a = {args.a} A, {'aligned' if args.aligned else 'random orientation'},"
        f" space group {space_group(start, TIGHT)}"
    )
    stresses = ", ".join(f"{n} {deviatoric_stress(start, c):.2g}" for n, c in heads.items())
    print(f"largest deviatoric stress at the start (cubic symmetry: 0), GPa: {stresses}")
    jobs = [(name, symmetric) for symmetric in (True, False) for name in heads]
    results = {}
    for name, symmetric in tqdm(jobs, leave=False):
        results[name, symmetric] = relax(start, heads[name], symmetric, args.fmax, args.steps)
    header = (
        f"{'head':<11}{'FixSymmetry':>12}{'SG tight':>14}{'SG loose':>14}"
        f"{'a b c (A)':>24}{'max|angle-90|':>14}{'distortion':>11}{'E (eV/atom)':>13}"
        f"{'fmax':>9}{'steps':>6}"
    )
    print(f"space groups at symprec {TIGHT:g} A (tight) and {LOOSE:g} A (loose)")
    print(header)
    for (name, symmetric), result in results.items():
        atoms = result["atoms"]
        cell = atoms.cell.cellpar()
        lengths = " ".join(f"{x:.5f}" for x in cell[:3])
        angle = np.abs(cell[3:] - 90.0).max()
        print(
            f"{name:<11}{'yes' if symmetric else 'no':>12}"
            f"{space_group(atoms, TIGHT):>14}{space_group(atoms, LOOSE):>14}"
            f"{lengths:>24}{angle:>14.2e}{result['distortion'][-1]:>11.1e}"
            f"{result['energy']:>13.6f}"
            f"{result['fmax']:>9.1e}{result['steps']:>6d}"
        )
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for index, name in enumerate(heads):
        for symmetric in (True, False):
            result = results[name, symmetric]
            style = {"color": f"C{index}", "linestyle": "-" if symmetric else "--"}
            label = f"{name}, {'FixSymmetry' if symmetric else 'free'}"
            left.semilogy(result["history"], label=label, **style)
            right.semilogy(np.maximum(result["distortion"], 1e-16), label=label, **style)
    left.axhline(args.fmax, color="grey", linewidth=0.8)
    left.set_xlabel("BFGS step")
    left.set_ylabel("largest generalised force (eV/A)")
    left.legend(fontsize=8)
    right.set_xlabel("BFGS step")
    right.set_ylabel("cell distortion from cubic")
    figure.tight_layout()
    figure.savefig(args.output, dpi=120)
    print(f"figure: {args.output}")


# %%
# Run
# ---
# The table gives the space group before and after, the final lattice parameters, the
# distortion from cubic, the energy, the residual force and the number of steps.

if __name__ == "__main__":
    # TorchScript's optimising executor spends 1-2 s profiling the first two calls of
    # every model; for runs this short, plain execution is faster
    with torch.jit.optimized_execution(False):
        main()
