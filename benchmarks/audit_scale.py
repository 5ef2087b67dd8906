"""Memory and time of an audit at production scale, against plain evaluations.

Model: metatrain's default PET hypers (2.9 M parameters; untrained, seeded, float32,
exported). Structures: rattled fcc copper cells of 32, 108, 256, 500 and 1,000 atoms.

``orbit`` mode (default): per size, in a fresh process each (so that its peak resident
set is its own), ``evaluate_orbit`` on the octahedral grid with inversion (48 copies),
energy + forces + stress, default options (copies per call chosen by measurement
within the default memory budget); then, in another fresh process, plain single
evaluations of energy + forces + stress with metatomic-ase's ``MetatomicCalculator``
on the same exported model (rattled anew before each call; one warm-up call not
timed). Reports the peak RSS of the audit process, the audit's wall time, the mean
time of a plain evaluation, and the ratio of the audit time to 48 plain evaluations.

``default`` mode: the default ``equiscope audit MODEL DATA`` (no ``--grid``: the
unbiased estimate to 10 % precision) of the same untrained default-size PET, as a user
runs it (a fresh process: imports, model loading, reading, the audit and the report),
on 24 cells of 8 atoms and on one 32-atom cell, with each ``--estimate-grid`` of
``--bases``; prints the wall time, the start-up and report time, and A with its 95 %
interval per output. ``--precision 0.02`` gives reference values to compare with.

``head`` mode: per size, in a fresh process each, the same PET behind the default
symmetrised head (``symmetrize_model`` with default options: average over the
octahedral group with inversion, 48 copies, ``atoms_per_call`` 512), saved and loaded,
runs ONE MD step, metatomic-ase's ``MetatomicCalculator`` energy + forces + stress
(one warm-up step, then 3 timed steps up to 256 atoms and 1 above, rattled before
each). Reports the peak RSS of that process, the time per step, the copies per inner
call, and the ratio of a step to 48 plain evaluations (measured as in ``orbit`` mode).

Run (niced: timings on a shared machine are noisy):
    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/audit_scale.py [--sizes 32,108]
    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/audit_scale.py --mode default [--trained]
    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/audit_scale.py --mode head [--sizes 32]
Writes docs/measurements/audit_scale_cpu_1thread.txt (or audit_default_cpu_1thread.txt,
head_scale_cpu_1thread.txt) and docs/figures/audit_scale.png.
"""

import os

os.environ["OMP_NUM_THREADS"] = "1"

import argparse
import itertools
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPEATS = {32: (2, 2, 2), 108: (3, 3, 3), 256: (4, 4, 4), 500: (5, 5, 5), 1000: None}


def copper(n_atoms: int, seed: int):
    """A rattled fcc copper cell of ``n_atoms`` (1,000: a 10 x 10 x 10 primitive cell)."""
    import ase.build

    if n_atoms == 1000:
        atoms = ase.build.bulk("Cu", "fcc", a=3.61).repeat((10, 10, 10))
    elif n_atoms == 8:
        atoms = ase.build.bulk("Cu", "fcc", a=3.61).repeat((2, 2, 2))
    else:
        atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat(REPEATS[n_atoms])
    atoms.rattle(0.05, seed=seed)
    return atoms


def build_model(path: Path) -> None:
    """metatrain's default PET hypers for copper, untrained (seed 0), float32, exported."""
    import torch
    from metatrain.pet import PET
    from metatrain.utils.architectures import get_default_hypers
    from metatrain.utils.data import DatasetInfo
    from metatrain.utils.data.target_info import get_energy_target_info

    hypers = get_default_hypers("pet")["model"]
    info = DatasetInfo(
        length_unit="Angstrom",
        atomic_types=[29],
        targets={"energy": get_energy_target_info("energy", {"unit": "eV"})},
    )
    torch.manual_seed(0)
    PET(hypers, info).to(torch.float32).eval().export().save(str(path))


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_orbit(model_path: str, n_atoms: int, batch_size: int | None) -> dict:
    """In this (fresh) process: one octahedral orbit with forces and stress."""
    import torch
    from metatomic.torch import systems_to_torch

    import equiscope as eq
    from equiscope_atoms import load_model
    from equiscope_atoms._batching import BatchPlanner
    from equiscope_atoms.orbit import evaluate_orbit

    torch.set_num_threads(1)
    model = load_model(model_path)
    system = systems_to_torch(copper(n_atoms, seed=1), dtype=torch.float32)
    grid = eq.grid("octahedral", inversion=True)
    before = peak_rss()
    planner = BatchPlanner(batch_size=batch_size)
    start = time.perf_counter()
    result = evaluate_orbit(
        model, system, grid, outputs=["energy"], forces=True, stress=True, planner=planner
    )
    seconds = time.perf_counter() - start
    assert result.responses["forces"].shape == (grid.size, n_atoms, 3)
    plan = next(iter(planner.plans.values()), None)
    return {
        "seconds": seconds,
        "copies": grid.size,
        "calls": planner.calls,
        "chosen": planner.batch_size if plan is None else plan.best,
        "budget": planner.max_memory,
        "peak_rss": peak_rss(),
        "rss_before": before,
    }


