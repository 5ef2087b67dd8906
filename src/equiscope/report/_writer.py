"""Write an audit report: ``report.json``, ``report.md`` and PNG figures.

Everything is written to a temporary folder first and moved into place at the
end, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["markdown_summary", "write_report"]

FIGURES = {
    "output_spectra.png": "character spectrum of each output (direct frame)",
    "errors.png": "equivariance RMSE vs noise floor and accuracy, per output",
    "equivariance_distribution.png": "equivariance error per structure",
    "convergence.png": "equivariance RMSE on the audit grid and a finer one",
    "layer_spectra.png": "spectra of hidden node and edge features, per layer",
}


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _verdict(out: dict) -> str:
    ratio = out["equivariance_rmse"] / max(out["noise_floor"], 1e-300)
    if ratio <= 10:
        return "equivariant to round-off"
    accuracy = out.get("accuracy")
    if accuracy and out["equivariance_rmse"] < 0.1 * accuracy["symmetrized_rmse"]:
        return "symmetry error small next to the model error"
    return "symmetry broken"


def markdown_summary(report: dict) -> str:
    grid = report["grid"]
    lines = [
        "# equiscope audit",
        "",
        f"- model: `{report['model']}` ({report['model_dtype']})",
        f"- data: {report['structures']} structures, {report['atoms']} atoms",
        f"- grid: {grid['name']} on {grid['group']}, {grid['size']} elements, products "
        f"exact to lambda = {grid['exact_degree']}; spectra up to lambda = "
        f"{report['max_lambda']}",
        "",
        "## Outputs",
        "",
        "| output | equivariance RMSE | noise floor | oriented RMSE | symmetrised RMSE "
        "| grid converged | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, out in report["outputs"].items():
        accuracy = out.get("accuracy", {})
        unit = " (per atom)" if out["per_atom"] else ""
        change = out.get("convergence", {}).get("relative_change")
        converged = (
            "-"
            if out["converged"] is None
            else (f"{'yes' if out['converged'] else 'NO'} ({100 * change:.2g}%)")
        )
        lines.append(
            f"| {name}{unit} | {_fmt(out['equivariance_rmse'])} | {_fmt(out['noise_floor'])} "
            f"| {_fmt(accuracy.get('oriented_rmse'))} "
            f"| {_fmt(accuracy.get('symmetrized_rmse'))} | {converged} | {_verdict(out)} |"
        )
    lines += [
        "",
        "Equivariance RMSE: spread of the back-transformed predictions over the grid "
        "(zero for an equivariant model). Noise floor: the larger of eps(model dtype) x "
        "RMS output and the measured spread of outputs when the inputs move by their "
        "rounding error; below it, symmetry breaking is round-off. With labels, "
        "oriented^2 = symmetrised^2 + equivariance^2 (oriented: error on randomly "
        "oriented inputs; symmetrised: error of the grid-averaged prediction).",
        "",
        "## Where the symmetry breaks",
        "",
        "| output | expected sectors | largest other sectors (fraction of squared norm) |",
        "|---|---|---|",
    ]
    for name, out in report["outputs"].items():
        others = ", ".join(f"({k}): {v:.2g}" for k, v in out["breaking_sectors"].items())
        expected = " ".join(f"({k})" for k in out["expected_sectors"])
        lines.append(f"| {name} | {expected} | {others or '-'} |")
    if report["layers"]:
        lines += [
            "",
            "## Hidden layers",
            "",
            "| layer | invariant (0,1) | largest other sectors | above max lambda |",
            "|---|---|---|---|",
        ]
        for path, layer in report["layers"].items():
            spectrum = layer["spectrum"]
            invariant = spectrum.get("0,1", spectrum.get("0", 0.0))
            others = sorted(
                ((k, v) for k, v in spectrum.items() if k not in ("0,1", "0")),
                key=lambda kv: -kv[1],
            )[:3]
            text = ", ".join(f"({k}): {v:.2g}" for k, v in others)
            lines.append(f"| {path} | {invariant:.6f} | {text} | {layer['above_max_lambda']:.2g} |")
    lines += ["", "## Figures", ""]
    lines += [f"- `{name}`: {text}" for name, text in FIGURES.items() if name in _drawn(report)]
    lines.append("")
    return "\n".join(lines)


def _figures(report: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outputs = report["outputs"]
    names = list(outputs)

    figure, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        spectrum = outputs[name]["spectrum"]
        expected = set(outputs[name]["expected_sectors"])
        keys = list(spectrum)
        colors = ["tab:green" if k in expected else "tab:red" for k in keys]
        axis.bar(range(len(keys)), [max(spectrum[k], 1e-18) for k in keys], color=colors)
        axis.set_yscale("log")
        axis.set_ylim(1e-16, 2)
        axis.set_xticks(range(len(keys)))
        axis.set_xticklabels(keys, rotation=60, fontsize=7)
        axis.set_title(name)
    axes[0][0].set_ylabel("fraction of squared norm\n(green: expected)")
    figure.tight_layout()
    figure.savefig(folder / "output_spectra.png", dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(1.6 + 1.8 * len(names), 3.6))
    series = [
        ("equivariance RMSE", "equivariance_rmse"),
        ("noise floor", "noise_floor"),
    ]
    extra = [
        ("symmetrised RMSE", "symmetrized_rmse"),
        ("oriented RMSE", "oriented_rmse"),
    ]
    width = 0.2
    for offset, (label, key) in enumerate(series + extra):
        values = [outputs[n].get(key, outputs[n].get("accuracy", {}).get(key)) for n in names]
        if all(v is None for v in values):
            continue
        positions = [i + (offset - 1.5) * width for i in range(len(names))]
        axis.bar(positions, [v or 0 for v in values], width=width, label=label)
    axis.set_yscale("log")
    axis.set_xticks(range(len(names)))
    axis.set_xticklabels(names)
    axis.set_ylabel("RMSE (output units; energies per atom)")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(folder / "errors.png", dpi=110)
    plt.close(figure)

    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    for name in names:
        values = [max(v, 1e-18) for v in outputs[name]["per_structure_equivariance"]]
        low, high = math.log10(min(values)), math.log10(max(values)) + 1e-9
        bins = [10 ** (low + (high - low) * i / 20) for i in range(21)] if high > low else 10
        axis.hist(values, bins=bins, histtype="step", label=name)
    axis.set_xscale("log")
    axis.set_xlabel("equivariance error per structure (RMS over entries)")
    axis.set_ylabel("structures")
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(folder / "equivariance_distribution.png", dpi=110)
    plt.close(figure)

    checked = [name for name in names if outputs[name].get("convergence")]
    if checked:  # (no figure with --convergence-structures 0: see _drawn)
        figure, axis = plt.subplots(figsize=(5.5, 3.6))
        for name in checked:
            convergence = outputs[name]["convergence"]
            sizes = [g["size"] for g in convergence["grids"]]
            axis.plot(sizes, convergence["equivariance_rmse"], "o-", label=name)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("grid size")
        axis.set_ylabel("equivariance RMSE (first structures)")
        axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(folder / "convergence.png", dpi=110)
        plt.close(figure)

    layers = report["layers"]
    if layers:
        kinds = sorted({p.rsplit("_", 1)[-1] for p in layers})
        figure, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 3.8), squeeze=False)
        for axis, kind in zip(axes[0], kinds, strict=True):
            paths = [p for p in layers if p.endswith("_" + kind)]
            sectors = [k for k in layers[paths[0]]["spectrum"] if k not in ("0,1", "0")]
            bottom = [0.0] * len(paths)
            for sector in sectors:
                heights = [layers[p]["spectrum"].get(sector, 0.0) for p in paths]
                axis.bar(range(len(paths)), heights, bottom=bottom, label=f"({sector})")
                bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
            axis.set_xticks(range(len(paths)))
            axis.set_xticklabels([p.rsplit("_", 1)[0] for p in paths], rotation=30)
            axis.set_ylabel("fraction of squared norm outside (0,1)")
            axis.set_title(f"{kind} features")
            axis.legend(fontsize=6, ncol=2)
        figure.tight_layout()
        figure.savefig(folder / "layer_spectra.png", dpi=110)
        plt.close(figure)


def _drawn(report: dict) -> set[str]:
    """The figures ``report`` has data for."""
    drawn = set(FIGURES)
    if not report["layers"]:
        drawn.discard("layer_spectra.png")
    if not any(out.get("convergence") for out in report["outputs"].values()):
        drawn.discard("convergence.png")
    return drawn


def write_report(report: dict, output: str | Path) -> Path:
    """Write ``report.json``, ``report.md`` and the figures into ``output`` (figures of
    an earlier report that this one does not draw are removed)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        (staging / "report.json").write_text(json.dumps(report, indent=2))
        (staging / "report.md").write_text(markdown_summary(report))
        _figures(report, staging)
        output.mkdir(exist_ok=True)
        for name in set(FIGURES) - _drawn(report):
            (output / name).unlink(missing_ok=True)
        for item in staging.iterdir():
            os.replace(item, output / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output
