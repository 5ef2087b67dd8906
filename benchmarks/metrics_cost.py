"""Cost of the metrics next to the model evaluations that produce their inputs.

Goal (foundation issue): the spectrum B up to lambda = 6 and the variance A^2 for
10^3 grid points x 10^3 samples x 64 channels cost < 5 % of the PET forward passes
that produce those responses.

"Samples" are taken as atoms (node-feature rows; PET's d_node = 64 channels at
width 32): 10^3 atoms = 31.25 structures of 32 atoms, i.e. 962 x 31.25 structure
evaluations. Counting samples as structures would make the ratio 32x smaller.

Run: OMP_NUM_THREADS=1 python benchmarks/metrics_cost.py
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import platform
import time

import torch

torch.set_num_threads(1)

import ase.build  # noqa: E402
from metatomic.torch import systems_to_torch  # noqa: E402

import equiscope as eq  # noqa: E402
from equiscope_atoms import evaluate_orbit, tiny_pet, wrap_model  # noqa: E402

N_SAMPLES, N_CHANNELS, MAX_LAMBDA = 1000, 64, 6
ATOMS_PER_STRUCTURE = 32


def timed(function, repeats=1):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    grid = eq.grid("lebedev", degree=2 * MAX_LAMBDA)  # SO(3), 962 rotations
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, threads {torch.get_num_threads()}"
    )
    print(
        f"grid: {grid.name} degree {2 * MAX_LAMBDA}, {grid.size} rotations, "
        f"exact_degree {grid.exact_degree}"
    )

    # --- the model evaluations: PET node features on the orbit of a 32-atom cell
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    atoms.rattle(0.05, seed=0)
    system = systems_to_torch(atoms, dtype=torch.float32)
    model = wrap_model(tiny_pet([29], dtype=torch.float32))
    probe = eq.grid("random", n=64, seed=0)
    evaluate_orbit(model, system, eq.grid("random", n=8, seed=1), outputs=["energy"])  # warm up
    seconds, _ = timed(
        lambda: evaluate_orbit(
            model, system, probe, outputs=["energy"], layers=["gnn_layers.1_node"], max_lambda=0
        ),
        repeats=2,
    )
    channels = model.module.hypers["d_node"]
    per_structure = seconds / probe.size
    n_structures = N_SAMPLES / ATOMS_PER_STRUCTURE
    model_seconds = per_structure * grid.size * n_structures
    print(
        f"PET forward: {1e3 * per_structure:.2f} ms per 32-atom structure "
        f"({channels} node channels); {grid.size} x {n_structures:.2f} structures "
        f"= {model_seconds:.1f} s"
    )

    # --- the metrics on responses of the same size
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(grid.size, N_SAMPLES, N_CHANNELS, generator=generator)
    spectrum_seconds, _ = timed(lambda: eq.sector_norms(features, grid, MAX_LAMBDA), 2)
    vectors = torch.randn(grid.size, N_SAMPLES, 3, generator=generator)
    variance_seconds, _ = timed(lambda: eq.equivariance_variance(vectors, grid, "vector"), 2)
    metrics_seconds = spectrum_seconds + variance_seconds
    print(
        f"spectrum B (lambda <= {MAX_LAMBDA}), {grid.size} x {N_SAMPLES} x "
        f"{N_CHANNELS}: {spectrum_seconds:.2f} s"
    )
    print(
        f"variance A^2 of a vector per sample, {grid.size} x {N_SAMPLES}: {variance_seconds:.3f} s"
    )
    ratio = metrics_seconds / model_seconds
    print(
        f"metrics / model = {metrics_seconds:.2f} s / {model_seconds:.1f} s "
        f"= {100 * ratio:.2f} % (goal < 5 %)"
    )


if __name__ == "__main__":
    main()
