"""Top tagging: an unconstrained transformer, its heads, an invariant baseline and ParT
====================================================================================

Top tagging on generated jets: an unconstrained transformer, its symmetrised heads,
an exactly invariant baseline and weaver-core's ParT, in one table and one figure.

All models see the same jets, split (70 / 10 / 20 % train / validation / test) and
training budget (``--epochs`` and ``--time-limit`` seconds each, whichever ends first;
early stopping on the validation loss). The unconstrained transformer and ParT are
trained with random rotations about the jet axis (``so2-axis``), the invariant baseline
needs none. The heads wrap the trained transformer at inference only: the average over
8 rotations about the jet axis (removes every m not divisible by 8) and the canonical jet
frame (exact about the jet axis and the beam). Columns: test accuracy, AUC, 1/eps_B at
eps_S = 0.3 and 0.5; the logit's equivariance RMSE relative to its RMS per subgroup on
``--audit-jets`` test jets (``so2-axis``, ``so2-beam``, ``so3``; ``boost-beam`` at
``|y| = 0.5``); training and inference throughput (jets/s, one thread). The unconstrained
transformer also gets a full audit report (per-layer spectra) in ``OUT/audit``.

Run it with:

.. code-block:: bash

    python examples/06_jet_tagging.py --top top.npz --qcd qcd.npz [--n 20000] \\
        [--epochs 8] [--time-limit 600] [--max-constituents 48] [--audit-jets 32] \\
        [-o jet-tagging] [--figure jets_tagging.png]

Without ``--top``/``--qcd`` the jets are generated first (about 50 top and 80 QCD jets
per second).
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

import equiscope as eq
from equiscope_jets import (
    JetData,
    SymmetrizedTagger,
    audit_tagger,
    classification_metrics,
    fit,
    generate_jets,
    inference_throughput,
    load_checkpoint,
    load_jets,
    predict,
    prepare_momenta,
    save_jets,
    split_indices,
    write_jet_report,
)
from equiscope_jets.audit import DEFAULT_GROUPS

GROUPS = ("so2-axis", "so2-beam", "so3")


# %%
# Data and the invariance measurement of every model's logit, per subgroup.


def _data(args) -> JetData:
    parts = []
    for process in ("top", "qcd"):
        path = getattr(args, process)
        if path is None:
            path = Path(args.output) / f"{process}.npz"
            start = time.perf_counter()
            save_jets(generate_jets(process, args.n, seed=args.seed), path)
            print(f"generated {args.n} {process} jets in {time.perf_counter() - start:.0f} s")
        parts.append(load_jets(path, limit=args.n))
    return JetData.concatenate(parts)


def _invariance(model, momenta) -> dict:
    """Relative equivariance RMSE per subgroup, and the beam boost at |y| = 0.5."""
    report = audit_tagger(
        model,
        momenta,
        groups=[*GROUPS, "boost-beam"],
        layers=False,
        rapidity_steps=5,
        convergence_jets=1,
        grids={"so3": eq.grid("lebedev", degree=4)},
    )
    out = {g: report["groups"][g]["outputs"]["logit"]["relative_equivariance"] for g in GROUPS}
    boost = report["boosts"]["boost-beam"]
    out["boost-beam"] = max(boost["relative"][1], boost["relative"][3])
    return out


# %%
# Train every model on the same split and budget, wrap the transformer in its heads,
# and measure accuracy, invariance and throughput.


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--top", help="top jets (npz or landscape HDF5)")
    parser.add_argument("--qcd", help="QCD jets")
    parser.add_argument("--n", type=int, default=20000, help="jets per class")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds per model")
    parser.add_argument("--max-constituents", type=int, default=48)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--audit-jets", type=int, default=32)
    parser.add_argument(
        "--audit-groups", default=",".join(DEFAULT_GROUPS), help="groups of the full audit"
    )
    parser.add_argument("--models", default="transformer,invariant,part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", default="jet-tagging")
    parser.add_argument("--figure", default=None, help="PNG (default: OUT/jets_tagging.png)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    data = _data(args)
    momenta = prepare_momenta(data, args.max_constituents)
    _, _, test = split_indices(data.label, seed=args.seed)
    test_momenta, test_labels = momenta[test], data.label[test]
    audit_momenta = test_momenta[: args.audit_jets]
    print(f"{len(data)} jets ({int(data.label.sum())} top), {len(test)} for testing")

    rows, scores = {}, {}
    for kind in args.models.split(","):
        augmentation = "none" if kind == "invariant" else "so2-axis"
        metrics = fit(
            data,
            output / kind,
            model=kind,
            config={"width": args.width, "depth": args.depth},
            max_constituents=args.max_constituents,
            split_seed=args.seed,
            augmentation=augmentation,
            epochs=args.epochs,
            time_limit=args.time_limit,
            patience=3,
            seed=args.seed,
            progress=not args.no_progress,
        )
        model, _ = load_checkpoint(output / kind / "model.pt")
        name = {
            "transformer": "unconstrained",
            "invariant": "exactly invariant",
            "part": "ParT (weaver-core)",
        }[kind]
        variants = [(name, model, metrics["inference_jets_per_second"])]
        if kind == "transformer":
            for label, head in (
                (
                    "unconstrained + average head (C8 about jet axis)",
                    SymmetrizedTagger(model, "average", grid=eq.grid("so2", n=8)),
                ),
                ("unconstrained + canonical jet frame", SymmetrizedTagger(model, "canonical")),
            ):
                variants.append((label, head, inference_throughput(head, test_momenta)))
            report = audit_tagger(
                model,
                audit_momenta,
                groups=args.audit_groups.split(","),
                labels=test_labels[: args.audit_jets],
                source=str(output / kind / "model.pt"),
            )
            write_jet_report(report, output / "audit")
        for label, tagger, rate in variants:
            logits = predict(tagger, test_momenta)
            scores[label] = logits
            rows[label] = {
                **classification_metrics(logits, test_labels),
                "invariance": _invariance(tagger, audit_momenta),
                "parameters": metrics["parameters"],
                "epochs": "{best_epoch}/{epochs_run}".format(**metrics["training"]),
                "train_jets_per_second": metrics["training"]["train_jets_per_second"],
                "train_seconds": metrics["training"]["train_seconds"],
                "inference_jets_per_second": rate,
            }
            print(f"{label}: AUC {rows[label]['auc']:.4f}", flush=True)

    (output / "comparison.json").write_text(json.dumps(rows, indent=2))
    header = (
        "| model | acc | AUC | 1/eps_B (0.3) | 1/eps_B (0.5) | A/rms so2-axis | so2-beam | so3 "
        "| boost-beam y=0.5 | params | best/run epochs | train jets/s | infer jets/s |"
    )
    lines = [header, "|" + "---|" * 13]
    for label, r in rows.items():
        inv = r["invariance"]
        lines.append(
            f"| {label} | {r['accuracy']:.4f} | {r['auc']:.4f} | {r['rejection_30']:.0f} "
            f"| {r['rejection_50']:.0f} | {inv['so2-axis']:.2g} | {inv['so2-beam']:.2g} "
            f"| {inv['so3']:.2g} | {inv['boost-beam']:.2g} | {r['parameters']} | {r['epochs']} "
            f"| {r['train_jets_per_second']:.0f} | {r['inference_jets_per_second']:.0f} |"
        )
    table = "\n".join(lines)
    (output / "comparison.md").write_text(table + "\n")
    print(table)

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for label, logits in scores.items():
        signal, background = logits[test_labels == 1], logits[test_labels == 0]
        thresholds = np.sort(signal)[::-1]
        eff_s = np.arange(1, len(thresholds) + 1) / len(thresholds)
        eff_b = np.searchsorted(np.sort(-background), -thresholds, side="right") / len(background)
        keep = eff_b > 0
        left.plot(eff_s[keep], 1 / eff_b[keep], label=f"{label} ({rows[label]['auc']:.4f})")
    left.set_yscale("log")
    left.set_xlabel("signal efficiency eps_S")
    left.set_ylabel("background rejection 1/eps_B")
    left.legend(fontsize=6)
    width = 0.8 / len(rows)
    keys = [*GROUPS, "boost-beam"]
    for i, (label, r) in enumerate(rows.items()):
        values = [max(r["invariance"][k], 1e-9) for k in keys]
        right.bar(
            np.arange(len(keys)) + (i - len(rows) / 2 + 0.5) * width, values, width, label=label
        )
    right.set_yscale("log")
    right.set_xticks(range(len(keys)))
    right.set_xticklabels(keys)
    right.set_ylabel("logit equivariance RMSE / RMS logit\n(exact zeros drawn at 1e-9)")
    figure.tight_layout()
    path = Path(args.figure) if args.figure else output / "jets_tagging.png"
    figure.savefig(path, dpi=80)
    print(f"wrote {path}, {output / 'comparison.md'}, {output / 'comparison.json'}")


# %%
# Run
# ---
# Generating 20,000 jets per class and training three models takes about an hour on
# one core, so this example is not executed in the documentation build. The numbers and
# figures of a full run are in :doc:`/jets`.

if __name__ == "__main__":
    main()
