"""``equiscope jets ...``: the jet adapter's command line (``generate`` for now).

:func:`add_parser` registers the ``jets`` subcommand on the main parser's subparsers and
:func:`run` executes it; bad input raises ``equiscope.cli.BadInput`` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

from .generate import CHUNK_SIZE, PROCESSES

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``jets`` (with its actions) to ``subparsers``; returns the ``jets`` parser."""
    jets = subparsers.add_parser(
        "jets",
        help="jet tagging: generate top and QCD jets",
        description="Particle-physics jets: generate boosted top and QCD jet samples "
        "(Pythia 8 + FastJet, top-tagging landscape recipe at particle level).",
    )
    actions = jets.add_subparsers(dest="jets_command", metavar="ACTION")
    generate = actions.add_parser(
        "generate",
        help="generate top or QCD jets into an npz file",
        description="Generate jets with Pythia 8 at 14 TeV (pTHat 500-700 GeV, no MPI), "
        "cluster visible final-state particles with anti-kT R=0.8, keep jets with "
        "550 < pT < 650 GeV and |eta| < 2 (top jets: the top and its b, q, q' within "
        "Delta R < 0.8) and write the 200 hardest constituents per jet (E, px, py, pz; "
        "zero-padded), PID, charge, label and jet 4-vector to an npz. The output depends "
        "on --seed, --n and --chunk-size, not on --workers.",
    )
    generate.add_argument("--process", required=True, choices=PROCESSES, help="top or qcd")
    generate.add_argument("--n", type=int, required=True, help="number of jets")
    generate.add_argument("-o", "--output", required=True, help="output .npz file")
    generate.add_argument("--seed", type=int, default=0, help="base seed (default: %(default)s)")
    generate.add_argument(
        "--workers", type=int, default=1, help="worker processes (default: %(default)s)"
    )
    generate.add_argument(
        "--chunk-size",
        type=int,
        default=CHUNK_SIZE,
        help="jets per independently seeded Pythia run (default: %(default)s)",
    )
    generate.add_argument("--no-progress", action="store_true", help="no progress bar")
    jets.set_defaults(handler=run, jets_parser=jets)
    return jets


def run(args: argparse.Namespace) -> int:
    """Run the ``jets`` action chosen in ``args``."""
    from equiscope.cli import BadInput

    if getattr(args, "jets_command", None) is None:
        raise BadInput("choose an action: generate (see equiscope jets --help)")
    if args.jets_command == "generate":
        return _generate(args)
    raise BadInput(f"unknown action {args.jets_command!r}")  # pragma: no cover


def _generate(args: argparse.Namespace) -> int:
    import numpy as np

    from equiscope.cli import BadInput

    from .data import save_jets
    from .generate import generate_jets
    from .physics import jet_mass

    for option, value, minimum in (
        ("--n", args.n, 1),
        ("--workers", args.workers, 1),
        ("--chunk-size", args.chunk_size, 1),
        ("--seed", args.seed, 0),
    ):
        if value < minimum:
            raise BadInput(f"{option} must be at least {minimum}, got {value}")
    output = Path(args.output)
    if output.suffix != ".npz":
        raise BadInput(f"-o {output}: jets are written as an .npz file")
    if output.is_dir():
        raise BadInput(f"-o {output} is a folder")
    missing = [name for name in ("pythia8mc", "fastjet") if importlib.util.find_spec(name) is None]
    if missing:
        raise BadInput(
            f"{' and '.join(missing)} not installed: pip install 'equiscope[jets]' "
            "(pythia8mc==8.317.2, fastjet)"
        )
    start = time.perf_counter()
    data = generate_jets(
        args.process,
        args.n,
        seed=args.seed,
        workers=args.workers,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
    )
    seconds = time.perf_counter() - start
    save_jets(data, output)
    workers = min(args.workers, -(-args.n // args.chunk_size))
    print(
        f"wrote {output}: {len(data)} {args.process} jets from {data.metadata['events']} "
        f"events in {seconds:.1f} s ({len(data) / seconds / workers:.1f} jets/s per worker, "
        f"{workers} worker(s)); median jet mass {float(np.median(jet_mass(data.jet))):.0f} GeV, "
        f"{float(data.n_constituents.mean()):.0f} constituents per jet on average"
    )
    return 0
