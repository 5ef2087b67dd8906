"""NVE molecular dynamics of an unconstrained PET with and without symmetrised heads
=================================================================================

Trains a tiny PET on EMT copper (as ``equiscope demo`` does) unless ``--model`` is
given, then runs NVE (velocity Verlet, 1 fs, 8-atom fcc cell, 300 K) with conservative
forces for: the raw model, a seeded random frame per step, and O- and I-averaged heads
(with inversion). Prints, for each, the energy drift (meV/atom/ps, slope of a linear
fit), the RMS energy fluctuation and the cost per step, and plots the total energy
against time to ``md_heads.png``.

Expected physics: the raw and averaged heads are smooth, deterministic potentials, so
NVE conserves their energy; a new random frame every step makes the potential change
under the atoms' feet, so its energy random-walks.

With ``--direct`` the PET also learns the forces directly (a ``non_conservative_forces``
target) and MD uses those (``non_conservative=True``): no energy is conserved by
construction, so the drift measures how non-conservative the direct forces are, and
what each head does to it.

Run it with:

.. code-block:: bash

    python examples/02_md_with_heads.py [--model model.pt] [--steps 200] [--direct]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import ase.build
import matplotlib
import numpy as np
import torch
from ase import units
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from metatomic_ase import MetatomicCalculator
from tqdm import tqdm

from equiscope_ase import EquiscopeCalculator
from equiscope_atoms.demo import generate_copper, train_pet

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# %%
# One NVE run: an 8-atom fcc copper cell at 300 K, velocity Verlet with a 1 fs step.
# The total energy per atom is recorded after every step.


def run(calculator, steps, seed=0):
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((1, 1, 2))
    atoms.calc = calculator
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(seed))
    dynamics = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    energies = [atoms.get_total_energy()]
    start = time.perf_counter()
    for _ in tqdm(range(steps), leave=False):
        dynamics.run(1)
        energies.append(atoms.get_total_energy())
    seconds = (time.perf_counter() - start) / steps
    return np.array(energies) / len(atoms), seconds


# %%
# The heads
# ---------
# The same exported model behind four calculators: metatomic-ase's plain
# ``MetatomicCalculator`` and three ``EquiscopeCalculator`` heads (a seeded random frame
# per call, and the octahedral and icosahedral averages with inversion). Without
# ``--model`` a tiny PET is first trained on EMT copper, as ``equiscope demo`` does.


def main():
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--model", help="exported model (default: train a tiny PET)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--output", default="md_heads.png")
    parser.add_argument(
        "--direct", action="store_true", help="direct (non-conservative) forces in MD"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    if args.model is None:
        work = Path(tempfile.mkdtemp(prefix="equiscope-md-"))
        data = generate_copper(work / "train.xyz", 48)
        _, model = train_pet(work / "train", data, epochs=10, n_train=48, direct_forces=args.direct)
    else:
        model = Path(args.model)
    options = {"non_conservative": "forces"} if args.direct else {}
    runs = {
        "raw": MetatomicCalculator(str(model), **options),
        "random frame": EquiscopeCalculator(model, mode="random", seed=1, **options),
        "octahedral average": EquiscopeCalculator(model, grid="octahedral", **options),
        "icosahedral average": EquiscopeCalculator(model, grid="icosahedral", **options),
    }
    print("forces:", "direct (non_conservative_forces)" if args.direct else "-dE/dr")
    figure, axis = plt.subplots(figsize=(6.5, 4))
    print(f"{'head':<22}{'drift meV/atom/ps':>19}{'RMS fluct. meV/atom':>21}{'s/step':>9}")
    for name, calculator in runs.items():
        energies, seconds = run(calculator, args.steps)
        times = np.arange(len(energies)) * 1e-3  # ps
        drift = np.polyfit(times, energies, 1)[0] * 1e3
        fluctuation = (energies - energies.mean()).std() * 1e3
        print(f"{name:<22}{drift:>19.2e}{fluctuation:>21.2e}{seconds:>9.3f}")
        axis.plot(times, (energies - energies[0]) * 1e3, label=name)
    axis.set_xlabel("time (ps)")
    axis.set_ylabel("total energy - E(0) (meV/atom)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(args.output, dpi=120)
    print(f"figure: {args.output}")


# %%
# Run
# ---
# The table gives the energy drift (slope of a linear fit, meV/atom/ps), the RMS energy
# fluctuation (meV/atom) and the wall time per step of each head. Training the model
# takes about a minute, so the documentation build does not execute this example; the
# results of the default 200 steps are in :doc:`/measurements`.

if __name__ == "__main__":
    main()
