"""Minimal inductive biases in metatrain, measured
===============================================

Minimal inductive biases, measured: train ``experimental.equiscope`` with metatrain
on a direct-force (vector), lambda = 2, direct-stress or Born-charge (general rank-2)
target, and compare accuracy and symmetry.

Studies (EMT copper, 8-atom cells; ``--target forces``: the vector target is the EMT
force, learned directly, without energy):

- covariant readout bias on vs off: a bias on a lambda = 1 readout is a constant
  vector in the lab frame; expected: off gives a lower equivariance RMSE at equal or
  better accuracy (a constant vector adds its squared norm to A^2 of every structure);
- edge-embedding bandwidth scan: PET's linear embedding vs solid harmonics up to
  lmax = 2, 4, 8.
- tensor-basis readout: the vector read out as sum_j c_ij r_hat_ij, with the
  coefficients from the (unconstrained) trunk.

``--target efg``: a per-atom spherical lambda = 2 target, the electric field gradient
of unit point charges on the other atoms, V_i = sum_j s(r_ij) (3 r r^T - r^2 1) / r^5
(traceless symmetric, in metatomic's lambda = 2 components; s: cosine switch from 5 to
6 A; about a third of it, in RMS, comes from beyond PET's 4 A cutoff). It vanishes in
a perfect cubic site: the target is all symmetry breaking. Runs: PET's readout vs the
tensor-basis readout sum_j c_ij Y_2(r_hat_ij).

``--target stress``: the EMT stress learned directly as ``non_conservative_stress``.
Runs: PET's readout vs the tensor basis sum_j (a_ij r_hat r_hat^T + b_ij 1) / V.

``--target born``: a general (non-symmetric) rank-2 per-atom target, the Born effective
charges Z_i[a, b] = dP_a / dr_ib of a charge-equilibration (QEq) model of rattled G2
molecules (H, C, N, O; P = sum_j q_j r_j, the charges flow as atoms move, so Z has an
antisymmetric part). Runs: PET's readout vs the tensor basis sum_j (a r_hat r_hat^T +
b 1) + [sum_c u_c x v_c]_x (the antisymmetric part from cross products of two edges).
``--target born-axial``: a pseudovector (lambda = 1, sigma = -1) target, the axial
vector of the same Born charges' antisymmetric part; the tensor basis reads it out as
sum_c u_c x v_c.

``--target dipole``: the GFN2-xTB dipole moment (e A, tblite) of the same kind of rattled
G2 molecules (``equiscope_atoms.molecules``), a per-molecule polar vector: PET's readout
vs the tensor basis sum_i sum_j c_ij r_hat_ij. ``--with-energy`` trains the GFN2-xTB
energy and its conservative forces next to it.

For each run: validation RMSE of the target (metatrain's own, last epoch) and the
equivariance RMSE of the same output from the symmetry monitor (octahedral grid with
inversion, 4 validation structures, last epoch). Prints a table and plots both.

``--with-energy`` (copper targets) trains the EMT energy, with conservative forces and
stress, next to the target, and adds the stress RMSE of the exported model on the
validation cells: conservative, and for ``--target stress`` the direct one. ``--strain``
and ``--rattle`` set how the copper cells are drawn; ``--learning-rate`` and
``--batch-size`` go to metatrain. For ``--target stress`` a feature probe asks how much
of the stress the trunk's features carry, whatever the readout learned: the stress of
fresh cells fitted linearly to the exported features summed over a cell and divided by
its volume. ``--refit`` then solves each run's stress readout by least squares on its
frozen trunk (``equiscope_metatrain.refit``) and measures it on the same fresh cells,
alone and behind equiscope's averaging head; ``--refit-equivariance-weight MU`` adds the
spread of the fit's rotated copies about their orbit mean to what it minimises.

Run it with:

.. code-block:: bash

    OMP_NUM_THREADS=1 python examples/07_metatrain_inductive_biases.py \\
        [--target forces|efg|stress|born|born-axial|dipole] [--epochs 30] [--structures 64] \\
        [--with-energy] [--refit [--refit-equivariance-weight 0]] [--strain 0.02] \\
        [--rattle 0.12] [--learning-rate 1e-3] \\
        [--batch-size 8] [--output inductive_biases.png]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import copy
import csv
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib
import yaml
from tqdm import tqdm

from equiscope_atoms.demo import generate_copper
from equiscope_atoms.molecules import g2_molecules, generate_xtb_molecules

matplotlib.use("Agg")
import matplotlib.pyplot as plt

# %%
# Settings
# --------
# A small PET trunk (width 32, two GNN layers, 4 A cutoff) shared by every run, the
# targets and the runs compared for each target.

BASE = {"cutoff": 4.0, "d_pet": 32, "d_head": 32, "d_node": 64, "d_feedforward": 64}
BASE.update(num_heads=4, num_gnn_layers=2)
TARGETS = {  # --target: (target name, metatrain's target options, label)
    "forces": (
        "non_conservative_forces",
        {
            "key": "forces",
            "quantity": "force",
            "unit": "eV/A",
            "type": {"cartesian": {"rank": 1}},
            "per_atom": True,
        },
        "force RMSE",
    ),
    "stress": (
        "non_conservative_stress",
        {
            "key": "stress",
            "quantity": "pressure",
            "unit": "eV/A^3",
            "type": {"cartesian": {"rank": 2}},
            "per_atom": False,
        },
        "stress RMSE",
    ),
    "born": (
        "mtt::born_charges",
        {
            "key": "born",
            "quantity": "",
            "unit": "",
            "type": {"cartesian": {"rank": 2}},
            "per_atom": True,
        },
        "Born charge RMSE",
    ),
    "born-axial": (
        "mtt::born_axial",
        {
            "key": "born_axial",
            "quantity": "",
            "unit": "",
            "type": {"spherical": {"irreps": [{"o3_lambda": 1, "o3_sigma": -1}]}},
            "per_atom": True,
        },
        "axial Born RMSE",
    ),
    "dipole": (
        "mtt::dipole",
        {
            "key": "xtb_dipole",
            "quantity": "",
            "unit": "",
            "type": {"cartesian": {"rank": 1}},
            "per_atom": False,
        },
        "dipole RMSE",
    ),
    "efg": (
        "mtt::efg",
        {
            "key": "efg",
            "quantity": "",
            "unit": "",
            "type": {"spherical": {"irreps": [{"o3_lambda": 2, "o3_sigma": 1}]}},
            "per_atom": True,
        },
        "EFG RMSE",
    ),
}
RUNS = {
    "bias on": {"covariant_readout_bias": True},
    "bias off": {"covariant_readout_bias": False},
    "linear": {"edge_embedding": {"kind": "linear"}},
    "SH lmax 2": {"edge_embedding": {"kind": "solid_harmonics", "lmax": 2}},
    "SH lmax 4": {"edge_embedding": {"kind": "solid_harmonics", "lmax": 4}},
    "SH lmax 8": {"edge_embedding": {"kind": "solid_harmonics", "lmax": 8}},
    "tensor basis": {"tensor_basis_readout": True},
    "PET readout": {},
}
DEFAULT_RUNS = {
    "forces": [name for name in RUNS if name != "PET readout"],  # "linear" is PET's
    "efg": ["PET readout", "tensor basis"],
    "stress": ["PET readout", "tensor basis"],
    "born": ["PET readout", "tensor basis"],
    "born-axial": ["PET readout", "tensor basis"],
    "dipole": ["PET readout", "tensor basis"],
}


# %%
# Targets
# -------
# The lambda = 2 electric field gradient, the QEq Born effective charges and the
# generated molecules they are computed on.


def field_gradients(atoms, cutoff: float = 6.0, switch: float = 5.0):
    """``[n_atoms, 5]``: sum_j s(r) (3 r r^T - r^2 1) / r^5 over the other atoms
    (periodic images included), as metatomic's lambda = 2 components."""
    import numpy as np
    import torch
    from ase.neighborlist import neighbor_list

    import equiscope as eq

    first, vectors = neighbor_list("iD", atoms, cutoff)
    r = np.linalg.norm(vectors, axis=1)
    x = np.clip((r - switch) / (cutoff - switch), 0.0, 1.0)
    weight = 0.5 * (1.0 + np.cos(np.pi * x)) / r**5
    outer = 3.0 * vectors[:, :, None] * vectors[:, None, :] - (r**2)[:, None, None] * np.eye(3)
    tensors = np.zeros((len(atoms), 3, 3))
    np.add.at(tensors, first, weight[:, None, None] * outer)
    return eq.cartesian_to_spherical(torch.from_numpy(tensors), rank=2)[(2, 1)].numpy()


