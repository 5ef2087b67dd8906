"""Symmetrised heads vs metatomic-ase's SymmetrizedCalculator, side by side in one run.

A tiny PET is trained with ``mtt train`` on EMT copper (as ``equiscope demo`` does),
then for held-out 8-atom cells every calculator gives energy, forces and stress:

- at L = 3: metatomic-ase ``SymmetrizedCalculator(l_max=3)`` vs equiscope's
  ``EquiscopeCalculator(mode="average", grid="octahedral")`` (+ inversion both);
- at L = 5: ``SymmetrizedCalculator(l_max=5)`` vs ``grid="icosahedral"``;
- the same grids as metatomic-ase (Lebedev x (2L + 1) in-plane angles x inversion,
  84 and 308 elements) behind equiscope's head, all copies in one model call;
- random frame: ``EquiscopeCalculator(mode="random")`` vs the plain
  ``MetatomicCalculator`` (overhead per MD step).

It also prints each grid's leakage ``|| sum_i w_i rho(g_i) ||_F`` per sector
(lambda, even/odd parity): 0 where it averages the sector out exactly.

Reported per calculator: model evaluations per call, wall time per call, and the
remaining equivariance RMSE of the forces, measured as the spread of the
back-rotated forces over 8 random O(3) frames of the input.

Run: OMP_NUM_THREADS=1 python benchmarks/heads_vs_symmetrized_calculator.py [--model model.pt]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import ase.io
import numpy as np
import torch
from metatomic_ase import MetatomicCalculator, SymmetrizedCalculator
from scipy.spatial.transform import Rotation

import equiscope as eq
from equiscope_ase import EquiscopeCalculator
from equiscope_atoms.demo import generate_copper, train_pet


def frames(n_frames=8, seed=0):
    rotations = Rotation.random(n_frames, random_state=seed).as_matrix()
    signs = np.where(np.arange(n_frames) % 2 == 0, 1.0, -1.0)
    return rotations * signs[:, None, None]


def forces_in_frames(calculator, atoms, matrices):
    """Forces of the rotated structures, rotated back to the input frame."""
    out = []
    for matrix in matrices:
        moved = atoms.copy()
        moved.positions = atoms.positions @ matrix.T
        moved.cell = atoms.cell.array @ matrix.T
        moved.calc = calculator
        out.append(moved.get_forces() @ matrix)
    return np.stack(out)


def time_per_call(calculator, atoms, calls=3):
    moved = atoms.copy()
    moved.calc = calculator
    start = time.perf_counter()
    for index in range(calls):
        moved.positions = atoms.positions + 1e-4 * index
        moved.get_potential_energy()
        moved.get_forces()
        moved.get_stress()
    return (time.perf_counter() - start) / calls


GRIDS = {
    "octahedral (+i)": eq.grid("octahedral", inversion=True),
    "Lebedev(3) x 4 (+i)": eq.grid("lebedev", degree=3, inversion=True),
    "Lebedev(3) x 7 (+i)": eq.grid("lebedev", degree=3, n_inplane=7, inversion=True),
    "icosahedral (+i)": eq.grid("icosahedral", inversion=True),
    "Lebedev(5) x 6 (+i)": eq.grid("lebedev", degree=5, inversion=True),
    "Lebedev(5) x 11 (+i)": eq.grid("lebedev", degree=5, n_inplane=11, inversion=True),
}


def print_leakage(max_lambda=8):
    """Leakage of every grid per lambda, even / odd parity sector."""
    print(f"\n{'grid':<24}{'size':>5}  leakage per lambda = 1..{max_lambda} (even/odd)")
    for name, grid in GRIDS.items():
        cells = []
        for lam in range(1, max_lambda + 1):
            even, odd = (grid.leakage((lam, sigma * (-1) ** lam)) for sigma in (1, -1))
            cells.append(f"{even:.2f}/{odd:.2f}")
        print(f"{name:<24}{grid.size:>5}  " + " ".join(cells))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an exported model (default: train a tiny PET)")
    parser.add_argument("--structures", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    work = Path(tempfile.mkdtemp(prefix="equiscope-bench-"))
    if args.model is None:
        data = generate_copper(work / "train.xyz", 48)
        _, model = train_pet(work / "train", data, epochs=10, n_train=48)
    else:
        model = Path(args.model)
    held_out = ase.io.read(
        str(generate_copper(work / "test.xyz", args.structures, seed=99)), index=":"
    )
    matrices = frames()
    plain = MetatomicCalculator(str(model))
    calculators = {
        "plain MetatomicCalculator": (plain, 1),
        "SymmetrizedCalculator l_max=3": (SymmetrizedCalculator(plain, l_max=3), None),
        "equiscope octahedral (+i)": (
            EquiscopeCalculator(model, grid="octahedral"),
            eq.grid("octahedral", inversion=True).size,
        ),
        "SymmetrizedCalculator l_max=5": (SymmetrizedCalculator(plain, l_max=5), None),
        "equiscope icosahedral (+i)": (
            EquiscopeCalculator(model, grid="icosahedral"),
            eq.grid("icosahedral", inversion=True).size,
        ),
        "equiscope, metatomic-ase's L=3 grid": (
            EquiscopeCalculator(model, grid=GRIDS["Lebedev(3) x 7 (+i)"]),
            GRIDS["Lebedev(3) x 7 (+i)"].size,
        ),
        "equiscope, metatomic-ase's L=5 grid": (
            EquiscopeCalculator(model, grid=GRIDS["Lebedev(5) x 11 (+i)"]),
            GRIDS["Lebedev(5) x 11 (+i)"].size,
        ),
        "equiscope random frame": (EquiscopeCalculator(model, mode="random", seed=1), 1),
    }
    from metatomic.torch.o3._quadrature import choose_quadrature

    print(f"model: {model}; {len(held_out)} held-out cells of 8 atoms; 1 thread")
    print(f"{'calculator':<32}{'evals/call':>11}{'ms/call':>10}{'force equivariance RMSE':>26}")
    timings = {}
    for name, (calculator, evaluations) in calculators.items():
        if evaluations is None:  # metatomic-ase: Lebedev(l_max) x (2 l_max + 1) x inversion
            l_max = 3 if "=3" in name else 5
            order, _ = choose_quadrature(l_max)
            import scipy.integrate

            points = scipy.integrate.lebedev_rule(order)[0].shape[1]
            evaluations = points * (2 * l_max + 1) * 2
        squared, entries = 0.0, 0
        seconds = 0.0
        for atoms in held_out:
            rotated = forces_in_frames(calculator, atoms, matrices)
            squared += float(((rotated - rotated.mean(0)) ** 2).sum()) / len(matrices)
            entries += rotated[0].size
            seconds += time_per_call(calculator, atoms)
        timings[name] = seconds / len(held_out)
        rmse = (squared / entries) ** 0.5
        print(f"{name:<32}{evaluations:>11}{1e3 * timings[name]:>10.1f}{rmse:>26.3e}")
    overhead = timings["equiscope random frame"] / timings["plain MetatomicCalculator"] - 1
    print(f"random-frame overhead per step vs plain: {100 * overhead:+.1f}% (goal <= 5%)")
    print_leakage()


if __name__ == "__main__":
    main()
