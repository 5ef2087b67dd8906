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
rate per evaluation does not depend on how many it runs; it is the slow one).

Run: OMP_NUM_THREADS=1 python benchmarks/audit_throughput.py [--structures 100]
     [--device cuda --batch-size 684]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=57)
    parser.add_argument("--naive-structures", type=int, help="default: all")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
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

    # warm-up (TorchScript profiling runs)
    evaluate_orbit(model, systems[0], eq.grid("octahedral"), outputs=["energy"])
    for matrix in grid.rotations[:3]:
        copy = get_system_with_neighbor_lists(transformed_system(systems[0], matrix), requests)
        exported([copy.to(device=device)], options, check_consistency=False)

    sync()
    start = time.perf_counter()
    naive = []
    for system in tqdm(naive_systems, desc="naive loop", leave=False):
        for matrix in grid.rotations:
            copy = get_system_with_neighbor_lists(transformed_system(system, matrix), requests)
            energy = exported([copy.to(device=device)], options, check_consistency=False)
            naive.append(float(energy["energy"].block().values))
    sync()
    naive_seconds = time.perf_counter() - start

    start = time.perf_counter()
    ours = []
    for system in tqdm(systems, desc="equiscope", leave=False):
        result = evaluate_orbit(model, system, grid, outputs=["energy"], batch_size=args.batch_size)
        ours.append(eq.equivariance_variance(result.responses["energy"][:, 0, 0], grid, "scalar"))
    sync()
    ours_seconds = time.perf_counter() - start

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
    sync()
    start = time.perf_counter()
    reference = []
    for system in tqdm(systems, desc="SymmetrizedModel", leave=False):
        with_lists = get_system_with_neighbor_lists(system, requests).to(device=device)
        out = wrapped([with_lists], sym_options, check_consistency=False)
        reference.append(float(out["o3::variance::energy"].block().values))
    sync()
    sym_seconds = time.perf_counter() - start

    ours_a2 = torch.stack(ours).double()
    agreement = float(((ours_a2 - torch.tensor(reference)).abs() / ours_a2).max())
    rates = {
        name: evaluations[name] / seconds
        for name, seconds in (
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
    )
    print(
        f"A^2 of the energy, equiscope vs SymmetrizedModel: max relative difference "
        f"{agreement:.1e} (float32 model)"
    )


if __name__ == "__main__":
    main()