QEQ = {  # electronegativity chi and hardness J in eV (Rappe and Goddard, 1991)
    "H": (4.528, 13.890),
    "C": (5.343, 10.126),
    "N": (6.899, 11.760),
    "O": (8.741, 13.364),
}
COULOMB = 14.399645  # e^2 / (4 pi epsilon_0) in eV A


def qeq_charges(positions, symbols, screening: float = 1.5):
    """Charge-equilibration charges of a neutral molecule (torch, differentiable):
    minimise sum_i (chi_i q_i + J_i q_i^2 / 2) + sum_{i<j} q_i q_j k / sqrt(r_ij^2 + a^2)
    subject to sum_i q_i = 0 (a linear system). The kernel k / sqrt(r^2 + a^2) is
    positive definite, so with a = 1.5 A (k / a = 9.6 eV, below every J) the quadratic
    form is too: no polarisation catastrophe at short distances."""
    import torch

    chi = torch.tensor([QEQ[s][0] for s in symbols], dtype=positions.dtype)
    hardness = torch.tensor([QEQ[s][1] for s in symbols], dtype=positions.dtype)
    n = len(symbols)
    squared = (positions[:, None, :] - positions[None, :, :]).square().sum(-1)
    off_diagonal = 1.0 - torch.eye(n, dtype=positions.dtype)
    coulomb = COULOMB / torch.sqrt(squared + screening**2) * off_diagonal
    matrix = torch.zeros(n + 1, n + 1, dtype=positions.dtype)
    matrix[:n, :n] = coulomb + torch.diag(hardness)
    matrix[:n, n] = 1.0
    matrix[n, :n] = 1.0
    right = torch.cat([-chi, torch.zeros(1, dtype=positions.dtype)])
    return torch.linalg.solve(matrix, right)[:n]


