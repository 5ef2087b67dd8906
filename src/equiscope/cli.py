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

    if args.structures < 1:
        raise BadInput(f"--structures must be at least 1, got {args.structures}")
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise BadInput(f"output {output} exists and is not a folder")
    report = run_demo(output, n_structures=args.structures, seed=args.seed)
    print(summary(report))
    print(f"report: {output / 'report.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="equiscope",
        description="Measure and control the rotational symmetry of unconstrained "
        "machine-learning models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="run the engine end to end on a real model (PET) and generated data",
        description="Evaluate an untrained metatrain PET on the O(3) orbit of "
        "generated "
        "copper structures: equivariance RMSE of energy and forces vs the float32 "
        "noise floor, grid convergence, and per-layer character spectra.",
    )
    demo.add_argument(
        "-o",
        "--output",
        default="equiscope-demo",
        help="folder for report.json (default: %(default)s)",
    )
    demo.add_argument(
        "--structures",
        type=int,
        default=2,
        help="number of generated structures (default: %(default)s)",
    )
    demo.add_argument("--seed", type=int, default=0, help="seed for data and model")
    demo.set_defaults(handler=_demo_command)

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
