"""Which base grid makes the default estimate cheapest? Per-copy variance of A^2.

The default audit turns a base grid by Haar-random elements (replicates) and estimates
A^2 without bias from K replicates (:mod:`equiscope.metrics.replicates`). For a base of
``m`` elements, ``v = K Var(A^2 estimate)`` hardly depends on K, and the copies needed
for a relative interval half-width ``p`` on A are ``K m`` with
``K = t^2 v / (4 p^2 A^4)``. This script measures ``v`` (jackknife over K replicates)
for several bases on metatrain's default PET (untrained, seeded, float32, exported) and
prints ``v m / A^4`` (lower is cheaper per copy) and the copies needed for p = 0.1.

    OMP_NUM_THREADS=1 python benchmarks/estimate_bases.py [--atoms 32] [--replicates 12]
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_scale import build_model, copper

BASES = {
    "icosahedral+inv (120)": ("icosahedral", True),
    "icosahedral, random inversion (60)": ("icosahedral", False),
    "octahedral+inv (48)": ("octahedral", True),
    "octahedral, random inversion (24)": ("octahedral", False),
    "tetrahedral+inv (24)": ("tetrahedral", True),
    "tetrahedral, random inversion (12)": ("tetrahedral", False),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=32)
    parser.add_argument("--replicates", type=int, default=12)
    parser.add_argument("--bases", default=";".join(BASES))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    import equiscope as eq
    from equiscope.metrics.replicates import ReplicateEstimate, haar_elements, oriented
    from equiscope_atoms import MetatomicAdapter, load_model, read_structures

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pet.pt"
        build_model(path)
        import ase.io

        ase.io.write(str(Path(folder) / "d.xyz"), copper(args.atoms, seed=0))
        model = load_model(str(path))
        (sample,) = read_structures(str(Path(folder) / "d.xyz"), atomic_types=model.atomic_types)
    adapter = MetatomicAdapter(model)
    outputs = adapter.outputs([sample], None)
    print(f"{args.atoms} atoms, K = {args.replicates}, outputs {outputs}", flush=True)
    for label in args.bases.split(";"):
        name, inversion = BASES[label]
        base = eq.grid(name, inversion=inversion)
        generator = torch.Generator().manual_seed(7)
        estimates = {}
        start = time.perf_counter()
        for element in haar_elements(args.replicates, generator, improper=True):
            grid = oriented(base, element)
            result = adapter.evaluate(sample, grid, outputs=outputs, layers=[], max_lambda=1)
            for out, responses in result.responses.items():
                estimates.setdefault(out, ReplicateEstimate(result.kinds[out].irrep, 1))
                estimates[out].add(responses, grid)
        seconds = time.perf_counter() - start
        parts = []
        for out, estimate in estimates.items():
            e = estimate.estimate()
            v = e.a2_variance * e.k
            per_copy = v * base.size / max(e.a2, 1e-300) ** 2
            copies = 1.96**2 * per_copy / (4 * 0.1**2)
            parts.append(
                f"{out}: A={math.sqrt(max(e.a2, 0)):.4g} v*m/A^4={per_copy:.3g} "
                f"copies(p=0.1)~{copies:.0f}"
            )
        print(f"{label:36s} {seconds:6.1f}s  " + " | ".join(parts), flush=True)


if __name__ == "__main__":
    main()