def born_charges(atoms):
    """``[n_atoms, 9]``: the Born effective charges of the QEq model, Z_i[a, b] =
    dP_a / dr_ib with P = sum_j q_j r_j (row-major 3 x 3, not symmetric: the charges
    flow as the atoms move). They sum to zero over the atoms (the molecule is neutral)."""
    import torch

    symbols = atoms.get_chemical_symbols()
    positions = torch.tensor(atoms.positions, dtype=torch.float64)

    def dipole(r):
        return (qeq_charges(r, symbols)[:, None] * r).sum(dim=0)

    jacobian = torch.autograd.functional.jacobian(dipole, positions)  # [a, atom, b]
    return jacobian.permute(1, 0, 2).reshape(len(atoms), 9).numpy()


def generate_molecules(path: Path, n: int, *, seed: int = 0) -> Path:
    """``n`` rattled copies (0.1 A) of the molecules of ASE's G2 set made of H, C, N, O
    with 3 to 12 atoms (in turn), with their QEq Born charges as ``born`` and the
    pseudovector of their antisymmetric part (the lambda = 1, sigma = -1 block, same
    norm) as ``born_axial``."""
    import ase.io
    import torch

    import equiscope as eq

    molecules = g2_molecules(tuple(QEQ))
    frames = []
    for index in range(n):
        atoms = molecules[index % len(molecules)].copy()
        atoms.rattle(0.1, seed=seed + index)
        born = born_charges(atoms)
        atoms.arrays["born"] = born
        spherical = eq.cartesian_to_spherical(torch.from_numpy(born).reshape(-1, 3, 3), rank=2)
        atoms.arrays["born_axial"] = spherical[(1, -1)].numpy()
        frames.append(atoms)
    ase.io.write(str(path), frames, format="extxyz")
    return path


