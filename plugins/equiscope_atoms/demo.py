"""``equiscope demo``: train a tiny PET with metatrain on generated data, then audit it.

1. Generate rattled, strained fcc copper cells (8 atoms) with ASE's EMT calculator:
   energies, forces and stress as labels (no download).
2. Train a small PET with plain ``mtt train`` (random O(3) augmentation is always on
   for PET), on CPU with one thread.
3. Audit the checkpoint (``.ckpt``, evaluated in Python, with the spectra of every
   PET layer) and the exported model (``.pt``) on held-out structures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import equiscope as eq
from equiscope.report import terminal_summary, write_report

from ._audit import audit
from .data import read_structures
from .models import load_model

__all__ = ["generate_copper", "run_demo", "run_mtt_train", "train_pet", "with_emt_labels"]

OPTIONS = """\
seed: {seed}
architecture:
  name: pet
  model:
    cutoff: 4.0
    d_pet: 32
    d_head: 32
    d_node: 64
    d_feedforward: 64
    num_heads: 4
    num_gnn_layers: 2
  training:
    num_epochs: {epochs}
    batch_size: {batch_size}
    learning_rate: 1.0e-3
    log_interval: 1
    checkpoint_interval: 1000
training_set:
  systems:
    read_from: {data}
    length_unit: angstrom
  targets:
    energy:
      key: energy
      unit: eV
      forces:
        key: forces
      stress:
        key: stress{direct}
validation_set: 0.125
test_set: 0.0
"""


def with_emt_labels(atoms):
    """``atoms`` with EMT energy, forces and stress stored as a single-point result."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = EMT()
    results = {
        "energy": atoms.get_potential_energy(),
        "forces": atoms.get_forces(),
        "stress": atoms.get_stress(),
    }
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def generate_copper(
    path: Path, n: int, *, seed: int = 0, strain: float = 0.02, rattle: float = 0.12
) -> Path:
    """``n`` 8-atom fcc Cu cells with EMT labels: the cell times ``1 + strain * N(0, 1)``
    (a random 3 x 3 matrix), atoms rattled by ``rattle`` A (ASE's ``rattle``)."""
    import ase.build
    import ase.io
    import numpy as np

    generator = np.random.default_rng(seed)
    frames = []
    for index in range(n):
        atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((1, 1, 2))
        deformation = np.eye(3) + strain * generator.standard_normal((3, 3))
        atoms.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
        atoms.rattle(rattle, seed=seed + index)
        frames.append(with_emt_labels(atoms))
    ase.io.write(str(path), frames, format="extxyz")
    return path


DIRECT_FORCES = """
    non_conservative_forces:
      key: forces
      quantity: force
      unit: eV/A
      type: {cartesian: {rank: 1}}
      per_atom: true"""


def train_pet(
    folder: Path,
    data: Path,
    *,
    epochs: int,
    n_train: int,
    seed: int = 0,
    direct_forces: bool = False,
) -> tuple[Path, Path]:
    """Run ``mtt train`` in ``folder``; returns (checkpoint, exported model).
    ``direct_forces`` adds a ``non_conservative_forces`` target (the EMT forces)."""
    batch_size = max(1, min(8, n_train - max(1, round(0.125 * n_train))))
    options = OPTIONS.format(
        seed=seed,
        epochs=epochs,
        data=data.resolve(),
        batch_size=batch_size,
        direct=DIRECT_FORCES if direct_forces else "",
    )
    return run_mtt_train(folder, options)


def run_mtt_train(folder: Path, options: str) -> tuple[Path, Path]:
    """``mtt train`` with the YAML ``options`` in ``folder`` (one thread, log in
    ``train.log``); returns (checkpoint, exported model)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "options.yaml").write_text(options)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(folder / "train.log", "w") as log:
        result = subprocess.run(
            [sys.executable, "-m", "metatrain", "train", "options.yaml", "-o", "model.pt"],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            check=False,
        )
    if result.returncode != 0:
        raise RuntimeError(f"mtt train failed, see {folder / 'train.log'}")
    return folder / "model.ckpt", folder / "model.pt"


def run_demo(
    output: Path,
    *,
    n_train: int = 48,
    n_audit: int = 3,
    epochs: int = 10,
    grid: eq.Grid | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Generate, train, audit; returns ``{"checkpoint": report, "export": report}``."""
    start = time.perf_counter()
    output.mkdir(parents=True, exist_ok=True)
    data = generate_copper(output / "train.xyz", n_train, seed=seed)
    held_out = generate_copper(output / "held_out.xyz", n_audit, seed=seed + 1000)
    if progress:
        print(f"training a tiny PET ({epochs} epochs, {n_train} structures) ...", flush=True)
    checkpoint, exported = train_pet(
        output / "train", data, epochs=epochs, n_train=n_train, seed=seed
    )
    grid = grid or eq.grid("lebedev", degree=6, inversion=True)
    reports = {}
    for label, path in (("checkpoint", checkpoint), ("export", exported)):
        model = load_model(path)
        structures = read_structures(held_out, atomic_types=model.atomic_types)
        report = audit(model, structures, grid=grid, progress=progress)
        write_report(report, output / f"audit-{label}")
        reports[label] = report
    reports["seconds"] = time.perf_counter() - start
    return reports


def summary(reports: dict, output: Path) -> str:
    """The text printed at the end of ``equiscope demo``."""
    lines = [terminal_summary(reports["checkpoint"]), ""]
    export = reports["export"]["outputs"]
    lines.append("exported model (.pt), same audit:")
    for name, out in export.items():
        unit = out.get("unit") or "(units not declared)"
        lines.append(f"  {name}: equivariance RMSE {out['equivariance_rmse']:.3g} {unit}")
    lines.append("")
    lines.append(f"reports: {output / 'audit-checkpoint'}/report.md, {output / 'audit-export'}")
    lines.append(f"done in {reports['seconds']:.0f} s")
    return "\n".join(lines)