def run_plain(model_path: str, n_atoms: int, evaluations: int) -> dict:
    """In this (fresh) process: plain MetatomicCalculator energy + forces + stress."""
    import torch
    from metatomic_ase import MetatomicCalculator

    torch.set_num_threads(1)
    calculator = MetatomicCalculator(model_path)
    atoms = copper(n_atoms, seed=1)
    atoms.calc = calculator
    times = []
    for index in range(evaluations + 1):  # the first call is a warm-up
        atoms.rattle(0.001, seed=100 + index)
        start = time.perf_counter()
        atoms.get_potential_energy()
        atoms.get_forces()
        atoms.get_stress()
        times.append(time.perf_counter() - start)
    return {"seconds": times[1:], "peak_rss": peak_rss()}


def run_head(model_path: str, n_atoms: int, steps: int, atoms_per_call: int | None) -> dict:
    """In this (fresh) process: MD steps (energy + forces + stress) through the
    default symmetrised head, saved and loaded as an engine would."""
    import torch
    from metatomic.torch import load_atomistic_model
    from metatomic_ase import MetatomicCalculator

    from equiscope_atoms._chunks import copies_per_call
    from equiscope_atoms.heads import symmetrize_model

    torch.set_num_threads(1)
    options = {} if atoms_per_call is None else {"atoms_per_call": atoms_per_call}
    head = symmetrize_model(load_atomistic_model(model_path), **options)  # the defaults
    copies = int(head.module.rotations.shape[0])
    atoms_per_call = int(head.module.atoms_per_call)
    path = Path(model_path).with_name(f"head_{n_atoms}.pt")
    head.save(str(path))
    del head
    atoms = copper(n_atoms, seed=1)
    atoms.calc = MetatomicCalculator(str(path))
    times = []
    for index in range(steps + 1):  # the first step is a warm-up
        atoms.rattle(0.001, seed=100 + index)
        start = time.perf_counter()
        atoms.get_potential_energy()
        atoms.get_forces()
        atoms.get_stress()
        times.append(time.perf_counter() - start)
    return {
        "seconds": times[1:],
        "peak_rss": peak_rss(),
        "copies": copies,
        "atoms_per_call": atoms_per_call,
        "per_call": copies_per_call(copies, n_atoms, atoms_per_call),
    }