def add_field_gradients(path: Path) -> Path:
    """Add the ``efg`` array (:func:`field_gradients`) to every structure of ``path``."""
    import ase.io

    frames = ase.io.read(str(path), ":")
    for atoms in frames:
        atoms.arrays["efg"] = field_gradients(atoms)
    ase.io.write(str(path), frames, format="extxyz")
    return path


ENERGY = {  # --with-energy: the EMT energy, with conservative forces and stress
    "key": "energy",
    "unit": "eV",
    "forces": {"key": "forces"},
    "stress": {"key": "stress"},
}
MOLECULE_ENERGY = {"key": "energy", "unit": "eV", "forces": {"key": "forces"}, "stress": False}


# %%
# Training with metatrain
# -----------------------
# Each run writes an ``options.yaml`` for ``experimental.equiscope`` and calls
# ``mtt train``; the validation RMSE is metatrain's own.


def options(data: Path, model: dict, args: argparse.Namespace) -> dict:
    name, target_options, _ = TARGETS[args.target]
    energy = MOLECULE_ENERGY if args.target == "dipole" else ENERGY
    targets = {name: target_options, **({"energy": energy} if args.with_energy else {})}
    return {
        "seed": args.seed,
        "architecture": {
            "name": "experimental.equiscope",
            "model": {"base": {"name": "pet", "model": copy.deepcopy(BASE)}, **model},
            "training": {
                "num_epochs": args.epochs,
                "batch_size": args.batch_size,
                "learning_rate": args.learning_rate,
                "log_interval": 1,
                "checkpoint_interval": 10000,
                "monitor": {"interval": args.epochs, "structures": 4, "grid": "octahedral"},
            },
        },
        "training_set": {
            "systems": {"read_from": str(data), "length_unit": "angstrom"},
            "targets": targets,
        },
        "validation_set": 0.125,
        "test_set": 0.0,
    }


def last_row(path: Path) -> dict:
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return rows[-1]


def split_indices(run: Path, split: str) -> list[int]:
    """The structures of ``split`` (``training`` or ``validation``) metatrain drew for ``run``."""
    return [int(i) for i in (run / "indices" / f"{split}.txt").read_text().split()]


def exported_stress_rmse(run: Path, data: Path, *, direct: bool) -> float:
    """RMSE per atom (meV/A^3, metatrain's normalisation: the error divided by the number
    of atoms) of the exported model's stress on the run's validation cells, conservative
    (the strain derivative of the energy) or ``direct`` (``non_conservative_stress``)."""
    import ase.io
    import numpy as np
    from metatomic_ase import MetatomicCalculator

    frames = ase.io.read(str(data), ":")
    calculator = MetatomicCalculator(
        str(run / "model.pt"), non_conservative="stress" if direct else False
    )
    errors = []
    for index in split_indices(run, "validation"):
        reference = frames[index].get_stress(voigt=False)
        atoms = frames[index].copy()
        atoms.calc = calculator
        errors.append((atoms.get_stress(voigt=False) - reference) / len(atoms))
    return 1000.0 * float(np.sqrt(np.mean(np.square(errors))))


def mean_stress_rmse(run: Path, data: Path) -> float:
    """The stress RMSE per atom (meV/A^3) on the run's validation cells of predicting the
    mean stress of its training cells: what a model that learned only the mean gets."""
    import ase.io
    import numpy as np

    frames = ase.io.read(str(data), ":")

    def stresses(split: str) -> tuple[np.ndarray, np.ndarray]:
        indices = split_indices(run, split)
        values = np.array([frames[i].get_stress(voigt=False) for i in indices])
        return values, np.array([len(frames[i]) for i in indices])[:, None, None]

    training, _ = stresses("training")
    validation, sizes = stresses("validation")
    errors = (validation - training.mean(axis=0)) / sizes
    return 1000.0 * float(np.sqrt(np.mean(np.square(errors))))


