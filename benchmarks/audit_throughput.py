"""Model evaluations per second of an audit: equiscope's batched orbit vs a naive loop
vs metatomic's SymmetrizedModel, on the same O(3) Lebedev grid of degree 8 (684
rotations and inversions), in one run.

Model: a tiny PET (metatrain, width 32, 2 layers, float32, exported), energies only
(SymmetrizedModel does not give forces), 32-atom fcc copper cells.

- naive: one transformed copy per call, neighbour list recomputed for each copy
  (what a hand-written check does);
- equiscope: ``evaluate_orbit`` with ``--batch-size`` copies per call, the pair list
  computed once per structure and the pair vectors recomputed per copy;
- SymmetrizedModel: ``metatomic.torch.o3.SymmetrizedModel.wrap(..., batch_size=...)``
  returning ``energy`` and ``o3::variance::energy``.

The naive loop can be timed on the first ``--naive-structures`` structures only (its
rate per evaluation does not depend on how many it runs; it is the slow one). The two
batched methods are timed ``--repeats`` times in alternating order and the medians are
compared, so that a drift of the machine's speed does not favour either.

Run: OMP_NUM_THREADS=1 python benchmarks/audit_throughput.py [--structures 100]
     [--repeats 3]
     [--device cuda --batch-size 684]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import time

import ase.build
import torch
from metatomic.torch import ModelEvaluationOptions, ModelOutput, systems_to_torch
from metatomic.torch.o3 import SymmetrizedModel
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists
from tqdm import tqdm

import equiscope as eq
from equiscope_atoms import evaluate_orbit, tiny_pet, transformed_system, wrap_model


def structures(n):
    out = []
    for index in range(n):
        atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
        atoms.rattle(0.08, seed=index)
        out.append(systems_to_torch(atoms, dtype=torch.float32))
    return out


def profile_one_structure(run_equiscope, run_symmetrized, system, grid_size):
    """torch.profiler on the first structure: milliseconds per evaluation in total and in
    PET's GNN layers (``PET::backend::compute_features``, without its preprocessing and
    readout), and operator calls per evaluation."""
    from torch.profiler import ProfilerActivity, profile

    print(f"{'profile, 1 structure':<22}{'ms/eval':>9}{'PET GNN':>13}{'ops/eval':>10}")
    for name, method in (("equiscope", run_equiscope), ("SymmetrizedModel", run_symmetrized)):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            method([system])
            elapsed = time.perf_counter() - start
        events = prof.key_averages()
        pet = sum(e.cpu_time_total for e in events if e.key == "PET::backend::compute_features")
        calls = sum(e.count for e in events if e.key.startswith("aten::"))
        print(
            f"{name:<22}{1e3 * elapsed / grid_size:>9.2f}{1e-3 * pet / grid_size:>10.2f} ms"
            f"{calls / grid_size:>10.1f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=57)
    parser.add_argument("--naive-structures", type=int, help="default: all")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile one structure of each batched method (time in PET's GNN layers)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="alternating timings of the batched methods"
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    torch.set_num_threads(1)
    device = torch.device(args.device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    exported = tiny_pet([29], dtype=torch.float32).export().to(device)
    model = wrap_model(exported).to(device)
    grid = eq.grid("lebedev", degree=8, inversion=True)
    systems = structures(args.structures)
    naive_systems = systems[: args.naive_structures or len(systems)]
    evaluations = {
        "naive loop": grid.size * len(naive_systems),
        "equiscope": grid.size * len(systems),
        "SymmetrizedModel": grid.size * len(systems),
    }
    requests = exported.requested_neighbor_lists()
    options = ModelEvaluationOptions(
        length_unit="angstrom", outputs={"energy": ModelOutput(sample_kind="system")}
    )
    print(f"grid: lebedev degree 8 with inversion, {grid.size} evaluations per structure")
    print(
        f"{len(systems)} structures of 32 atoms (naive loop: {len(naive_systems)}), "
        f"batch size {args.batch_size}, 1 CPU thread, device {device}"
    )
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")

    # warm-up (TorchScript's profiling runs specialise on shapes, so every method warms up
    # on one full structure with its own batch size, as SymmetrizedModel does below)
    evaluate_orbit(model, systems[0], grid, outputs=["energy"], batch_size=args.batch_size)
    for matrix in grid.rotations[:3]:
        copy = get_system_with_neighbor_lists(transformed_system(systems[0], matrix), requests)
        exported([copy.to(device=device)], options, check_consistency=False)

    sync()
    start = time.perf_counter()
    naive = []
    for system in tqdm(naive_systems, desc="naive loop", leave=False, disable=None):
        for matrix in grid.rotations:
            copy = get_system_with_neighbor_lists(transformed_system(system, matrix), requests)
            energy = exported([copy.to(device=device)], options, check_consistency=False)
            naive.append(float(energy["energy"].block().values))
    sync()
    naive_seconds = time.perf_counter() - start

    wrapped = SymmetrizedModel.wrap(
        exported, max_angular_momentum_grid=8, batch_size=args.batch_size
    ).to(device)
    sym_options = ModelEvaluationOptions(
        length_unit="angstrom",
        outputs={
            "energy": ModelOutput(sample_kind="system"),
            "o3::variance::energy": ModelOutput(sample_kind="system"),
        },
    )
    with_lists = get_system_with_neighbor_lists(systems[0], requests).to(device=device)
    wrapped([with_lists], sym_options, check_consistency=False)  # warm-up

    def run_equiscope(batch):
        a2 = []
        for system in tqdm(batch, desc="equiscope", leave=False, disable=None):
            result = evaluate_orbit(
                model, system, grid, outputs=["energy"], batch_size=args.batch_size
            )
            a2.append(eq.equivariance_variance(result.responses["energy"][:, 0, 0], grid, "scalar"))
        return torch.stack(a2).double()

    def run_symmetrized(batch):
        a2 = []
        for system in tqdm(batch, desc="SymmetrizedModel", leave=False, disable=None):
            with_lists = get_system_with_neighbor_lists(system, requests).to(device=device)
            out = wrapped([with_lists], sym_options, check_consistency=False)
            a2.append(float(out["o3::variance::energy"].block().values))
        return torch.tensor(a2, dtype=torch.float64)

    def timed(method):
        sync()
        start = time.perf_counter()
        values = method(systems)
        sync()
        return values, time.perf_counter() - start

    # the two batched methods alternate (equiscope first in odd repeats, second in even
    # ones), so drifts of the machine's speed fall on both; medians over the repeats
    seconds = {"equiscope": [], "SymmetrizedModel": []}
    ratios = []
    for repeat in range(args.repeats):
        order = [("equiscope", run_equiscope), ("SymmetrizedModel", run_symmetrized)]
        for name, method in order if repeat % 2 == 0 else order[::-1]:
            values, elapsed = timed(method)
            seconds[name].append(elapsed)
            if name == "equiscope":
                ours_a2 = values
            else:
                reference = values
        ratios.append(seconds["SymmetrizedModel"][-1] / seconds["equiscope"][-1])
    ours_seconds = statistics.median(seconds["equiscope"])
    sym_seconds = statistics.median(seconds["SymmetrizedModel"])

    if args.profile:
        profile_one_structure(run_equiscope, run_symmetrized, systems[0], grid.size)
    agreement = float(((ours_a2 - reference).abs() / ours_a2).max())
    rates = {
        name: evaluations[name] / elapsed
        for name, elapsed in (
            ("naive loop", naive_seconds),
            ("equiscope", ours_seconds),
            ("SymmetrizedModel", sym_seconds),
        )
    }
    print(f"{'method':<18}{'evals':>8}{'evals/s':>10}{'vs naive':>10}")
    for name, rate in rates.items():
        print(f"{name:<18}{evaluations[name]:>8}{rate:>10.1f}{rate / rates['naive loop']:>9.2f}x")
    print(
        f"equiscope / SymmetrizedModel speed: {rates['equiscope'] / rates['SymmetrizedModel']:.2f}x"
        f" (medians of {args.repeats} alternating repeats; per repeat: "
        + ", ".join(f"{ratio:.2f}x" for ratio in ratios)
        + ")"
    )
    print(
        f"A^2 of the energy, equiscope vs SymmetrizedModel: max relative difference "
        f"{agreement:.1e} (float32 model)"
    )


if __name__ == "__main__":
    main()
