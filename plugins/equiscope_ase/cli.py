"""``equiscope audit MODULE:FACTORY DATA -o DIR``: audit any ASE calculator.

Registered in the ``equiscope.adapters`` entry-point group. Imports neither
metatensor nor metatomic (nor this package's metatomic calculator), so it works
whatever was imported before.
"""

from __future__ import annotations

from pathlib import Path

from equiscope.audit import AuditPlugin
from equiscope.cli import (
    BadInput,
    audit_grid,
    estimate_options,
    output_folder,
    parse_labels,
    require_at_least,
    write_audit,
)

__all__ = ["AUDIT", "is_factory_spec"]


def is_factory_spec(model: str) -> bool:
    """``MODULE:FACTORY``: holds a ``:`` and names no existing file or folder."""
    return ":" in model and not Path(model).exists()


def _refuse_options(args) -> None:
    if args.dtype is not None:
        raise BadInput("--dtype: a calculator runs as it is; give its precision with --model-dtype")
    if args.totals:
        raise BadInput("--totals: a calculator's per-atom outputs are audited as they come")
    if args.layers not in ("all", "none", "", None):
        raise BadInput(f"--layers {args.layers}: an ASE calculator has no hidden layers")
    if args.max_memory is not None:
        raise BadInput("--max-memory: a calculator is called on one copy at a time")
    if args.device != "cpu":
        raise BadInput(f"--device {args.device}: a calculator chooses its own device; use cpu")


def _audit(args) -> int:
    import sys
    import warnings

    import torch

    torch.set_num_threads(1)
    from equiscope import shards as sharding
    from equiscope.audit import AuditOptionError

    from .audit import (
        CalculatorAdapter,
        DataError,
        FactoryError,
        load_factory,
        parse_outputs,
        read_atoms,
    )

    _refuse_options(args)
    if args.structures is not None:
        require_at_least(("--structures", args.structures, 1))
    if args.max_lambda is not None and args.max_lambda < 0:
        raise BadInput(f"--max-lambda must be non-negative, got {args.max_lambda}")
    output = output_folder(args.output)
    grid = audit_grid(args)
    estimate = estimate_options(args) if grid is None else {}
    labels = parse_labels(args.labels)
    try:
        requested, declared = parse_outputs(args.outputs)
    except ValueError as error:
        raise BadInput(str(error)) from None
    shards = sharding.Shards()
    try:
        try:
            shards, _ = sharding.from_environment("cpu")
        except ValueError as error:
            raise BadInput(f"--device: {error}") from None
        try:
            calculator = load_factory(args.model)
            adapter = CalculatorAdapter(
                calculator,
                declared=declared,
                model_dtype=args.model_dtype,
                labels=labels,
                source=args.model,
            )
            samples = read_atoms(
                args.data, limit=args.structures, sample=args.sample, seed=args.seed
            )
            from equiscope.audit import run_audit

            with warnings.catch_warnings():  # the notes are printed below, in one line
                warnings.simplefilter("ignore", UserWarning)
                report = run_audit(
                    adapter,
                    samples,
                    grid=grid,
                    max_lambda=args.max_lambda,
                    outputs=requested,
                    layers=[],
                    convergence_structures=args.convergence_structures,
                    shards=shards,
                    **estimate,
                )
        except (FactoryError, DataError, AuditOptionError) as error:
            raise BadInput(str(error)) from None
    finally:
        sharding.close(shards)
    if shards.leader:
        for note in adapter.notes:
            print(f"note: {note}", file=sys.stderr)
    return write_audit(report, output, shards)


AUDIT = AuditPlugin(
    name="ase",
    priority=30,
    accepts=is_factory_spec,
    command=_audit,
    describes="MODULE:FACTORY returning an ASE calculator",
)
"""``equiscope audit MODULE:FACTORY DATA``: the factory's ASE calculator."""