def linear_fits(inputs, targets, sizes, fit: int, *, steps: int = 2000) -> dict:
    """Fit ``targets`` [cells, k] to ``inputs`` [cells, f] linearly (with a constant) on
    the first ``fit`` cells; RMSE per atom (``/ sizes``, x 1000) on the others of two fits:
    ``"probe lstsq"``, the least-squares optimum, and ``"probe Adam"``, ``steps``
    full-batch Adam steps (learning rate 1e-3, metatrain's default) on centred and
    standardised inputs and targets: how far gradient training gets towards that optimum.
    Inputs constant on the fitted cells are left out of the Adam fit."""
    import numpy as np
    import torch

    def rmse(prediction: np.ndarray) -> float:
        errors = (prediction - targets[fit:]) / sizes[fit:]
        return 1000.0 * float(np.sqrt(np.mean(np.square(errors))))

    with_constant = np.hstack([inputs, np.ones((len(inputs), 1))])
    weights = np.linalg.lstsq(with_constant[:fit], targets[:fit], rcond=None)[0]

    varying = inputs[:fit].std(0) > 0
    inputs = inputs[:, varying]
    mean, scale = inputs[:fit].mean(0), inputs[:fit].std(0)
    target_mean, target_scale = targets[:fit].mean(0), targets[:fit].std()
    x = torch.from_numpy((inputs - mean) / scale)
    y = torch.from_numpy((targets[:fit] - target_mean) / target_scale)
    generator = torch.Generator().manual_seed(0)
    linear = torch.nn.Linear(x.shape[1], y.shape[1], dtype=torch.float64)
    with torch.no_grad():
        bound = x.shape[1] ** -0.5
        linear.weight.uniform_(-bound, bound, generator=generator)
        linear.bias.zero_()
    optimizer = torch.optim.Adam(linear.parameters(), lr=1.0e-3)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(linear(x[:fit]), y).backward()
        optimizer.step()
    with torch.no_grad():
        gradient_fit = linear(x[fit:]).numpy() * target_scale + target_mean
    return {"probe lstsq": rmse(with_constant[fit:] @ weights), "probe Adam": rmse(gradient_fit)}


def stress_probe(model: Path, data: Path, fit: int) -> dict:
    """How much of the stress the trunk's features carry, whatever the readout learned:
    :func:`linear_fits` of the stress (eV/A^3; RMSE in meV/A^3 per atom) of the cells of
    ``data`` to the export's ``feature`` output summed over each cell and divided by its
    volume, ``sigma ~ W^T sum_i h_i / V + b`` (the form of PET's readout)."""
    import ase.io
    import numpy as np
    from metatomic.torch import ModelOutput
    from metatomic_ase import MetatomicCalculator

    frames = ase.io.read(str(data), ":")
    calculator = MetatomicCalculator(str(model))
    request = {"feature": ModelOutput(sample_kind="system")}
    inputs, targets, sizes = [], [], []
    for atoms in frames:
        summed = calculator.run_model(atoms, request)["feature"].block().values
        inputs.append(summed.detach().double().numpy().ravel() / atoms.get_volume())
        targets.append(atoms.get_stress(voigt=False).ravel())
        sizes.append(len(atoms))
    return linear_fits(np.array(inputs), np.array(targets), np.array(sizes)[:, None], fit)


