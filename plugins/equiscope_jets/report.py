"""Write a jet audit: ``report.json``, ``report.md``, PNG figures, and one folder per
compact subgroup written by the atomistic report writer (same keys, same figures).

Top level (``DIR/``): ``report.json`` (everything; the contract's ``grid``, ``outputs``,
``layers`` are those of the first compact group), ``report.md``, ``errors.png``
(equivariance RMSE vs noise floor per subgroup), ``output_spectra.png`` (logit spectra
per subgroup), ``layer_spectra.png`` (share outside the invariant sector per layer and
subgroup), ``boosts.png`` (invariance error against rapidity). ``DIR/<group>/``: the
atomistic report of that subgroup alone (``report.json``, ``report.md`` and its figures).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["jet_markdown", "write_jet_report"]


def _fmt(value) -> str:
    return "-" if value is None else (f"{value:.3g}" if isinstance(value, float) else str(value))


def _verdict(out: dict) -> str:
    if out["equivariance_rmse"] <= 10 * out["noise_floor"]:
        return "invariant to round-off"
    if out["relative_equivariance"] < 0.01:
        return "nearly invariant (< 1% of the RMS logit)"
    return "symmetry broken"


def jet_markdown(report: dict) -> str:
    """The summary a person reads first."""
    lines = [
        "# equiscope audit of a jet tagger",
        "",
        f"- model: `{report['model']}` ({report['model_kind']}, {report['model_dtype']})",
        f"- data: {report['jets']} jets, {report['constituents']} constituents",
        "",
        "## Logit invariance per subgroup",
        "",
        "| group | grid | equivariance RMSE | relative to RMS logit | noise floor "
        "| largest non-invariant sectors | grid converged | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, group in report["groups"].items():
        out, grid = group["outputs"]["logit"], group["grid"]
        others = ", ".join(f"({k}): {v:.2g}" for k, v in out["breaking_sectors"].items())
        change = out["convergence"]["relative_change"]
        converged = f"{'yes' if out['converged'] else 'NO'} ({100 * change:.2g}%)"
        lines.append(
            f"| {name} ({grid['group']}) | {grid['name']}, {grid['size']} | "
            f"{_fmt(out['equivariance_rmse'])} | {_fmt(out['relative_equivariance'])} | "
            f"{_fmt(out['noise_floor'])} | {others or '-'} | {converged} | {_verdict(out)} |"
        )
    lines += [
        "",
        "Equivariance RMSE: spread of the logit over the orbit of each jet, pooled over "
        "jets (zero for an invariant tagger). Sectors: m for SO(2)/O(2) about an axis, "
        'lambda for SO(3)/O(3) ("lambda,sigma" with parity); an invariant logit lives '
        "in (0) or (0,1) only.",
    ]
    tagging = {n: g["outputs"]["logit"].get("tagging") for n, g in report["groups"].items()}
    if any(tagging.values()):
        lines += ["", "| group | AUC as given | AUC of the grid-averaged logit |", "|---|---|---|"]
        lines += [
            f"| {n} | {t['auc_input_frame']:.4f} | {t['auc_symmetrized']:.4f} |"
            for n, t in tagging.items()
            if t
        ]
    if report["boosts"]:
        lines += ["", "## Boosts (non-compact: error against rapidity, no Haar average)", ""]
        first = next(iter(report["boosts"].values()))
        header = " | ".join(f"y = {y:+.2g}" for y in first["rapidity"])
        lines += [f"| boost | {header} |", "|---" * (len(first["rapidity"]) + 1) + "|"]
        for name, b in report["boosts"].items():
            values = " | ".join(f"{r:.2g}" for r in b["relative"])
            lines.append(f"| {name} (relative) | {values} |")
        lines += [
            "",
            f"Rapidities: {first['distribution']}; relative = RMS over jets of "
            "f(boosted) - f(jet), divided by the RMS logit.",
        ]
    layer_names = sorted({k for g in report["groups"].values() for k in g["layers"]})
    if layer_names:
        lines += ["", "## Hidden layers: share of the squared norm in the invariant sector", ""]
        lines += ["| layer | " + " | ".join(report["groups"]) + " |"]
        lines += ["|---" * (len(report["groups"]) + 1) + "|"]
        for layer in layer_names:
            cells = []
            for group in report["groups"].values():
                spectrum = group["layers"].get(layer, {}).get("spectrum", {})
                trivial = group["outputs"]["logit"]["expected_sectors"][0]
                cells.append(f"{spectrum.get(trivial, float('nan')):.4f}")
            lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Figures",
        "",
        "- `errors.png`: equivariance RMSE vs noise floor per subgroup",
        "- `output_spectra.png`: character spectrum of the logit per subgroup",
        "- `layer_spectra.png`: share of each hidden layer outside the invariant sector",
        "- `boosts.png`: invariance error against rapidity",
        "- `<group>/`: the full per-subgroup report (same layout as the atomistic audit)",
        "",
    ]
    return "\n".join(lines)


def _figures(report: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = report["groups"]
    names = list(groups)
    if names:
        figure, axis = plt.subplots(figsize=(1.5 + 1.3 * len(names), 3.4))
        for offset, (label, key) in enumerate(
            (("equivariance RMSE", "equivariance_rmse"), ("noise floor", "noise_floor"))
        ):
            values = [max(groups[n]["outputs"]["logit"][key], 1e-18) for n in names]
            axis.bar(
                [i + (offset - 0.5) * 0.35 for i in range(len(names))], values, 0.35, label=label
            )
        axis.set_yscale("log")
        axis.set_xticks(range(len(names)))
        axis.set_xticklabels(names, rotation=20)
        axis.set_ylabel("logit RMSE")
        axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(folder / "errors.png", dpi=100)
        plt.close(figure)

        figure, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
        for axis, name in zip(axes[0], names, strict=True):
            spectrum = groups[name]["outputs"]["logit"]["spectrum"]
            expected = set(groups[name]["outputs"]["logit"]["expected_sectors"])
            keys = list(spectrum)
            axis.bar(
                range(len(keys)),
                [max(spectrum[k], 1e-18) for k in keys],
                color=["tab:green" if k in expected else "tab:red" for k in keys],
            )
            axis.set_yscale("log")
            axis.set_ylim(1e-16, 2)
            axis.set_xticks(range(len(keys)))
            axis.set_xticklabels(keys, rotation=60, fontsize=7)
            axis.set_title(name, fontsize=9)
        axes[0][0].set_ylabel("fraction of squared norm\n(green: invariant)")
        figure.tight_layout()
        figure.savefig(folder / "output_spectra.png", dpi=90)
        plt.close(figure)

        layer_names = list(next(iter(groups.values()))["layers"])
        if layer_names:
            figure, axis = plt.subplots(figsize=(6, 3.6))
            for name in names:
                trivial = groups[name]["outputs"]["logit"]["expected_sectors"][0]
                values = [
                    max(1 - groups[name]["layers"][layer]["spectrum"].get(trivial, 0.0), 1e-18)
                    for layer in layer_names
                ]
                axis.plot(range(len(layer_names)), values, "o-", label=name)
            axis.set_yscale("log")
            axis.set_xticks(range(len(layer_names)))
            axis.set_xticklabels(layer_names, rotation=20, fontsize=7)
            axis.set_ylabel("share outside the invariant sector")
            axis.legend(fontsize=7)
            figure.tight_layout()
            figure.savefig(folder / "layer_spectra.png", dpi=100)
            plt.close(figure)
    if report["boosts"]:
        figure, axis = plt.subplots(figsize=(5, 3.4))
        for name, b in report["boosts"].items():
            axis.plot(b["rapidity"], b["relative"], "o-", label=name)
        axis.set_xlabel("rapidity y of the boost")
        axis.set_ylabel("RMS |f(boosted) - f| / RMS f")
        axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(folder / "boosts.png", dpi=100)
        plt.close(figure)


def _group_report(report: dict, name: str) -> dict:
    group = report["groups"][name]
    return {
        **{k: report[k] for k in ("model", "model_dtype", "structures", "atoms")},
        "grid": group["grid"],
        "max_lambda": group["max_lambda"],
        "outputs": group["outputs"],
        "layers": group["layers"],
    }


def write_jet_report(report: dict, output: str | Path) -> Path:
    """Write the report into ``output`` (staged in a temporary folder, then moved)."""
    from equiscope.report import markdown_summary, write_report

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        (staging / "report.json").write_text(json.dumps(report, indent=2))
        (staging / "report.md").write_text(jet_markdown(report))
        _figures(report, staging)
        for name in report["groups"]:
            sub = _group_report(report, name)
            write_report(sub, staging / name)
            text = markdown_summary(sub).replace(" structures, ", " jets, ")
            text = text.replace(" atoms\n", " constituents\n").replace("lambda =", "degree =")
            (staging / name / "report.md").write_text(text)
        output.mkdir(exist_ok=True)
        for item in staging.iterdir():
            target = output / item.name
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(item, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output
