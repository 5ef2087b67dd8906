"""Wall time of ``equiscope audit`` in one process vs sharded over processes with
``torchrun``, on the same model, data and grid, in one run; checks that the two
reports agree.

Model: a tiny PET (metatrain, width 32, 2 layers, float32, exported); data:
``--structures`` rattled 32-atom fcc copper cells with EMT labels; grid: the
octahedral group with inversion (48 copies) by default, energy, forces and stress.
Each process runs one thread. The single-process audit is the peer: the sharded
one adds the same per-structure sums, so only the wall time may differ.

Run: OMP_NUM_THREADS=1 python benchmarks/audit_processes.py [--structures 16]
     [--processes 2] [--grid octahedral]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ase.build
import ase.io
import torch

from equiscope_atoms import tiny_pet
from equiscope_atoms.demo import with_emt_labels


def write_cells(path: Path, n: int) -> None:
    frames = []
    for index in range(n):
        atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
        atoms.rattle(0.08, seed=index)
        frames.append(with_emt_labels(atoms))
    ase.io.write(str(path), frames, format="extxyz")


def timed(command: list[str], environment: dict) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{result.stderr[-2000:]}")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=16)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--grid", default="octahedral")
    parser.add_argument("--batch-size", type=int, default=48)
    args = parser.parse_args()
    if args.structures < 1 or args.processes < 2:
        parser.error("--structures must be at least 1 and --processes at least 2")
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model = folder / "pet.pt"
        tiny_pet([29], dtype=torch.float32).export().save(str(model))
        data = folder / "cu.xyz"
        write_cells(data, args.structures)
        audit = [
            "-m",
            "equiscope.cli",
            "audit",
            str(model),
            str(data),
            "--grid",
            args.grid,
            "--batch-size",
            str(args.batch_size),
        ]
        one = timed([sys.executable, *audit, "-o", str(folder / "one")], environment)
        sharded = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        sharded += ["--nproc-per-node", str(args.processes)]
        many = timed([*sharded, *audit, "-o", str(folder / "many")], environment)
        reports = [json.loads((folder / n / "report.json").read_text()) for n in ("one", "many")]
    print(
        f"equiscope audit, {args.structures} cells of 32 atoms, {args.grid} grid "
        f"({reports[0]['grid']['size']} copies), tiny PET float32, 1 thread per process"
    )
    print(f"{'processes':<12}{'wall s':>9}{'speed-up':>10}")
    print(f"{1:<12}{one:>9.1f}{1.0:>9.2f}x")
    print(f"{args.processes:<12}{many:>9.1f}{one / many:>9.2f}x")
    relative, absolute = [], []  # RMSEs relative; spectra (fractions of 1) absolute
    for name, one_output in reports[0]["outputs"].items():
        many_output = reports[1]["outputs"][name]
        pairs = [(one_output["equivariance_rmse"], many_output["equivariance_rmse"])]
        accuracy = one_output["accuracy"]
        pairs += [(accuracy[k], many_output["accuracy"][k]) for k in accuracy if k.endswith("rmse")]
        relative += [abs(a - b) / max(abs(a), abs(b), 1e-300) for a, b in pairs]
        spectrum = many_output["spectrum"]
        absolute += [abs(v - spectrum[k]) for k, v in one_output["spectrum"].items()]
    print(
        "sharded vs one process: equivariance and accuracy RMSEs differ by at most "
        f"{max(relative):.1e} (relative), spectra by {max(absolute):.1e}"
    )
    if max(relative) > 1e-6 or max(absolute) > 1e-6:  # float32 round-off may differ
        sys.exit("the sharded report differs from the single-process report")


if __name__ == "__main__":
    main()