def refit_stress(run: Path, data: Path, probe: Path, equivariance_weight: float = 0.0) -> dict:
    """``--refit``: the run's direct-stress readout solved by least squares on its frozen
    trunk (:func:`equiscope_metatrain.refit.refit_readout`, float64: the training cells to
    fit, the validation cells to pick the ridge, each also in 4 random orientations and
    their inversions; ``equivariance_weight``: the weight of the spread of those copies
    about their orbit mean). Returns, in meV/A^3 per atom, on the probe's held-out fresh
    cells: the stress RMSE before the refit, after it, and after it behind equiscope's
    averaging head on the O grid with inversion (``symmetrize_model``, 48 copies), as
    ``"fresh before"``, ``"fresh refit"``, ``"fresh head"``; and the equivariance RMSE
    of the cell's stress for the same three models, ``sqrt(A^2 / 9)`` on 8 of the cells
    over 24 random rotations and their inversions (another draw than the fit's, and not
    the head's grid, on which the head is exact by construction), as ``"A before"``,
    ``"A refit"``, ``"A head"``."""
    import ase.io
    import numpy as np
    import torch
    from metatomic.torch import ModelOutput, systems_to_torch
    from metatrain.utils.io import load_model
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

    import equiscope as eq
    from equiscope_atoms.heads import symmetrize_model
    from equiscope_atoms.orbit import transformed_system
    from equiscope_metatrain.refit import refit_readout

    name = "non_conservative_stress"
    request = {name: ModelOutput(sample_kind="system")}
    model = load_model(str(run / "model.ckpt")).to(torch.float64).eval()
    requests = model.requested_neighbor_lists()

    def cells(frames: list) -> tuple[list, torch.Tensor, torch.Tensor]:
        systems = [
            get_system_with_neighbor_lists(systems_to_torch(a, dtype=torch.float64), requests)
            for a in frames
        ]
        stresses = torch.tensor(np.array([a.get_stress(voigt=False).ravel() for a in frames]))
        return systems, stresses, torch.tensor([float(len(a)) for a in frames])

    def stress(evaluate, systems: list) -> torch.Tensor:
        """In calls of 8 structures: behind the head each becomes 48 copies."""
        with torch.no_grad():
            values = [
                evaluate(systems[i : i + 8], request)[name].block().values
                for i in range(0, len(systems), 8)
            ]
        return torch.cat(values).reshape(len(systems), 3, 3)

    def fresh_rmse(evaluate) -> float:
        errors = stress(evaluate, fresh[0]).reshape(-1, 9) - fresh[1]
        squared = errors.square().sum(dim=1)
        return 1000.0 * eq.pooled_rmse(squared, n_components=9, n_atoms=fresh[2])

    measure = eq.grid("random", n=24, seed=2026, inversion=True)

    def equivariance_rmse(evaluate) -> float:
        squared = []
        for system in fresh[0][:8]:
            copies = [
                get_system_with_neighbor_lists(transformed_system(system, matrix), requests)
                for matrix in measure.rotations
            ]
            squared.append(eq.equivariance_variance(stress(evaluate, copies), measure, "rank2"))
        squared = torch.stack(squared)
        return 1000.0 * eq.pooled_rmse(squared, n_components=9, n_atoms=fresh[2][:8])

    frames = ase.io.read(str(data), ":")
    training = cells([frames[i] for i in split_indices(run, "training")])
    validation = cells([frames[i] for i in split_indices(run, "validation")])
    fresh = cells(ase.io.read(str(probe), f"{PROBE_FIT}:"))
    result = {"fresh before": fresh_rmse(model), "A before": equivariance_rmse(model)}
    refit_readout(
        model,
        training[0],
        training[1],
        validation[0],
        validation[1],
        output=name,
        equivariance_weight=equivariance_weight,
    )
    result.update({"fresh refit": fresh_rmse(model), "A refit": equivariance_rmse(model)})
    grid = eq.grid("octahedral", inversion=True)
    head = symmetrize_model(model.export(), grid=grid).module

    def averaged(systems: list, outputs: dict):
        return head(systems, outputs, None)

    return {**result, "fresh head": fresh_rmse(averaged), "A head": equivariance_rmse(averaged)}


PROBE_CELLS, PROBE_FIT = 320, 256  # --target stress: fresh cells for stress_probe