def head_mode(args) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    lines = [
        "head_scale: one MD step (metatomic_ase.MetatomicCalculator energy + forces + "
        "stress) through the default symmetrised head (symmetrize_model defaults: average, "
        "octahedral grid with inversion, 48 copies, atoms_per_call "
        f"{args.atoms_per_call or 'default'}), saved and loaded; "
        "metatrain default PET (untrained, float32, exported)",
        f"machine: {machine()}",
        "step s: mean of the timed steps after one warm-up step; plain: the same calculator "
        "on the raw model, mean of N timed calls (after one warm-up) times 48",
        "",
        f"{'atoms':>6} {'peak RSS':>9} {'step s':>9} {'steps':>6} {'plain s/eval':>13} "
        f"{'N':>3} {'ratio':>6} {'copies/call':>12}",
    ]
    print("\n".join(lines), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / "pet_default.pt"
        build_model(model)
        for n_atoms in sizes:
            steps = 3 if n_atoms <= 256 else 1
            where = ["--atoms", str(n_atoms), "--model", str(model)]
            extra = (
                []
                if args.atoms_per_call is None
                else ["--atoms-per-call", str(args.atoms_per_call)]
            )
            head = child(["--child", "head", *where, "--steps", str(steps), *extra])
            n_plain = args.plain if n_atoms <= 256 else max(4, args.plain // 3)
            plain = child(["--child", "plain", *where, "--plain", str(n_plain)])
            per_eval = sum(plain["seconds"]) / len(plain["seconds"])
            per_step = sum(head["seconds"]) / len(head["seconds"])
            ratio = per_step / (head["copies"] * per_eval)
            row = {
                "atoms": n_atoms,
                **head,
                "step": per_step,
                "plain_per_eval": per_eval,
                "plain_peak_rss": plain["peak_rss"],
                "ratio": ratio,
            }
            rows.append(row)
            line = (
                f"{n_atoms:>6} {head['peak_rss'] / 1e9:>7.2f}GB {per_step:>9.2f} {steps:>6} "
                f"{per_eval:>13.3f} {n_plain:>3} {ratio:>6.2f} {head['per_call']:>12}"
            )
            lines.append(line)
            print(line, flush=True)
    suffix = "" if args.atoms_per_call is None else f"_atoms{args.atoms_per_call}"
    out = ROOT / "docs" / "measurements" / f"head_scale_cpu_1thread{suffix}.txt"
    out.write_text("\n".join(lines) + "\n" + json.dumps(rows) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


def run_default(
    model_path: str,
    data: str,
    estimate_grid: str,
    precision: float,
    max_replicates: int,
    seed: int = 0,
) -> dict:
    """The default ``equiscope audit MODEL DATA`` as a user runs it, in a fresh process
    (imports, model loading, reading, the audit and writing the report): wall time,
    the audit's own time, the evaluations, and each output's A with its interval."""
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable, "-m", "equiscope.cli", "audit", model_path, data, "-o", out,
            "--estimate-grid", estimate_grid, "--precision", str(precision),
            "--max-replicates", str(max_replicates), "--seed", str(seed),
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=os.environ)
        seconds = time.perf_counter() - start
        report = json.loads((Path(out) / "report.json").read_text())
    return {
        "seconds": seconds,
        "audit_seconds": report["seconds"],
        "outputs": report["outputs"],
        "copies": report["grid"]["copies"],
    }


def child(args_list: list[str]) -> dict:
    command = [sys.executable, __file__, *args_list]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return (
        f"{cpu}, {os.cpu_count()} cores (shared), 1 torch thread, torch {torch.__version__}, "
        f"Python {platform.python_version()}"
    )


def orbit_mode(args) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    lines = [
        "audit_scale: evaluate_orbit, octahedral grid with inversion (48 copies), energy + "
        "forces + stress, default options; metatrain default PET (untrained, float32, exported)",
        f"machine: {machine()}",
        "plain: metatomic_ase.MetatomicCalculator energy+forces+stress, mean of N timed calls "
        "(after one warm-up) times 48",
        "",
        f"{'atoms':>6} {'peak RSS':>9} {'audit s':>9} {'plain s/eval':>13} {'N':>3} "
        f"{'ratio':>6} {'copies/call':>12} {'calls':>6} {'budget':>8}",
    ]
    print("\n".join(lines), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        model = Path(folder) / "pet_default.pt"
        build_model(model)
        for n_atoms in sizes:
            extra = [] if args.batch_size is None else ["--batch-size", str(args.batch_size)]
            audit = child(
                ["--child", "orbit", "--atoms", str(n_atoms), "--model", str(model), *extra]
            )
            n_plain = args.plain if n_atoms <= 256 else max(4, args.plain // 3)
            where = ["--atoms", str(n_atoms), "--model", str(model)]
            plain = child(["--child", "plain", *where, "--plain", str(n_plain)])
            per_eval = sum(plain["seconds"]) / len(plain["seconds"])
            ratio = audit["seconds"] / (audit["copies"] * per_eval)
            row = {"atoms": n_atoms, **audit, "plain_per_eval": per_eval, "ratio": ratio}
            rows.append(row)
            line = (
                f"{n_atoms:>6} {audit['peak_rss'] / 1e9:>7.2f}GB {audit['seconds']:>9.1f} "
                f"{per_eval:>13.3f} {n_plain:>3} {ratio:>6.2f} {audit['chosen']:>12} "
                f"{audit['calls']:>6} {audit['budget'] / 1e9:>6.1f}GB"
            )
            lines.append(line)
            print(line, flush=True)
    suffix = "" if args.batch_size is None else f"_batch{args.batch_size}"
    out = ROOT / "docs" / "measurements" / f"audit_scale_cpu_1thread{suffix}.txt"
    out.write_text("\n".join(lines) + "\n" + json.dumps(rows) + "\n")
    if args.batch_size is None:
        figure(rows, ROOT / "docs" / "figures" / "audit_scale.png")
    print(f"wrote {out.relative_to(ROOT)}")


def figure(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    atoms = [r["atoms"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.plot(atoms, [r["peak_rss"] / 1e9 for r in rows], "o-")
    left.set_xlabel("atoms")
    left.set_ylabel("peak RSS of the audit (GB)")
    left.set_xscale("log")
    right.plot(atoms, [r["ratio"] for r in rows], "o-")
    right.axhline(1.15, color="grey", ls="--", label="target 1.15")
    right.set_xlabel("atoms")
    right.set_ylabel("audit time / 48 plain evaluations")
    right.set_xscale("log")
    right.legend()
    fig.suptitle("Default PET, octahedral orbit (48 copies), E+F+S, 1 CPU thread")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


TRAINING = """\
seed: 0
architecture:
  name: pet
  training:
    num_epochs: 2
    batch_size: 4
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
        key: stress
validation_set: 0.125
test_set: 0.0
"""


def trained_model(folder: Path) -> Path:
    """metatrain's default PET briefly trained (``mtt train``, 2 epochs, default hypers
    and precision) on 48 EMT-labelled 8-atom copper cells; the exported model."""
    from equiscope_atoms.demo import generate_copper, run_mtt_train

    folder.mkdir(parents=True, exist_ok=True)
    data = generate_copper(folder / "train.xyz", 48, seed=0)
    _, exported = run_mtt_train(folder, TRAINING.format(data=data.resolve()))
    return exported


def default_mode(args) -> None:
    import ase.io

    state = "briefly trained (mtt train, 2 epochs)" if args.trained else "untrained"
    lines = [
        "audit_default: `equiscope audit MODEL DATA` in a fresh process (the default "
        f"estimate, precision {args.precision}; wall time includes imports, loading and "
        f"writing the report), metatrain default PET ({state}, exported), "
        "rattled fcc copper",
        f"machine: {machine()}",
        "",
    ]
    print("\n".join(lines), flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        if args.trained:
            start = time.perf_counter()
            model = trained_model(folder / "train")
            lines.append(f"training: {time.perf_counter() - start:.0f} s")
        else:
            model = folder / "pet_default.pt"
            build_model(model)
        cases = [("24 cells of 8 atoms", [copper(8, seed=s) for s in range(24)], 120)]
        cases.append(("1 cell of 32 atoms", [copper(32, seed=0)], 30))
        cases = [c for c in cases if args.cases in ("all", c[0].split()[0])]
        seeds = [int(s) for s in args.seeds.split(",")]
        for (label, frames, target), base, seed in itertools.product(
            cases, args.bases.split(","), seeds
        ):
            data = folder / "data.xyz"
            ase.io.write(str(data), frames)
            report = run_default(
                str(model), str(data), base, args.precision, args.max_replicates, seed
            )
            lines.append(
                f"{label}, --estimate-grid {base}, --seed {seed}: {report['seconds']:.1f} s "
                f"(target <= "
                f"{target} s; start-up and report {report['seconds'] - report['audit_seconds']:.1f}"
                f" s), {report['copies']} evaluations"
            )
            for name, output in report["outputs"].items():
                low, high = output["equivariance_rmse_ci95"]
                lines.append(
                    f"  {name}: A = {output['equivariance_rmse']:.4g} [{low:.4g}, {high:.4g}]"
                    f" ({output['estimate']['replicates'][1]} replicates)"
                )
            rows.append({"case": label, "base": base, "seed": seed, **report})
            print("\n".join(lines[-1 - len(report["outputs"]) :]), flush=True)
    suffix = "" if args.precision == 0.1 else f"_precision{args.precision}"
    suffix += "_trained" if args.trained else ""
    suffix += "" if args.seeds == "0" else "_seeds"
    suffix += "" if args.cases == "all" else f"_{args.cases}"
    out = ROOT / "docs" / "measurements" / f"audit_default_cpu_1thread{suffix}.txt"
    out.write_text("\n".join(lines) + "\n" + json.dumps(rows, default=str) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["orbit", "default", "head"], default="orbit")
    parser.add_argument("--sizes", default="32,108,256,500,1000")
    parser.add_argument("--plain", type=int, default=48, help="plain evaluations (/3 above 256)")
    parser.add_argument("--batch-size", type=int, help="fixed copies per call (default: auto)")
    parser.add_argument("--child", choices=["orbit", "plain", "head"], help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument(
        "--atoms-per-call", type=int, help="head mode: the head's atoms_per_call (default: its own)"
    )
    parser.add_argument("--atoms", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument(
        "--bases", default="auto,octahedral,icosahedral", help="default mode: --estimate-grid"
    )
    parser.add_argument(
        "--precision", type=float, default=0.1, help="default mode: --precision (0.02: reference)"
    )
    parser.add_argument(
        "--max-replicates", type=int, default=48, help="default mode: --max-replicates"
    )
    parser.add_argument(
        "--trained", action="store_true", help="default mode: a briefly trained default PET"
    )
    parser.add_argument("--seeds", default="0", help="default mode: --seed values")
    parser.add_argument(
        "--cases", choices=["all", "24", "1"], default="all", help="default mode: which data"
    )
    args = parser.parse_args()
    if args.child == "orbit":
        print(json.dumps(run_orbit(args.model, args.atoms, args.batch_size)))
    elif args.child == "plain":
        print(json.dumps(run_plain(args.model, args.atoms, args.plain)))
    elif args.child == "head":
        print(json.dumps(run_head(args.model, args.atoms, args.steps, args.atoms_per_call)))
    elif args.mode == "orbit":
        orbit_mode(args)
    elif args.mode == "head":
        head_mode(args)
    else:
        default_mode(args)


if __name__ == "__main__":
    main()
