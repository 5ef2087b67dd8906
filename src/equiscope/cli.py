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


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Shows ``(default: X)`` after every option whose help does not already state its
    default (options without a default, and flags, show none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            not action.option_strings
            or "default" in text
            or action.default is None
            or action.default is False
            or action.default is argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


ATOM_GRIDS = ("estimate", "auto", "lebedev", "tetrahedral", "octahedral", "icosahedral", "random")


def require_at_least(*checks: tuple[str, int, int]) -> None:
    """``(option, value, minimum)`` triples: a one-line ``BadInput`` for the first
    value below its minimum."""
    for option, value, minimum in checks:
        if value < minimum:
            raise BadInput(f"{option} must be at least {minimum}, got {value}")


def parse_batch_size(text) -> int | None:
    """``--batch-size``: ``None`` for ``auto``, else a positive integer."""
    if text is None or str(text).strip().lower() == "auto":
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        raise BadInput(f"--batch-size: expected auto or a number, got '{text}'") from None
    require_at_least(("--batch-size", value, 1))
    return value


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS.update({"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40})


def parse_memory(text: str | None) -> int | None:
    """``--max-memory`` (``4GB``, ``512MB``, ``1.5GiB``, or bytes) in bytes; ``None``
    when not given."""
    if text is None:
        return None
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise BadInput(f"--max-memory: expected a size such as 4GB or 512MB, got '{text}'")
    value = int(float(match.group(1)) * _UNITS[unit])
    if value < 1:
        raise BadInput(f"--max-memory must be positive, got '{text}'")
    return value


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


def parse_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


def audit_grid(args):
    """``--grid`` as ``run_audit`` takes it: ``None`` for the default estimate,
    ``"auto"``, or a :class:`~equiscope.Grid`."""
    from .grids import grid

    if args.grid == "estimate":
        return None
    if args.grid == "auto":
        return "auto"
    if args.grid not in ATOM_GRIDS:
        raise BadInput(
            f"--grid: unknown grid '{args.grid}' for atomistic models; expected one of "
            + ", ".join(ATOM_GRIDS)
        )
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


def write_audit(report: dict, output: Path, shards) -> int:
    """Write ``report`` into ``output`` and print its summary (the leading process of
    ``shards`` only); the exit code of an ``audit`` command."""
    from .report import terminal_summary, write_report

    if not shards.leader:
        return 0
    write_report(report, output)
    print(terminal_summary(report))
    processes = f", {shards.size} processes" if shards.distributed else ""
    print(f"\nreport: {output / 'report.md'} (and report.json, figures{processes})")
    return 0


def estimate_options(args) -> dict:
    """The default estimate's options from the ``audit`` arguments (for ``run_audit``)."""
    if not args.precision > 0:
        raise BadInput(f"--precision must be positive, got {args.precision}")
    require_at_least(("--max-replicates", args.max_replicates, 6))
    return {
        "precision": args.precision,
        "max_replicates": args.max_replicates,
        "seed": args.seed,
        "estimate_grid": args.estimate_grid,
        "inversion": not args.no_inversion,
    }


def _audit_command(args) -> int:
    """Hand ``equiscope audit`` to the first installed adapter plugin that accepts MODEL
    (jet taggers, metatomic/metatrain files, ``MODULE:FACTORY`` calculators, ...)."""
    from .audit import adapter_plugins, find_plugin

    failures: list[str] = []
    plugin = find_plugin(args.model, failures)
    if plugin is not None:
        return plugin.command(args)
    plugins = adapter_plugins()
    path = Path(args.model)
    if path.is_dir():
        raise BadInput(
            f"model {args.model} is a directory; give the model file (.pt or .ckpt) "
            "or MODULE:FACTORY"
        )
    if not path.exists() and ":" not in args.model:
        raise BadInput(f"model file {args.model} does not exist")
    readers = "; ".join(p.describes for p in plugins if p.describes) or "none installed"
    broken = f" (plugins that failed to load: {'; '.join(failures)})" if failures else ""
    raise BadInput(f"no installed adapter reads MODEL {args.model} (readers: {readers}){broken}")


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


def parse_labels(text: str | None) -> dict[str, str]:
    """``--labels OUTPUT=KEY,...`` as ``{output: key}`` (a key holds no ``=``)."""
    labels = {}
    for item in _split_outside_brackets(text or ""):
        output, equals, key = item.rpartition("=")
        if not (equals and output.strip() and key.strip()):
            raise BadInput(f"--labels: expected OUTPUT=KEY, got '{item}'")
        labels[output.strip()] = key.strip()
    return labels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="equiscope",
        description="Measure and control the rotational symmetry of unconstrained "
        "machine-learning models.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    audit = sub.add_parser(
        "audit",
        formatter_class=DefaultsHelpFormatter,
        help="audit a model's symmetry on a data set and write a report",
        description="Evaluate MODEL (exported metatomic .pt, metatrain .ckpt, a jet tagger, "
        "or MODULE:FACTORY returning an ASE calculator) on the O(3) orbit of every "
        "structure in DATA (any file ASE reads, with or without labels) and write "
        "DIR/report.json, DIR/report.md and PNG figures: equivariance RMSE vs noise "
        "floor (and accuracy with labels) per output, character spectra "
        "of outputs and hidden layers. By default (--grid estimate) every output's "
        "equivariance RMSE is an unbiased estimate with a 95% interval, from randomly "
        "oriented (and, for O(3), randomly inverted) octahedral grids of 24 rotations "
        "(for fewer than 3 structures: icosahedral, 60, first): 3 per structure, then more for "
        "each output whose interval's half-width is not yet within --precision of the "
        "estimate (10%) or below 10 noise floors, at most "
        "--max-replicates per structure; spectra are unbiased "
        "too, as fractions of the total, with the share above --max-lambda reported. A "
        "fixed --grid is evaluated as it is. Launched with torchrun "
        "(torchrun --nproc-per-node N -m equiscope.cli audit ...), every process audits "
        "a block of the structures and rank 0 writes the merged report.",
    )
    audit.add_argument(
        "model",
        help="exported metatomic model (.pt), metatrain checkpoint (.ckpt), jet tagger, or "
        "MODULE:FACTORY naming an importable callable that returns an ASE calculator",
    )
    audit.add_argument("data", help="structures, any format ASE reads (e.g. extxyz)")
    audit.add_argument("-o", "--output", default="equiscope-audit", help="report folder")
    audit.add_argument(
        "--grid",
        default="estimate",
        help="estimate: unbiased estimates of A (with a 95%% interval) and of the spectra "
        "from randomly oriented grids (--estimate-grid), repeated until A is known to "
        "--precision; auto: Lebedev grids refined until A changes < 1%%; or a fixed grid: "
        "lebedev, tetrahedral, octahedral, icosahedral, random",
    )
    audit.add_argument(
        "--precision",
        type=float,
        default=0.1,
        help="--grid estimate: target half-width of the 95%% interval of A, relative to A",
    )
    audit.add_argument(
        "--estimate-grid",
        choices=["auto", "tetrahedral", "octahedral", "icosahedral"],
        default="auto",
        help="--grid estimate: the rotation group whose random orientations are evaluated "
        "(tetrahedral 12, octahedral 24, icosahedral 60 evaluations each; larger groups "
        "give less noisy spectra of low lambda, at a higher cost per replicate); auto: "
        "octahedral, or for fewer than 3 structures icosahedral first, then octahedral",
    )
    audit.add_argument(
        "--max-replicates",
        type=int,
        default=48,
        help="--grid estimate: at most this many oriented grids per structure",
    )
    audit.add_argument("--degree", type=int, help="Lebedev degree (mean exact to it)")
    audit.add_argument("--n", type=int, help="number of rotations of a random grid")
    audit.add_argument(
        "--seed", type=int, default=0, help="seed of the random orientations or random grid"
    )
    audit.add_argument(
        "--no-inversion", action="store_true", help="SO(3) only: leave out improper elements"
    )
    audit.add_argument(
        "--max-lambda",
        type=int,
        help="largest lambda in spectra (when not given: 4 for --grid estimate, else what "
        "the grid resolves)",
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
        "--batch-size",
        default="auto",
        help="transformed copies per model call: auto (the fastest size that fits in "
        "--max-memory, measured on the first structure of each size) or a number",
    )
    audit.add_argument(
        "--max-memory",
        help="memory the model calls may use, e.g. 4GB or 512MB (default: half the "
        "available RAM, or of the free GPU memory)",
    )
    audit.add_argument("--structures", type=int, help="audit only N structures (see --sample)")
    audit.add_argument(
        "--sample",
        default="first",
        choices=["first", "random"],
        help="with --structures N: the first N frames (reads no further), or N frames drawn "
        "at random (seeded by --seed) from a stream over the whole file",
    )
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
    audit.add_argument(
        "--model-dtype",
        choices=["float32", "float64"],
        help="working precision of a MODULE:FACTORY calculator, for the measured noise "
        "floor (default: float64)",
    )
    audit.set_defaults(handler=_audit_command)

    grid = sub.add_parser(
        "grid",
        formatter_class=DefaultsHelpFormatter,
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

    _add_plugin_commands(sub)
    return parser


def _add_plugin_commands(sub) -> None:
    """Subcommands of installed plugins: ``equiscope.commands`` entry points, each a
    callable adding its subparsers (a plugin that fails to import adds none)."""
    from importlib.metadata import entry_points

    for point in sorted(entry_points(group="equiscope.commands"), key=lambda p: p.name):
        try:
            add_commands = point.load()
        except Exception:  # its adapter reports the failure when asked for
            continue
        add_commands(sub)


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


if __name__ == "__main__":  # python -m equiscope.cli (torchrun): plugins raise
    from equiscope.cli import main as package_main  # equiscope.cli.BadInput, not __main__'s

    sys.exit(package_main())