def train(
    folder: Path,
    config: dict,
    target: str,
    probe: Path | None = None,
    refit: float | None = None,
) -> dict:
    """Train one run with metatrain; ``refit``: the ``--refit-equivariance-weight`` of a
    readout refit after training (``None``: no refit)."""
    name = TARGETS[target][0]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "options.yaml").write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    with open(folder / "mtt.log", "w") as log:
        subprocess.run(
            [sys.executable, "-m", "metatrain", "train", "options.yaml", "-o", "model.pt"],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    seconds = time.perf_counter() - start
    run = max((folder / "outputs").glob("*/*"))
    history = last_row(run / "train.csv")
    column = next(k for k in history if k.startswith(f"validation {name} RMSE"))
    monitor = last_row(run / "symmetry_monitor.csv")
    result = {
        "accuracy": float(history[column]),
        "accuracy_column": column,
        "equivariance": float(monitor[f"A:{name}"]),
        "seconds": seconds,
    }
    data = Path(config["training_set"]["systems"]["read_from"])
    if "energy" in config["training_set"]["targets"] and target != "dipole":  # --with-energy
        result["conservative stress"] = exported_stress_rmse(run, data, direct=False)
        if target == "stress":
            result["direct stress"] = exported_stress_rmse(run, data, direct=True)
    if probe is not None:
        result.update(stress_probe(run / "model.pt", probe, PROBE_FIT))
        result["mean only"] = mean_stress_rmse(run, data)
        if refit is not None:
            result.update(refit_stress(run, data, probe, refit))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--structures", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", choices=list(TARGETS), default="forces")
    parser.add_argument("--runs", help="comma-separated subset of " + ", ".join(RUNS))
    parser.add_argument("--learning-rate", type=float, default=1.0e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--strain", type=float, default=0.02, help="copper cells: random strain (std)"
    )
    parser.add_argument("--rattle", type=float, default=0.12, help="copper cells: rattle (A)")
    parser.add_argument(
        "--with-energy",
        action="store_true",
        help="copper targets: also train the EMT energy with conservative forces and stress;"
        " --target dipole: the GFN2-xTB energy with conservative forces",
    )
    parser.add_argument(
        "--refit",
        action="store_true",
        help="--target stress: solve the stress readout by least squares after training",
    )
    parser.add_argument(
        "--refit-equivariance-weight",
        type=float,
        default=0.0,
        metavar="MU",
        help="--refit: weight of the equivariance spread against the squared error (>= 0)",
    )
    parser.add_argument("--output", default="inductive_biases.png")
    parser.add_argument("--workdir", help="keep the runs here (default: a temp folder)")
    args = parser.parse_args()

    names = args.runs.split(",") if args.runs else DEFAULT_RUNS[args.target]
    unknown = [name for name in names if name not in RUNS]
    if unknown:
        parser.error(f"unknown run {unknown[0]!r}; choose from {', '.join(RUNS)}")
    molecules = args.target.startswith("born") or args.target == "dipole"
    if args.target.startswith("born") and args.with_energy:
        parser.error(
            f"--with-energy needs copper cells or --target dipole, not --target {args.target}"
        )
    if args.refit and args.target != "stress":
        parser.error(f"--refit needs --target stress, not --target {args.target}")
    weight = args.refit_equivariance_weight
    if weight != 0.0 and not args.refit:
        parser.error("--refit-equivariance-weight needs --refit")
    if not (math.isfinite(weight) and weight >= 0.0):
        parser.error(f"--refit-equivariance-weight must be >= 0, got {weight}")
    label = TARGETS[args.target][2]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.workdir or scratch).resolve()
        work.mkdir(parents=True, exist_ok=True)
        if args.target == "dipole":
            data = generate_xtb_molecules(
                work / "molecules.xyz", args.structures, seed=args.seed, progress=True
            )
        elif molecules:
            data = generate_molecules(work / "molecules.xyz", args.structures, seed=args.seed)
        else:
            data = generate_copper(
                work / "copper.xyz",
                args.structures,
                seed=args.seed,
                strain=args.strain,
                rattle=args.rattle,
            )
        if args.target == "efg":
            add_field_gradients(data)
        probe = None
        if args.target == "stress":
            probe = generate_copper(
                work / "probe.xyz",
                PROBE_CELLS,
                seed=args.seed + 1000,
                strain=args.strain,
                rattle=args.rattle,
            )
        results = {}
        for name in tqdm(names, desc="trainings"):
            config = options(data, RUNS[name], args)
            folder = work / name.replace(" ", "_")
            refit = weight if args.refit else None
            results[name] = train(folder, config, args.target, probe, refit)

    first = next(iter(results.values()))
    columns = ("direct stress", "conservative stress", "probe lstsq", "probe Adam")
    columns += ("fresh before", "fresh refit", "fresh head", "A before", "A refit", "A head")
    extra = [key for key in columns if key in first]
    header = f"{'run':<12}{label + ' (val)':>18}{'equivariance RMSE':>19}{'seconds':>9}"
    print(header + "".join(f"{key:>21}" for key in extra))
    for name, r in results.items():
        row = f"{name:<12}{r['accuracy']:>18.4g}{r['equivariance']:>19.4g}{r['seconds']:>9.0f}"
        print(row + "".join(f"{r[key]:>21.4g}" for key in extra))
    print(f"(accuracy: metatrain's '{first['accuracy_column']}', last epoch)")
    stresses = [key for key in extra if "stress" in key]
    if stresses:
        print(
            f"({', '.join(stresses)}: RMSE per atom in meV/A^3 of the exported (best"
            " validation) model on the validation cells)"
        )
    if "mean only" in first:
        print(
            f"(predicting the training cells' mean stress: {first['mean only']:.4g} meV/A^3"
            " per atom on the validation cells)"
        )
    if "probe lstsq" in extra:
        print(
            f"(probes: RMSE per atom in meV/A^3 on {PROBE_CELLS - PROBE_FIT} fresh cells of"
            f" the stress fitted linearly, on {PROBE_FIT} others, to the export's features"
            " summed over a cell / volume, by least squares or by 2000 Adam steps)"
        )

    if "fresh refit" in extra:
        print(
            f"(fresh before / refit / head: RMSE per atom in meV/A^3 of the checkpoint's stress"
            f" on the same {PROBE_CELLS - PROBE_FIT} fresh cells, before and after the"
            " least-squares refit of its readout (equivariance weight"
            f" {weight:g}), and the refitted model behind the averaging head on the O grid with"
            " inversion; A before / refit / head: the equivariance RMSE of the cell's stress,"
            " per atom in meV/A^3, 24 random rotations and their inversions, 8 of those cells)"
        )

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    positions = range(len(results))
    left.bar(positions, [r["accuracy"] for r in results.values()], color="tab:blue")
    right.bar(positions, [r["equivariance"] for r in results.values()], color="tab:red")
    left.set(title=f"accuracy: validation {label}", ylabel="RMSE")
    right.set(title="symmetry: equivariance RMSE (O grid)", ylabel="RMSE", yscale="log")
    for axis in (left, right):
        axis.set_xticks(list(positions), list(results), rotation=30)
    figure.tight_layout()
    figure.savefig(args.output, dpi=110)
    print(f"figure: {args.output}")
    if "fresh refit" in extra:
        path = Path(args.output)
        path = path.with_name(f"{path.stem}_refit{path.suffix}")
        plot_refit(results, weight, path)
        print(f"figure: {path}")


