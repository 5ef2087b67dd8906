"""``equiscope jets ...``: the jet adapter's command line (``generate``, ``train``, ``audit``,
``export``).

:func:`add_parser` registers the ``jets`` subcommand on the main parser's subparsers and
:func:`run` executes it; bad input raises ``equiscope.cli.BadInput`` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

from .generate import CHUNK_SIZE, PROCESSES

__all__ = ["AUDIT", "add_parser", "audit_jet_model", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``jets`` (with its actions) to ``subparsers``; returns the ``jets`` parser."""
    from equiscope.cli import DefaultsHelpFormatter

    jets = subparsers.add_parser(
        "jets",
        formatter_class=DefaultsHelpFormatter,
        help="jet tagging: generate top and QCD jets, train and audit taggers",
        description="Particle-physics jets: generate boosted top and QCD jet samples "
        "(Pythia 8 + FastJet, top-tagging landscape recipe at particle level), train a "
        "tagger on them and audit its symmetries.",
    )
    actions = jets.add_subparsers(dest="jets_command", metavar="ACTION")
    generate = actions.add_parser(
        "generate",
        formatter_class=DefaultsHelpFormatter,
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
    _add_train_parser(actions)
    _add_audit_parser(actions)
    _add_export_parser(actions)
    jets.set_defaults(handler=run, jets_parser=jets)
    return jets


def run(args: argparse.Namespace) -> int:
    """Run the ``jets`` action chosen in ``args``."""
    from equiscope.cli import BadInput

    if getattr(args, "jets_command", None) is None:
        raise BadInput(
            "choose an action: generate, train, audit or export (see equiscope jets --help)"
        )
    if args.jets_command == "generate":
        return _generate(args)
    if args.jets_command == "train":
        return _train(args)
    if args.jets_command == "audit":
        return _audit(args)
    if args.jets_command == "export":
        return _export(args)
    raise BadInput(f"unknown action {args.jets_command!r}")  # pragma: no cover


def _generate(args: argparse.Namespace) -> int:
    import numpy as np

    from equiscope.cli import BadInput, require_at_least

    from .data import save_jets
    from .generate import generate_jets
    from .physics import jet_mass

    require_at_least(
        ("--n", args.n, 1),
        ("--workers", args.workers, 1),
        ("--chunk-size", args.chunk_size, 1),
        ("--seed", args.seed, 0),
    )
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


def _add_train_parser(actions) -> None:
    from equiscope.cli import DefaultsHelpFormatter

    from .train import AUGMENTATIONS

    train = actions.add_parser(
        "train",
        formatter_class=DefaultsHelpFormatter,
        help="train a tagger on top and QCD jet files",
        description="Train a tagger on the jets of --top and --qcd (split into training, "
        "validation and test sets), with random augmentation over a group, validation "
        "each epoch, early stopping and a checkpoint of the best epoch. Writes "
        "DIR/model.pt (auditable with 'equiscope audit DIR/model.pt JETS') and "
        "DIR/metrics.json: test accuracy, AUC, background rejection 1/eps_B at "
        "eps_S = 0.3 and 0.5, training history and throughput.",
    )
    train.add_argument("--top", required=True, help="top jets (npz or landscape HDF5)")
    train.add_argument("--qcd", required=True, help="QCD jets (npz or landscape HDF5)")
    train.add_argument("-o", "--output", required=True, help="output folder")
    train.add_argument(
        "--model",
        default="transformer",
        choices=["transformer", "invariant", "part"],
        help="transformer (unconstrained, lab-frame features), invariant (exactly "
        "Lorentz-invariant baseline) or part (weaver-core's ParT, the peer) "
        "(default: %(default)s)",
    )
    train.add_argument(
        "--augment",
        default="so2-axis",
        choices=AUGMENTATIONS,
        help="group of the random augmentation, one element per jet and batch "
        "(default: %(default)s)",
    )
    train.add_argument("--epochs", type=int, default=20, help="epochs (default: %(default)s)")
    train.add_argument(
        "--max-constituents",
        type=int,
        default=64,
        help="keep the K hardest constituents per jet (default: %(default)s)",
    )
    train.add_argument("--jets", type=int, help="read only the first N jets of each file")
    train.add_argument("--batch-size", type=int, default=128, help="(default: %(default)s)")
    train.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    train.add_argument(
        "--patience", type=int, default=4, help="epochs without improvement before stopping"
    )
    train.add_argument("--time-limit", type=float, help="stop after this many seconds")
    train.add_argument("--width", type=int, default=64, help="embedding width")
    train.add_argument("--depth", type=int, default=3, help="attention blocks")
    train.add_argument("--seed", type=int, default=0, help="seed of split and training")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load_pair(args):
    from equiscope.cli import BadInput

    from .data import JetData, JetDataError, load_jets

    try:
        parts = [load_jets(path, limit=args.jets) for path in (args.top, args.qcd)]
    except JetDataError as error:
        raise BadInput(str(error)) from None
    return JetData.concatenate(parts)


def _train(args: argparse.Namespace) -> int:
    import torch

    from equiscope.cli import BadInput, output_folder, require_at_least

    from .peer import PeerUnavailable
    from .train import fit

    torch.set_num_threads(1)
    require_at_least(
        ("--epochs", args.epochs, 1),
        ("--max-constituents", args.max_constituents, 1),
        ("--batch-size", args.batch_size, 1),
        ("--patience", args.patience, 1),
        ("--width", args.width, 4),
        ("--depth", args.depth, 1),
        ("--jets", args.jets if args.jets is not None else 1, 1),
    )
    output = output_folder(args.output, label="-o")
    data = _load_pair(args)
    try:
        metrics = fit(
            data,
            output,
            model=args.model,
            config={"width": args.width, "depth": args.depth},
            max_constituents=args.max_constituents,
            split_seed=args.seed,
            augmentation=args.augment,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            patience=args.patience,
            time_limit=args.time_limit,
            seed=args.seed,
            progress=not args.no_progress,
        )
    except (ValueError, PeerUnavailable) as error:
        raise BadInput(str(error)) from None
    test, training = metrics["test"], metrics["training"]
    print(
        f"{args.model} ({metrics['parameters']} parameters, augmentation {args.augment}): "
        f"test accuracy {test['accuracy']:.4f}, AUC {test['auc']:.4f}, "
        f"1/eps_B {test['rejection_30']:.0f} at eps_S = 0.3 and {test['rejection_50']:.0f} "
        f"at 0.5 on {test['jets']} jets; best epoch {training['best_epoch']} of "
        f"{training['epochs_run']} ({training['stopped_by']}); "
        f"{training['train_jets_per_second']:.0f} jets/s training, "
        f"{metrics['inference_jets_per_second']:.0f} jets/s inference"
    )
    print(f"wrote {output / 'model.pt'} and {output / 'metrics.json'}")
    return 0


_DEFAULT_AUDIT_JETS = 64


def _add_audit_parser(actions) -> None:
    from equiscope.cli import DefaultsHelpFormatter

    from .audit import DEFAULT_GROUPS
    from .heads import HEAD_MODES

    audit = actions.add_parser(
        "audit",
        formatter_class=DefaultsHelpFormatter,
        help="audit a trained tagger's symmetries per subgroup",
        description="Evaluate a tagger checkpoint (from 'equiscope jets train') on the orbits "
        "of jets under each group and write DIR/report.json, DIR/report.md, PNG figures "
        "and one folder per compact group: equivariance RMSE of the logit vs noise floor, "
        "character spectra of the logit and of every hidden layer, grid convergence; "
        "boosts (non-compact) as invariance error against rapidity. 'equiscope audit "
        "MODEL JETS' does the same with the defaults.",
    )
    audit.add_argument(
        "model",
        help="tagger checkpoint (model.pt from equiscope jets train) or exported program (.pt2)",
    )
    audit.add_argument("data", help="jets (npz or landscape HDF5)")
    audit.add_argument("-o", "--output", default="equiscope-audit", help="report folder")
    audit.add_argument(
        "--groups",
        default=",".join(DEFAULT_GROUPS),
        help="comma-separated groups (default: %(default)s)",
    )
    audit.add_argument(
        "--jets", type=int, default=_DEFAULT_AUDIT_JETS, help="audit the first N jets"
    )
    audit.add_argument("--degree", type=int, help="Lebedev degree for so3/o3 (default 6)")
    audit.add_argument("--n", type=int, help="angles for the SO(2)/O(2) groups (default 16)")
    audit.add_argument("--max-lambda", type=int, help="largest degree in spectra")
    audit.add_argument("--layers", default="all", choices=["all", "none"], help="layer spectra")
    audit.add_argument("--batch-size", type=int, default=512, help="transformed jets per call")
    audit.add_argument("--rapidity-max", type=float, default=1.0, help="boosts: |y| <= this")
    audit.add_argument("--rapidity-steps", type=int, default=9, help="boosts: rapidities")
    audit.add_argument(
        "--convergence-jets", type=int, default=2, help="jets re-run on a finer grid"
    )
    audit.add_argument("--head", choices=HEAD_MODES, help="audit the tagger behind this head")
    audit.add_argument("--head-group", default="so2-axis", help="group of an average/random head")
    audit.add_argument("--head-n", type=int, help="rotations of an average head's axial grid")


def is_tagger(path) -> bool:
    """Whether ``path`` is a tagger checkpoint or an exported tagger program."""
    from .checkpoint import is_jet_checkpoint
    from .export import is_exported_tagger

    return is_jet_checkpoint(path) or is_exported_tagger(path)


def _audit_command(args: argparse.Namespace) -> int:
    """``equiscope audit`` on a tagger (the ``equiscope.adapters`` plugin's command)."""
    import os

    from equiscope.cli import BadInput

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise BadInput(
            f"{args.model}: jet audits run in one process; torchrun shards atomistic audits only"
        )
    for option in ("labels", "totals", "model_dtype"):
        if getattr(args, option, None) is not None:
            flag = "--" + option.replace("_", "-")
            raise BadInput(f"{flag}: for atomistic models; {args.model} is a jet tagger")
    return audit_jet_model(args)


def audit_jet_model(args: argparse.Namespace) -> int | None:
    """``equiscope audit`` on a tagger checkpoint or exported program: run the jet audit
    and return its exit code; ``None`` when ``args.model`` is neither. ``--grid`` other than
    ``auto`` names the groups (comma-separated), ``--structures`` the number of jets."""
    from equiscope.cli import parse_batch_size

    from .audit import DEFAULT_GROUPS

    if not is_tagger(args.model):
        return None
    jets = argparse.Namespace(
        model=args.model,
        data=args.data,
        output=args.output,
        groups=",".join(DEFAULT_GROUPS) if args.grid in ("auto", "estimate") else args.grid,
        jets=args.structures or _DEFAULT_AUDIT_JETS,
        degree=args.degree,
        n=args.n,
        max_lambda=args.max_lambda,
        layers="none" if args.layers == "none" else "all",
        batch_size=(parse_batch_size(args.batch_size) or 32) * 16,
        rapidity_max=1.0,
        rapidity_steps=9,
        convergence_jets=args.convergence_structures,
        head=None,
        head_group="so2-axis",
        head_n=None,
    )
    return _audit(jets)


def _audit(args: argparse.Namespace) -> int:
    import torch

    from equiscope.cli import BadInput, output_folder, require_at_least

    from .actions import get_group
    from .audit import JetAuditError, audit_tagger
    from .checkpoint import JetModelError, load_checkpoint
    from .data import JetDataError, load_jets
    from .export import is_exported_tagger, load_exported_tagger
    from .heads import SymmetrizedTagger
    from .peer import PeerUnavailable
    from .report import jet_markdown, write_jet_report
    from .train import prepare_momenta

    torch.set_num_threads(1)
    require_at_least(
        ("--jets", args.jets, 1),
        ("--batch-size", args.batch_size, 1),
        ("--convergence-jets", args.convergence_jets, 0),
    )
    output = output_folder(args.output)
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    grids = {}
    try:
        for name in groups:
            kind = get_group(name)
            if not isinstance(kind, str):
                grids[name] = kind.default_grid(degree=args.degree, n=args.n)
    except ValueError as error:
        raise BadInput(f"--groups: {error}") from None
    try:
        if is_exported_tagger(args.model):  # a program: no hidden layers to capture
            model = load_exported_tagger(args.model)
            training, exported = model.metadata, True
        else:
            model, training = load_checkpoint(args.model)
            exported = False
        data = load_jets(args.data, limit=args.jets)
        momenta = prepare_momenta(data, int(training.get("max_constituents", 64)))
        if args.head is not None:
            head_grid = _head_grid(args)
            model = SymmetrizedTagger(model, args.head, group=args.head_group, grid=head_grid)
        report = audit_tagger(
            model,
            momenta,
            labels=data.label,
            groups=groups,
            grids=grids,
            max_lambda=args.max_lambda,
            layers=args.layers == "all" and args.head is None and not exported,
            batch_size=args.batch_size,
            rapidity_max=args.rapidity_max,
            rapidity_steps=args.rapidity_steps,
            convergence_jets=max(args.convergence_jets, 1),
            source=str(args.model) + (f" + {args.head} head" if args.head else ""),
        )
    except (JetModelError, JetDataError, JetAuditError, PeerUnavailable) as error:
        raise BadInput(str(error)) from None
    except ValueError as error:  # bad jets for the model, or a head option
        raise BadInput(str(error).splitlines()[0]) from None
    write_jet_report(report, output)
    print(jet_markdown(report).split("## Hidden layers")[0].rstrip())
    print(f"\nreport: {output / 'report.md'} (and report.json, figures, one folder per group)")
    return 0


def _head_grid(args: argparse.Namespace):
    """The grid of ``--head average`` with ``--head-n`` (``None``: the head's default);
    one-line errors for options that do not fit the head or its group."""
    from equiscope.cli import BadInput

    from .actions import get_group

    if args.head_n is None:
        return None
    if args.head != "average":
        raise BadInput(f"--head-n sets the grid of an average head, not of --head {args.head}")
    try:
        kind = get_group(args.head_group)
    except ValueError as error:
        raise BadInput(f"--head-group: {error}") from None
    if isinstance(kind, str) or kind.engine.endswith("(3)"):
        raise BadInput(
            f"--head-n sets the rotations about an axis; --head-group {args.head_group} "
            "is not an SO(2) or O(2) group"
        )
    return kind.default_grid(n=args.head_n)


def _add_export_parser(actions) -> None:
    from equiscope.cli import DefaultsHelpFormatter

    export = actions.add_parser(
        "export",
        formatter_class=DefaultsHelpFormatter,
        help="export a trained tagger, alone or behind a head, as a torch.export program",
        description="Write a tagger checkpoint (from 'equiscope jets train'), alone or behind "
        "a symmetrised head, as one torch.export program (.pt2) mapping momenta [jets, C, 4] "
        "(float64, any numbers of jets and constituents) to logits; it runs with torch "
        "alone: torch.export.load(PATH).module()(momenta). Checks the program against the "
        "eager tagger and prints the largest difference.",
    )
    export.add_argument("model", help="tagger checkpoint (model.pt from equiscope jets train)")
    export.add_argument("-o", "--output", required=True, help="output program (.pt2)")
    export.add_argument(
        "--head", choices=("average", "canonical"), help="export the tagger behind this head"
    )
    export.add_argument("--head-group", default="so2-axis", help="group of an average head")
    export.add_argument("--head-n", type=int, help="rotations of an average head's axial grid")
    export.add_argument(
        "--frame", default="jet", choices=("jet", "lab"), help="frame of a canonical head"
    )


def _export(args: argparse.Namespace) -> int:
    import torch

    from equiscope.cli import BadInput, require_at_least

    from .checkpoint import JetModelError, load_checkpoint
    from .export import example_jets, export_tagger, load_exported_tagger
    from .heads import SymmetrizedTagger
    from .peer import PeerUnavailable

    torch.set_num_threads(1)
    if args.head_n is not None:
        require_at_least(("--head-n", args.head_n, 1))
    output = Path(args.output)
    if output.suffix != ".pt2":
        raise BadInput(f"--output {output}: an exported program is a .pt2 file")
    if args.frame != "jet" and args.head != "canonical":
        raise BadInput(f"--frame sets the frame of a canonical head, not of --head {args.head}")
    try:
        model, training = load_checkpoint(args.model)
        if args.head is not None:
            grid = _head_grid(args)
            model = SymmetrizedTagger(
                model, args.head, group=args.head_group, grid=grid, frame=args.frame
            )
    except (JetModelError, PeerUnavailable) as error:
        raise BadInput(str(error)) from None
    except ValueError as error:  # a head option
        raise BadInput(str(error).splitlines()[0]) from None
    metadata = {"max_constituents": int(training.get("max_constituents", 64))}
    try:
        export_tagger(model, output, metadata=metadata)
    except OSError as error:
        raise BadInput(f"--output {output}: cannot write ({error.strerror})") from None
    except Exception as error:  # torch.export could not trace this tagger
        raise BadInput(f"{args.model}: torch.export failed ({type(error).__name__})") from None
    program = load_exported_tagger(output)
    jets = example_jets()
    with torch.no_grad():
        difference = float((program(jets) - model(jets)).abs().max())
    print(f"exported: {output} ({model.kind}; largest difference to eager: {difference:.2g})")
    return 0


def _audit_plugin():
    from equiscope.audit import AuditPlugin

    return AuditPlugin(
        name="jets",
        priority=10,
        accepts=is_tagger,
        command=_audit_command,
        describes="jet tagger checkpoint or exported .pt2",
    )


AUDIT = _audit_plugin()
"""``equiscope audit`` on jet taggers (checked before any other model file)."""
