"""The ``equiscope`` command line.

Exit codes: 0 success, 2 bad input (one line naming the problem), 1 other errors.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")


class BadInput(Exception):
    """Raised for user errors: reported in one line, exit code 2."""


def require_at_least(*checks: tuple[str, int, int]) -> None:
    """``(option, value, minimum)`` triples: a one-line ``BadInput`` for the first
    value below its minimum."""
    for option, value, minimum in checks:
        if value < minimum:
            raise BadInput(f"{option} must be at least {minimum}, got {value}")


def output_folder(path, *, label: str = "output") -> Path:
    """``path`` as a report folder: it may not exist yet, but must not be a file."""
    output = Path(path)
    if output.exists() and not output.is_dir():
        raise BadInput(f"{label} {output} exists and is not a folder")
    return output


def _grid_command(args) -> int:
    from .grids import grid

    try:
        g = grid(
            args.name,
            degree=args.degree,
            n=args.n,
            seed=args.seed,
            inversion=args.inversion,
        )
    except ValueError as error:
        raise BadInput(str(error)) from None
    print(f"grid {g.name} on {g.group.name}: {g.size} elements")
    print(f"  averages out exactly: lambda in {list(g.averages_out)} (checked to {g.check_degree})")
    print(
        f"  mean exact to lambda={g.mean_exact_degree}; products (A, B) exact to "
        f"lambda={g.exact_degree}"
    )
    print(f"  weights: min {float(g.weights.min()):.3e}, max {float(g.weights.max()):.3e}")
    return 0


def _demo_command(args) -> int:
    import torch

    torch.set_num_threads(1)
    from equiscope_atoms.demo import run_demo, summary

    require_at_least(
        ("--train", args.train, 8), ("--audit", args.audit, 1), ("--epochs", args.epochs, 1)
    )
    output = output_folder(args.output)
    reports = run_demo(
        output, n_train=args.train, n_audit=args.audit, epochs=args.epochs, seed=args.seed
    )
    print(summary(reports, output))
    return 0


def _parse_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


def _audit_grid(args):
    from .grids import grid

    if args.grid == "auto":
        return None
    try:
        return grid(
            args.grid,
            degree=args.degree,
            n=args.n,
            seed=args.seed,
            inversion=not args.no_inversion,
        )
    except ValueError as error:
        raise BadInput(f"--grid: {error}") from None


def _audit_command(args) -> int:
    import torch

    torch.set_num_threads(1)
    from equiscope_jets.cli import audit_jet_model, is_tagger

    from . import shards as sharding

    if is_tagger(args.model):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise BadInput(
                f"{args.model}: jet audits run in one process; torchrun shards atomistic "
                "audits only"
            )
        for option in ("labels", "totals"):
            if getattr(args, option) is not None:
                raise BadInput(f"--{option}: for atomistic models; {args.model} is a jet tagger")
    jet_result = audit_jet_model(args)  # None unless MODEL is a jet tagger checkpoint
    if jet_result is not None:
        return jet_result
    try:
        from equiscope_atoms import (
            AuditOptionError,
            DataError,
            ModelLoadError,
            audit,
            load_model,
            read_structures,
        )
        from equiscope_atoms.report import markdown_summary, write_report
    except ImportError as error:  # pragma: no cover - installed together
        raise BadInput(f"the atomistic adapter is not installed ({error})") from None

    if args.structures is not None:
        require_at_least(("--structures", args.structures, 1))
    if args.max_lambda is not None and args.max_lambda < 0:
        raise BadInput(f"--max-lambda must be non-negative, got {args.max_lambda}")
    output = output_folder(args.output)
    grid = _audit_grid(args)
    layers = {"all": None, "none": []}.get(args.layers, _parse_list(args.layers))
    labels = _parse_labels(args.labels)
    shards = sharding.Shards()
    try:
        try:
            shards, device = sharding.from_environment(args.device)
        except ValueError as error:
            raise BadInput(f"--device: {error}") from None
        try:
            model = load_model(args.model)
            if args.dtype is not None:
                if model.exported:
                    raise BadInput(
                        "--dtype: an exported model runs in the dtype it was exported in"
                    )
                model.module = model.module.to(getattr(torch, args.dtype))
                model.dtype = getattr(torch, args.dtype)
            model.totals = set(_parse_list(args.totals) or [])
            model.to(device)
            structures = read_structures(
                args.data,
                atomic_types=model.atomic_types,
                limit=args.structures,
                labels=labels,
            )
            report = audit(
                model,
                structures,
                grid=grid,
                max_lambda=args.max_lambda,
                outputs=_parse_list(args.outputs),
                layers=layers,
                batch_size=args.batch_size,
                convergence_structures=args.convergence_structures,
                shards=shards,
            )
        except (ModelLoadError, DataError, AuditOptionError) as error:
            raise BadInput(str(error)) from None
    finally:
        sharding.close(shards)
    if not shards.leader:
        return 0
    write_report(report, output)
    summary = markdown_summary(report)
    print(summary.split("## Where the symmetry breaks")[0].rstrip())
    processes = f", {shards.size} processes" if shards.distributed else ""
    print(f"\nreport: {output / 'report.md'} (and report.json, figures{processes})")
    return 0


def _split_outside_brackets(text: str) -> list[str]:
    """``text`` split at the commas that are not inside ``[...]`` (output names of
    multi-block outputs hold commas: ``name[o3_lambda=2,o3_sigma=1]``)."""
    items, depth, current = [], 0, ""
    for character in text:
        depth += {"[": 1, "]": -1}.get(character, 0)
        if character == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += character
    return [item.strip() for item in [*items, current] if item.strip()]


def _parse_labels(text: str | None) -> dict[str, str]:
    """``--labels OUTPUT=KEY,...`` as ``{output: key}`` (a key holds no ``=``)."""
    labels = {}
    for item in _split_outside_brackets(text or ""):
        output, equals, key = item.rpartition("=")
        if not (equals and output.strip() and key.strip()):
            raise BadInput(f"--labels: expected OUTPUT=KEY, got '{item}'")
        labels[output.strip()] = key.strip()
    return labels


def _symmetrize_command(args) -> int:
    import torch

    torch.set_num_threads(1)
    from equiscope_atoms import ModelLoadError, load_model
    from equiscope_atoms.heads import HEAD_MODES, symmetrize_model

    from .grids import grid

    if args.mode not in HEAD_MODES:
        raise BadInput(f"--mode {args.mode}: expected one of {', '.join(HEAD_MODES)}")
    output = Path(args.output)
    if output.suffix != ".pt":
        raise BadInput(f"-o {output}: the symmetrised model is saved as a .pt file")
    quadrature = None
    if args.mode == "random" and args.n_inplane is not None:
        raise BadInput("--n-inplane: mode random draws one frame per call and has no grid")
    if args.mode != "random":
        try:
            quadrature = grid(
                args.grid, degree=args.degree, n_inplane=args.n_inplane, inversion=args.inversion
            )
        except ValueError as error:
            raise BadInput(f"--grid: {error}") from None
    try:
        model = load_model(args.model)
    except ModelLoadError as error:
        raise BadInput(str(error)) from None
    if not model.exported:
        raise BadInput(f"{args.model}: export the checkpoint first (mtt export), then symmetrise")
    head = symmetrize_model(
        model.module,
        mode=args.mode,
        grid=quadrature,
        seed=args.seed,
        inversion=args.inversion,
        max_lambda=args.max_lambda,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.name}.partial")
    head.save(str(staging))
    staging.replace(output)
    size = "1 random frame" if quadrature is None else f"{quadrature.size} evaluations"
    print(f"saved {output}: mode {args.mode}, {size} per call")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="equiscope",
        description="Measure and control the rotational symmetry of unconstrained "
        "machine-learning models.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="train a tiny PET on generated data and audit it (the quick start)",
        description="Generate copper cells with ASE's EMT, train a small PET with "
        "metatrain (mtt train), and audit its checkpoint (with per-layer spectra) and its "
        "export on held-out structures. Writes the data, the model and both reports into "
        "the output folder.",
    )
    demo.add_argument(
        "-o", "--output", default="equiscope-demo", help="output folder (default: %(default)s)"
    )
    demo.add_argument(
        "--train", type=int, default=48, help="training structures (default: %(default)s)"
    )
    demo.add_argument(
        "--audit", type=int, default=3, help="held-out structures audited (default: %(default)s)"
    )
    demo.add_argument("--epochs", type=int, default=10, help="epochs (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="seed for data and training")
    demo.set_defaults(handler=_demo_command)

    audit = sub.add_parser(
        "audit",
        help="audit a model's symmetry on a data set and write a report",
        description="Evaluate MODEL (exported metatomic .pt or metatrain .ckpt) on the "
        "O(3) orbit of every structure in DATA (any file ASE reads, with or without "
        "labels) and write DIR/report.json, DIR/report.md and PNG figures: equivariance "
        "RMSE vs noise floor (and accuracy with labels) per output, character spectra "
        "of outputs and hidden layers, grid convergence. Launched with torchrun "
        "(torchrun --nproc-per-node N -m equiscope.cli audit ...), every process audits "
        "a block of the structures and rank 0 writes the merged report.",
    )
    audit.add_argument("model", help="exported metatomic model (.pt) or metatrain checkpoint")
    audit.add_argument("data", help="structures, any format ASE reads (e.g. extxyz)")
    audit.add_argument("-o", "--output", default="equiscope-audit", help="report folder")
    audit.add_argument(
        "--grid",
        default="auto",
        help="auto (Lebedev grids refined until the equivariance RMSE changes < 1%%), "
        "lebedev, tetrahedral, octahedral, icosahedral or random (default: %(default)s)",
    )
    audit.add_argument("--degree", type=int, help="Lebedev degree (mean exact to it)")
    audit.add_argument("--n", type=int, help="number of rotations of a random grid")
    audit.add_argument("--seed", type=int, default=0, help="seed of a random grid")
    audit.add_argument(
        "--no-inversion", action="store_true", help="SO(3) only: leave out improper elements"
    )
    audit.add_argument(
        "--max-lambda", type=int, help="largest lambda in spectra (default: what the grid resolves)"
    )
    audit.add_argument(
        "--outputs",
        help="comma-separated outputs (default: every output the model declares, plus "
        "forces and stress from the energy)",
    )
    audit.add_argument(
        "--layers",
        default="all",
        help="all (default), none, or comma-separated layers: PET's gnn_layers.<i>_node/_edge, "
        "or any submodule path captured by a forward hook (e.g. backend.gnn_layers.0[1] "
        "for the 2nd tensor it returns); checkpoints only",
    )
    audit.add_argument(
        "--batch-size", type=int, default=32, help="transformed copies per model call"
    )
    audit.add_argument("--structures", type=int, help="audit only the first N structures")
    audit.add_argument(
        "--totals",
        help="comma-separated outputs declared per atom to audit as structure totals, "
        "the sum of their per-atom contributions (e.g. mtt::dipole; energies always are)",
    )
    audit.add_argument(
        "--labels",
        help="reference values of other outputs, as OUTPUT=KEY pairs (comma-separated; "
        "KEY in each frame's info, arrays or calculator results, in the output's layout), "
        "e.g. mtt::dipole=xtb_dipole; energy, forces and stress are found without",
    )
    audit.add_argument(
        "--convergence-structures",
        type=int,
        default=1,
        help="structures re-evaluated on a finer grid to check convergence (0: no check)",
    )
    audit.add_argument(
        "--device",
        default="cpu",
        help="device (default: %(default)s); under torchrun, cuda means cuda:LOCAL_RANK",
    )
    audit.add_argument(
        "--dtype", choices=["float32", "float64"], help="run a checkpoint in this dtype"
    )
    audit.set_defaults(handler=_audit_command)

    symmetrize = sub.add_parser(
        "symmetrize",
        help="export a model behind a symmetrised output head",
        description="Wrap an exported metatomic model in a symmetrised head and save it: "
        "'average' over a grid (octahedral removes lambda = 1, 2, 3, 5 exactly with 24 "
        "rotations; icosahedral 1-5, 7, 8, 9 with 60), 'random' (one seeded Haar-random "
        "frame per call), 'random-group' (the grid in a random orientation per call) or "
        "'diagnose' (raw outputs plus equiscope::variance::<name> on the grid). "
        "The result runs in any metatomic engine.",
    )
    symmetrize.add_argument("model", help="exported metatomic model (.pt)")
    symmetrize.add_argument("-o", "--output", required=True, help="output .pt file")
    symmetrize.add_argument(
        "--mode", default="average", help="average, random, random-group or diagnose"
    )
    symmetrize.add_argument(
        "--grid", default="icosahedral", help="grid name (default: %(default)s)"
    )
    symmetrize.add_argument("--degree", type=int, help="Lebedev degree, for --grid lebedev")
    symmetrize.add_argument(
        "--n-inplane",
        type=int,
        help="in-plane angles of --grid lebedev (default degree + 1; metatomic-ase's "
        "SymmetrizedCalculator uses 2 degree + 1)",
    )
    symmetrize.add_argument("--inversion", action="store_true", help="include inversion (O(3))")
    symmetrize.add_argument("--seed", type=int, default=0, help="seed of the random frames")
    symmetrize.add_argument(
        "--max-lambda", type=int, default=3, help="largest lambda of spherical outputs"
    )
    symmetrize.set_defaults(handler=_symmetrize_command)

    grid = sub.add_parser(
        "grid",
        help="show a quadrature grid and its computed exactness",
        description="Build a grid and print its size and the exactness computed from "
        "its representation matrices.",
    )
    grid.add_argument(
        "name", help="lebedev, tetrahedral, octahedral, icosahedral, random, so2 or o2"
    )
    grid.add_argument("--degree", type=int, help="Lebedev degree (mean exact to it)")
    grid.add_argument("--n", type=int, help="number of elements for random/so2/o2")
    grid.add_argument("--seed", type=int, default=0, help="seed for random grids")
    grid.add_argument("--inversion", action="store_true", help="add inversion (O(3))")
    grid.set_defaults(handler=_grid_command)

    from equiscope_jets.cli import add_parser as add_jets_parser

    add_jets_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except BadInput as error:
        print(f"equiscope {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