def plot_refit(results: dict, weight: float, path: Path) -> None:
    """``--refit``: per run, the stress RMSE on the fresh cells and the equivariance RMSE
    of the cell's stress, as trained, refitted, and refitted behind the averaging head."""
    stages = (("before", "trained"), ("refit", "refit"), ("head", "refit + O_h head"))
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / len(stages)
    for k, (key, name) in enumerate(stages):
        positions = [i + (k - 1) * width for i in range(len(results))]
        left.bar(positions, [r[f"fresh {key}"] for r in results.values()], width, label=name)
        right.bar(positions, [r[f"A {key}"] for r in results.values()], width, label=name)
    left.set(title="stress RMSE, fresh cells", ylabel="meV/A^3 per atom")
    right.set(title="equivariance RMSE of the cell's stress", ylabel="meV/A^3 per atom")
    right.set(yscale="log")
    for axis in (left, right):
        axis.set_xticks(list(range(len(results))), list(results))
    handles, labels = left.get_legend_handles_labels()
    title = f"refit with equivariance weight {weight:g}:"
    figure.legend(handles, labels, loc="lower center", ncol=3, title=title)
    figure.tight_layout(rect=(0, 0.12, 1, 1))
    figure.savefig(path, dpi=110)


# %%
# Run
# ---
# Every run trains a model with ``mtt train``, which takes minutes per run on one core,
# so this example is not executed in the documentation build. Its tables, logs and
# figures are in :doc:`/metatrain_measurements`.

if __name__ == "__main__":
    main()
