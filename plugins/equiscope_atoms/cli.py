"""Command-line pieces of the atomistic plugin: ``equiscope audit`` on metatomic
``.pt`` and metatrain ``.ckpt`` files, and the ``demo`` and ``symmetrize`` commands.
Registered through entry points (``equiscope.adapters``, ``equiscope.commands``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from equiscope.audit import AuditPlugin
from equiscope.cli import (
    BadInput,
    DefaultsHelpFormatter,
    audit_grid,
    estimate_options,
    output_folder,
    parse_batch_size,
    parse_labels,
    parse_list,
    parse_memory,
    require_at_least,
    write_audit,
)

__all__ = ["AUDIT", "add_commands"]


def _is_model_file(model: str) -> bool:
    return Path(model).is_file()


def _audit(args) -> int:
    import torch

    torch.set_num_threads(1)
    from equiscope import shards as sharding

    from . import DataError, ModelLoadError, load_model, read_structures
    from ._audit import AuditOptionError, audit

    if args.model_dtype is not None:
        raise BadInput(
            "--model-dtype: for MODULE:FACTORY calculators; use --dtype for a checkpoint"
        )
    if args.structures is not None:
        require_at_least(("--structures", args.structures, 1))
    if args.max_lambda is not None and args.max_lambda < 0:
        raise BadInput(f"--max-lambda must be non-negative, got {args.max_lambda}")
    batch_size, max_memory = parse_batch_size(args.batch_size), parse_memory(args.max_memory)
    output = output_folder(args.output)
    grid = audit_grid(args)
    estimate = estimate_options(args) if grid is None else {}
    layers = {"all": None, "none": []}.get(args.layers, parse_list(args.layers))
    labels = parse_labels(args.labels)
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
            model.totals = set(parse_list(args.totals) or [])
            model.to(device)
            structures = read_structures(
                args.data,
                atomic_types=model.atomic_types,
                limit=args.structures,
                sample=args.sample,
                seed=args.seed,
                labels=labels,
            )
            report = audit(
                model,
                structures,
                grid=grid,
                max_lambda=args.max_lambda,
                outputs=parse_list(args.outputs),
                layers=layers,
                batch_size=batch_size,
                max_memory=max_memory,
                convergence_structures=args.convergence_structures,
                shards=shards,
                **estimate,
            )
        except (ModelLoadError, DataError, AuditOptionError) as error:
            raise BadInput(str(error)) from None
    finally:
        sharding.close(shards)
    return write_audit(report, output, shards)


AUDIT = AuditPlugin(
    name="metatomic",
    priority=20,
    accepts=_is_model_file,
    command=_audit,
    describes="exported metatomic .pt, metatrain .ckpt",
)
"""``equiscope audit`` on any existing model file not claimed by an earlier plugin."""


def _demo_command(args) -> int:
    import torch

    torch.set_num_threads(1)
    from .demo import run_demo, summary

    require_at_least(
        ("--train", args.train, 8), ("--audit", args.audit, 1), ("--epochs", args.epochs, 1)
    )
    output = output_folder(args.output)
    reports = run_demo(
        output, n_train=args.train, n_audit=args.audit, epochs=args.epochs, seed=args.seed
    )
    print(summary(reports, output))
    return 0


def _atoms_per_call(text) -> int:
    """``--atoms-per-call``: a non-negative integer (0: every copy in one call)."""
    try:
        value = int(str(text).strip())
    except ValueError:
        raise BadInput(
            f"--atoms-per-call: expected a whole number of atoms (0: no chunks), got '{text}'"
        ) from None
    require_at_least(("--atoms-per-call", value, 0))
    return value


def _symmetrize_command(args) -> int:
    import torch

    torch.set_num_threads(1)
    from equiscope import grid

    from . import ModelLoadError, load_model
    from .heads import HEAD_MODES, head_description, symmetrize_model

    if args.mode not in HEAD_MODES:
        raise BadInput(f"--mode {args.mode}: expected one of {', '.join(HEAD_MODES)}")
    atoms_per_call = _atoms_per_call(args.atoms_per_call)
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
    existing = head_description(model.module)
    if existing is not None:
        raise BadInput(
            f"{args.model} is already symmetrised ({existing}); symmetrise the raw model"
        )
    head = symmetrize_model(
        model.module,
        mode=args.mode,
        grid=quadrature,
        seed=args.seed,
        inversion=args.inversion,
        max_lambda=args.max_lambda,
        atoms_per_call=atoms_per_call,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.name}.partial")
    head.save(str(staging))
    staging.replace(output)
    size = "1 random frame" if quadrature is None else f"{quadrature.size} evaluations"
    chunks = ""
    if quadrature is not None:
        chunks = (
            ", all copies in one inner call"
            if atoms_per_call == 0
            else f", up to {atoms_per_call} atoms per inner call"
        )
    print(f"saved {output}: mode {args.mode}, {size} per call{chunks}")
    return 0


def add_commands(sub) -> None:
    """Add ``demo`` and ``symmetrize`` to the ``equiscope`` subparsers ``sub``."""
    demo = sub.add_parser(
        "demo",
        formatter_class=DefaultsHelpFormatter,
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

    from equiscope.heads import (
        DEFAULT_ATOMS_PER_CALL,
        DEFAULT_GRID,
        DEFAULT_INVERSION,
        DEFAULT_MAX_LAMBDA,
        DEFAULT_MODE,
    )

    symmetrize = sub.add_parser(
        "symmetrize",
        help="export a model behind a symmetrised output head",
        description="Wrap an exported metatomic model in a symmetrised head and save it: "
        "'average' over a grid (octahedral removes lambda = 1, 2, 3, 5 exactly with 24 "
        "rotations, 48 with inversion, which also removes every parity-odd sector; "
        "icosahedral 1-5, 7, 8, 9 with 60), 'random' (one seeded Haar-random "
        "frame per call), 'random-group' (the grid in a random orientation per call) or "
        "'diagnose' (raw outputs plus equiscope::variance::<name> on the grid). "
        "The result runs in any metatomic engine (in ASE: metatomic_ase.MetatomicCalculator).",
    )
    symmetrize.add_argument("model", help="exported metatomic model (.pt)")
    symmetrize.add_argument("-o", "--output", required=True, help="output .pt file")
    symmetrize.add_argument(
        "--mode",
        default=DEFAULT_MODE,
        help="average, random, random-group or diagnose (default: %(default)s)",
    )
    symmetrize.add_argument(
        "--grid",
        default=DEFAULT_GRID,
        help="octahedral, icosahedral, tetrahedral or lebedev (with --degree) "
        "(default: %(default)s)",
    )
    symmetrize.add_argument("--degree", type=int, help="Lebedev degree, for --grid lebedev")
    symmetrize.add_argument(
        "--n-inplane",
        type=int,
        help="in-plane angles of --grid lebedev (when not given: degree + 1; "
        "metatomic-ase's SymmetrizedCalculator uses 2 degree + 1)",
    )
    symmetrize.add_argument(
        "--inversion",
        action=argparse.BooleanOptionalAction,
        default=DEFAULT_INVERSION,
        help="include inversion (O(3)); --no-inversion averages over rotations only "
        "(SO(3), half the evaluations) (default: include)",
    )
    symmetrize.add_argument(
        "--seed", type=int, default=0, help="seed of the random frames (default: %(default)s)"
    )
    symmetrize.add_argument(
        "--max-lambda",
        type=int,
        default=DEFAULT_MAX_LAMBDA,
        help="largest lambda of spherical outputs (default: %(default)s)",
    )
    symmetrize.add_argument(
        "--atoms-per-call",
        default=str(DEFAULT_ATOMS_PER_CALL),
        metavar="N",
        help="atoms per call of the wrapped model, at least one copy per call: bounds "
        "the memory of an MD step (forces and stress are taken chunk by chunk, first "
        "derivatives only); 0 evaluates every copy in one call, as needed for second "
        "derivatives through autograd (default: %(default)s)",
    )
    symmetrize.set_defaults(handler=_symmetrize_command)
