"""Write an audit report: ``report.json``, ``report.md`` and PNG figures.

The report states every number with its unit, the rule behind each verdict
(:func:`verdict_rule`), the worst samples first, and for each output whose symmetry
is broken the grid that removes its dominant sectors with the command that builds
the symmetrised model (:func:`advice`). Everything is written to a temporary folder
first and moved into place at the end, so a failed run leaves nothing half-written.

Domain-neutral where cheap: the sample noun comes from ``report["sample_noun"]``
(default ``"structures"``), sample names from ``report["per_structure"]`` when
present, and advice is given only when ``report["symmetrizable"]`` is true.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import shlex
import shutil
import tempfile
from pathlib import Path

__all__ = [
    "ACCURACY_SHARE",
    "FLOOR_FACTOR",
    "RMS_SHARE",
    "advice",
    "annotated",
    "histogram_bins",
    "judge",
    "markdown_summary",
    "symmetrize_command",
    "terminal_summary",
    "verdict_rule",
    "write_report",
]

FLOOR_FACTOR = 10.0  # A <= 10 x noise floor: round-off
ACCURACY_SHARE = 0.10  # with labels: A < 10 % of the symmetrised RMSE
RMS_SHARE = 0.01  # without labels: A < 1 % of the output's RMS
CONVERGENCE_RTOL = 0.01  # the audit's grid-convergence criterion (relative change)
BREAKING_SHARE = 0.99  # advice removes the sectors holding 99 % of the breaking weight
TABLE_ROWS = 10

FIGURES = {
    "output_spectra.png": "character spectrum of each output (direct frame) with its noise floor",
    "errors.png": "equivariance RMSE vs noise floor and accuracy, per output",
    "equivariance_distribution.png": "equivariance error per structure",
    "convergence.png": "equivariance RMSE on the audit grid and a finer one, relative change",
    "layer_spectra.png": "spectra of hidden node and edge features, per layer",
}

NO_UNIT = "units not declared"


def verdict_rule() -> str:
    """The rule behind the verdicts, as ``report.md`` states it."""
    return (
        "Verdict rule, per output (A: its equivariance RMSE). "
        f"*equivariant to round-off* if A <= {FLOOR_FACTOR:g}x the noise floor. Otherwise, "
        "when the data has labels for the output: *small next to the model error* if A < "
        f"{100 * ACCURACY_SHARE:g} % of the symmetrised RMSE (the error of the grid-averaged "
        "prediction; the error on randomly oriented inputs is then less than 0.5 % above "
        "it, since oriented^2 = symmetrised^2 + A^2), else *symmetry broken*. Without "
        f"labels: *small next to the output* if A < {100 * RMS_SHARE:g} % of the output's "
        "RMS value, else *symmetry broken*. (The RMS of an absolute energy includes its "
        "constant offset: give labels for the sharper test.)"
    )


def judge(out: dict) -> dict:
    """The verdict on one output of a report: ``verdict``, ``verdict_rule`` (the part
    of :func:`verdict_rule` that decided), ``compared_with`` and ``verdict_ratio``
    (A over the quantity it was compared with)."""
    rmse = out["equivariance_rmse"]
    floor = out["noise_floor"]
    if rmse <= FLOOR_FACTOR * floor:
        return {
            "verdict": "equivariant to round-off",
            "verdict_rule": f"A <= {FLOOR_FACTOR:g}x noise floor",
            "compared_with": "noise_floor",
            "verdict_ratio": rmse / floor if floor > 0 else 0.0,
        }
    accuracy = out.get("accuracy")
    if accuracy:
        reference, share, name = accuracy["symmetrized_rmse"], ACCURACY_SHARE, "symmetrised RMSE"
        passed, key = "small next to the model error", "symmetrized_rmse"
    else:
        reference, share, name = out.get("rms_value", 0.0), RMS_SHARE, "RMS value"
        passed, key = "small next to the output", "rms_value"
    ratio = rmse / reference if reference > 0 else None  # (JSON has no infinity)
    return {
        "verdict": passed if ratio is not None and ratio < share else "symmetry broken",
        "verdict_rule": f"A < {100 * share:g} % of the {name}",
        "compared_with": key,
        "verdict_ratio": ratio,
    }


def _severity(out: dict) -> float:
    """How far an output is from passing its rule: > 1 is broken."""
    judged = judge(out)
    if judged["verdict_ratio"] is None:
        return math.inf
    limit = {"noise_floor": FLOOR_FACTOR, "symmetrized_rmse": ACCURACY_SHARE}.get(
        judged["compared_with"], RMS_SHARE
    )
    return judged["verdict_ratio"] / limit


def _compared(out: dict) -> str:
    judged = judge(out)
    ratio = judged["verdict_ratio"]
    if judged["compared_with"] == "noise_floor":
        return f"{ratio:.2g}x noise floor"
    if ratio is None:
        return "-"
    what = "symmetrised RMSE" if judged["compared_with"] == "symmetrized_rmse" else "RMS value"
    return f"{100 * ratio:.2g} % of {what}"


# -- advice --------------------------------------------------------------------------


def _sector(label: str) -> tuple[int, int]:
    parts = [int(p) for p in label.split(",")]
    return (parts[0], parts[1] if len(parts) > 1 else 0)


def _output_degrees(irrep) -> set[int]:
    """The lambdas of an output's own representation."""
    if irrep == "scalar":
        return {0}
    if irrep == "vector":
        return {1}
    if irrep == "rank2":
        return {0, 1, 2}
    return {int(irrep[0])}


def _breaking_share(out: dict, sectors: list[str]) -> float:
    """The share of the breaking weight (outside the expected sectors) in ``sectors``."""
    expected = set(out["expected_sectors"])
    total = sum(v for k, v in out["spectrum"].items() if k not in expected and v > 0)
    return sum(out["spectrum"][k] for k in sectors) / total if total > 0 else 0.0


def dominant_sectors(out: dict, share: float = BREAKING_SHARE) -> list[str]:
    """The breaking sectors holding ``share`` of the breaking weight, largest first
    (none when no sector outside the expected ones holds weight)."""
    expected = set(out["expected_sectors"])
    breaking = sorted(
        ((k, v) for k, v in out["spectrum"].items() if k not in expected and v > 0),
        key=lambda kv: -kv[1],
    )
    total = sum(v for _, v in breaking)
    chosen, held = [], 0.0
    for key, value in breaking:
        if held >= share * total:
            break
        chosen.append(key)
        held += value
    return chosen


def _source(report: dict, name: str) -> tuple[str, dict, float]:
    """The output whose spectrum tells what to remove from ``name``, and the share of
    its breaking weight to remove: an output derived from another (forces and stress
    from the energy, ``derived_from``) breaks in exactly the degrees its source does,
    which the source's (scalar) spectrum shows without the guesswork of a vector's
    direct frame; its small sectors matter more after the derivative, so 99.99 % of
    them."""
    outputs = report["outputs"]
    source = outputs[name].get("derived_from")
    if source in outputs and dominant_sectors(outputs[source]):
        return source, outputs[source], 1 - (1 - BREAKING_SHARE) ** 2
    return name, outputs[name], BREAKING_SHARE


def removal_needs(out: dict, share: float = BREAKING_SHARE) -> tuple[set[int], bool]:
    """The lambdas a grid must average out exactly, and whether it needs inversion, to
    remove the output's dominant sectors. A direct-frame sector lambda of an output of
    degree l back-rotates into degrees |lambda - l| .. lambda + l (all of them, to be
    safe); averaging removes every one but 0. A sector of the output's own degree with
    the wrong parity keeps a degree-0 part under rotations: only inversion removes it."""
    own = _output_degrees(out["irrep"])
    expected = set(out["expected_sectors"])
    degrees: set[int] = set()
    inversion = False
    for label in dominant_sectors(out, share):
        lam, sigma = _sector(label)
        for degree in own:
            degrees |= set(range(abs(lam - degree), lam + degree + 1))
        if lam in own and label not in expected and sigma != 0:
            inversion = True
    degrees.discard(0)
    return degrees, inversion


@functools.lru_cache(maxsize=32)
def _cheapest(degrees: frozenset, inversion: bool):
    from ..grids import cheapest_grid

    return cheapest_grid(set(degrees), inversion=inversion)


def symmetrize_command(
    model: str,
    grid: str,
    *,
    degree: int | None = None,
    inversion: bool = False,
    max_lambda: int | None = None,
) -> str:
    """The shell command that wraps the exported ``model`` in a head averaging over
    ``grid`` (a metatrain checkpoint is exported with ``mtt export`` first)."""
    path = Path(model)
    prefix = ""
    if path.suffix == ".ckpt":
        exported = path.with_suffix(".pt")
        prefix = f"mtt export {shlex.quote(str(path))} -o {shlex.quote(str(exported))} && "
        path = exported
    target = path.with_name(f"{path.stem}-sym.pt")
    parts = ["equiscope", "symmetrize", str(path), "-o", str(target), "--grid", grid]
    if degree is not None:
        parts += ["--degree", str(degree)]
    if not inversion:  # `equiscope symmetrize` includes inversion unless told not to
        parts.append("--no-inversion")
    if max_lambda is not None:
        parts += ["--max-lambda", str(max_lambda)]
    return prefix + " ".join(shlex.quote(part) for part in parts)


def advice(report: dict, name: str) -> str | None:
    """One line for a broken output: the cheapest grid that averages out its dominant
    sectors, the command that builds the symmetrised model, and its cost (``None``
    when the output is not broken or the report's model cannot be symmetrised)."""
    out = report["outputs"][name]
    if not report.get("symmetrizable") or judge(out)["verdict"] != "symmetry broken":
        return None
    via, source, share = _source(report, name)
    chosen = dominant_sectors(source, share)
    if not chosen:
        return (
            f"{name}: no sector outside the expected ones holds weight up to lambda = "
            f"{report['max_lambda']}: the breaking lies above it or inside the expected "
            "sectors; audit again on a finer grid (e.g. `--grid lebedev --degree "
            f"{2 * report['max_lambda'] + 4}`) to see where"
        )
    degrees, inversion = removal_needs(source, share)
    grid_name, degree, size = _grid_for(degrees, inversion)
    spherical = not isinstance(out["irrep"], str) and int(out["irrep"][0]) > 3
    max_lambda = int(out["irrep"][0]) if spherical else None
    command = _head_command(report, grid_name, degree, inversion, max_lambda)
    removes = f"lambda {', '.join(map(str, sorted(degrees)))}" if degrees else ""
    if inversion:
        removes += (" and " if removes else "") + "the parity-odd part"
    label = grid_name + (f" (degree {degree})" if degree is not None else "")
    sectors = ", ".join(f"({k})" for k in chosen)
    where = f"of {via}, which it derives from, " if via != name else ""
    return (
        f"{name}: sectors {sectors} {where}hold {100 * _breaking_share(source, chosen):.3g} % "
        f"of the symmetry breaking; averaging over the {label} grid"
        f"{' with inversion' if inversion else ''} removes them ({removes}) at {size} "
        f"evaluations per call: `{command}`"
    )


def _grid_for(degrees: set[int], inversion: bool) -> tuple[str, int | None, int]:
    """Name, Lebedev degree (or ``None``) and size of the cheapest grid averaging out
    ``degrees`` (with inversion: the smallest grid, when only parity is to remove)."""
    grid = _cheapest(frozenset(degrees or {1}), inversion)
    return grid.name, grid.to_dict().get("degree"), grid.size


# -- markdown ------------------------------------------------------------------------


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _unit(out: dict) -> str:
    unit = out.get("unit")
    if unit:
        return unit
    return f"per atom; {NO_UNIT}" if out.get("per_atom") else NO_UNIT


def _noun(report: dict) -> str:
    return report.get("sample_noun", "structures")


def _size_noun(report: dict) -> str:
    """What a sample is made of: ``"atoms"``, or e.g. ``"constituents"`` for jets."""
    return report.get("size_noun", "atoms")


def _degree(report: dict) -> str:
    """The name of the irreps' degree: ``"lambda"`` (O(3)) or e.g. ``"degree"``."""
    return report.get("degree_name", "lambda")


def _structure_table(report: dict) -> list[str]:
    outputs = report["outputs"]
    names = [n for n in outputs if outputs[n].get("per_structure_equivariance")]
    if not names:
        return []
    worst = max(names, key=lambda n: _severity(outputs[n]))
    values = outputs[worst]["per_structure_equivariance"]
    order = sorted(range(len(values)), key=lambda i: -values[i])
    info = report.get("per_structure", {})
    noun = _noun(report)
    columns = ["rank", "index in data"]
    if "formula" in info:
        columns.append("formula")
    if "atoms" in info:
        columns.append("atoms")
    columns += [f"A: {n} ({_unit(outputs[n])})" for n in names]
    lines = [
        "",
        f"## {noun.capitalize()}, worst first",
        "",
        f"Sorted by the equivariance error A of {worst} (RMS over its entries, per "
        f"{noun.rstrip('s')}), the output furthest from passing its rule.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for rank, i in enumerate(order[:TABLE_ROWS], start=1):
        cells = [str(rank), str(info.get("index", list(range(len(values))))[i])]
        if "formula" in info:
            cells.append(info["formula"][i])
        if "atoms" in info:
            cells.append(str(info["atoms"][i]))
        cells += [_fmt(outputs[n]["per_structure_equivariance"][i]) for n in names]
        lines.append("| " + " | ".join(cells) + " |")
    more = len(order) - TABLE_ROWS
    if more > 0:
        lines += [
            "",
            f"{more} more {noun} in report.json (`outputs.NAME.per_structure_equivariance`, "
            "in the data's order; `per_structure` names them).",
        ]
    return lines


def _advice_lines(report: dict) -> list[str]:
    if not report.get("symmetrizable"):
        return []
    lines = ["", "## Next step", ""]
    outputs = report["outputs"]
    broken = [n for n in outputs if judge(outputs[n])["verdict"] == "symmetry broken"]
    if not broken:
        return [*lines, "Every output passes the verdict rule: nothing to symmetrise."]
    lines += [f"- {advice(report, name)}" for name in broken]
    together = _advice_for_all(report, broken)
    if together:
        lines.append(f"- all of them with one head: {together}")
    unconverged = [n for n in broken if outputs[n]["converged"] is False]
    lines += [
        "",
        f"Sectors are those resolved up to {_degree(report)} = {report['max_lambda']}"
        + (
            f"; the grid has not converged for {', '.join(unconverged)}: audit on a finer "
            "grid before trusting them"
            if unconverged
            else ""
        )
        + (
            ". EquiscopeCalculator averages energy, forces and stress of the calculator "
            "alike; audit the wrapped calculator (a factory returning it) to confirm."
            if report.get("symmetrizable") == "calculator"
            else ". One head averages every output of the model (forces and stress come "
            "from its averaged energy); audit the symmetrised model (`equiscope audit "
            "MODEL-sym.pt DATA`) to confirm."
        ),
    ]
    return lines


def _advice_for_all(report: dict, broken: list[str]) -> str | None:
    """The command for one grid that removes the dominant sectors of every broken
    output, when their own grids differ."""
    needs = []
    for name in broken:
        _, source, share = _source(report, name)
        if dominant_sectors(source, share):
            needs.append(removal_needs(source, share))
    grids = {(*_grid_for(d, i), i) for d, i in needs}
    if len(grids) < 2:
        return None
    inversion = any(i for _, i in needs)
    grid_name, degree, size = _grid_for(set().union(*(d for d, _ in needs)), inversion)
    command = _head_command(report, grid_name, degree, inversion, None)
    return f"`{command}` ({size} evaluations per call)"


def _head_command(report: dict, grid: str, degree, inversion: bool, max_lambda) -> str:
    """How to get the averaged model: ``equiscope symmetrize`` for a metatomic model,
    ``EquiscopeCalculator`` around an ASE calculator."""
    if report.get("symmetrizable") == "calculator":
        options = f", grid={grid!r}" + (f", degree={degree}" if degree else "")
        return f"EquiscopeCalculator(calculator{options}, inversion={inversion})"
    return symmetrize_command(
        report["model"], grid, degree=degree, inversion=inversion, max_lambda=max_lambda
    )


def _grid_line(report: dict) -> str:
    grid, degree = report["grid"], _degree(report)
    if grid.get("randomly_oriented"):
        inverted = (
            ", each inverted as a whole with probability 1/2"
            if grid.get("inversion") == "random per replicate"
            else ""
        )
        per_output = ", ".join(
            f"{name} {out['estimate']['replicates'][1]}"
            for name, out in report["outputs"].items()
            if out.get("estimate")
        )
        counts = f" ({per_output})" if per_output else ""
        later = grid.get("refinement")
        then = (
            f", then {later['name']} grids ({later['size']} elements) for what was short "
            "of precision"
            if later
            else ""
        )
        return (
            f"- estimate: randomly oriented {grid['name']} grids on {grid['group']} "
            f"({grid['size']} elements each{inverted}){then}, per "
            f"{_noun(report).rstrip('s')} and output{counts}; {grid['copies']} evaluations "
            f"in all; spectra up to {degree} = {report['max_lambda']}"
        )
    return (
        f"- grid: {grid['name']} on {grid['group']}, {grid['size']} elements, products "
        f"exact to {degree} = {grid['exact_degree']}; spectra up to {degree} = "
        f"{report['max_lambda']}"
    )


def _with_interval(out: dict) -> str:
    """The equivariance RMSE, with its 95 % interval when estimated."""
    interval = out.get("equivariance_rmse_ci95")
    value = _fmt(out["equivariance_rmse"])
    if not interval:
        return value
    return f"{value} [{_fmt(interval[0])}, {_fmt(interval[1])}]"


def _converged(out: dict) -> str:
    if out["converged"] is None:
        return "-"
    answer = "yes" if out["converged"] else "NO"
    if "estimate" in out:
        return f"{answer} (±{100 * out['estimate']['relative_half_width']:.2g}%)"
    change = out.get("convergence", {}).get("relative_change")
    return answer if change is None else f"{answer} ({100 * change:.2g}%)"


def markdown_summary(report: dict) -> str:
    """``report.md``: the outputs with units and verdicts, the rule, the next step, the
    worst samples, the breaking sectors, the hidden layers and the figures."""
    estimated = bool(report["grid"].get("randomly_oriented"))
    lines = [
        "# equiscope audit",
        "",
        f"- model: `{report['model']}` ({report['model_dtype']})",
        f"- data: {report['structures']} {_noun(report)}, {report['atoms']} {_size_noun(report)}",
        _grid_line(report),
        "",
        "## Outputs",
        "",
        "| output (unit) | equivariance RMSE | noise floor | oriented RMSE | symmetrised RMSE "
        f"| A compared | {'precision' if estimated else 'grid converged'} | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, out in report["outputs"].items():
        accuracy = out.get("accuracy", {})
        lines.append(
            f"| {name} ({_unit(out)}) | {_with_interval(out)} "
            f"| {_fmt(out['noise_floor'])} | {_fmt(accuracy.get('oriented_rmse'))} "
            f"| {_fmt(accuracy.get('symmetrized_rmse'))} | {_compared(out)} | {_converged(out)} "
            f"| {judge(out)['verdict']} |"
        )
    lines += [
        "",
        verdict_rule(),
        "",
        "Equivariance RMSE: spread of the back-transformed predictions over the grid "
        "(zero for an equivariant model), in the output's unit. Noise floor: the larger of "
        "eps(model dtype) x RMS output and the measured spread of outputs when the inputs "
        "move by their rounding error; below it, symmetry breaking is round-off. With "
        "labels, oriented^2 = symmetrised^2 + equivariance^2 (oriented: error on randomly "
        "oriented inputs; symmetrised: error of the grid-averaged prediction). "
        + (
            "The equivariance RMSE is an unbiased estimate from randomly oriented grids, "
            "with its 95 % interval in brackets; precision: the interval's half-width "
            "relative to the estimate (yes: within the target, or below 10 noise floors). "
            "Spectra are fractions of the total; sectors whose interval includes zero "
            "show as 0."
            if estimated
            else "Grid converged: the equivariance RMSE changes by less than "
            f"{100 * CONVERGENCE_RTOL:g} % on the next finer grid (the change in brackets). "
            "A fixed grid sees nothing of the sectors it leaves invariant: its equivariance "
            "RMSE can be too low, and 'above max lambda' below shows what its spectra miss."
        ),
    ]
    lines += _advice_lines(report)
    lines += _structure_table(report)
    lines += [
        "",
        "## Where the symmetry breaks",
        "",
        "| output | expected sectors | largest other sectors (fraction of squared norm) "
        "| above max lambda |",
        "|---|---|---|---|",
    ]
    for name, out in report["outputs"].items():
        others = ", ".join(f"({k}): {v:.2g}" for k, v in out["breaking_sectors"].items())
        expected = " ".join(f"({k})" for k in out["expected_sectors"])
        above = out.get("above_max_lambda")
        above = "-" if above is None else f"{above:.2g}"
        lines.append(f"| {name} | {expected} | {others or '-'} | {above} |")
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


def terminal_summary(report: dict) -> str:
    """The part of ``report.md`` worth printing after an audit: the outputs, the rule
    and the next step."""
    text = markdown_summary(report)
    noun = _noun(report).capitalize()
    for heading in (f"## {noun}, worst first", "## Where the symmetry breaks"):
        text = text.split(heading)[0]
    return text.rstrip()


# -- figures -------------------------------------------------------------------------


def histogram_bins(values: list[float], n: int = 20) -> tuple[list[float], list[float]]:
    """``values`` made positive for a log axis (zeros at a tenth of the smallest
    positive value, or 1e-18 when none is) and ``n + 1`` log-spaced bin edges that hold
    every value: the range is padded by 2 % of its width in log space (half a decade
    each side when all values are equal), so rounding in ``10 ** log10(x)`` cannot push
    the smallest or largest value out of the histogram."""
    positive = [v for v in values if v > 0]
    floor = min(positive) / 10 if positive else 1e-18
    shown = [v if v > 0 else floor for v in values]
    low, high = math.log10(min(shown)), math.log10(max(shown))
    if high - low < 1e-6:
        low, high = low - 0.5, high + 0.5
    else:
        pad = 0.02 * (high - low)
        low, high = low - pad, high + pad
    return shown, [10 ** (low + (high - low) * i / n) for i in range(n + 1)]


def _label(name: str, out: dict) -> str:
    return f"{name} ({_unit(out)})"


def _output_spectra(plt, outputs: dict, names: list[str], folder: Path) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    figure, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.6), squeeze=False)
    for axis, name in zip(axes[0], names, strict=True):
        out = outputs[name]
        spectrum = out["spectrum"]
        expected = set(out["expected_sectors"])
        keys = list(spectrum)
        colors = ["tab:green" if k in expected else "tab:red" for k in keys]
        rms = out.get("rms_value") or 0.0
        level = (out["noise_floor"] / rms) ** 2 if rms > 0 and out["noise_floor"] > 0 else None
        bottom = min(1e-16, level / 10) if level else 1e-16  # (float64 floors: ~1e-32)
        axis.bar(range(len(keys)), [max(spectrum[k], bottom / 100) for k in keys], color=colors)
        axis.set_yscale("log")
        axis.set_ylim(bottom, 2)
        axis.set_xticks(range(len(keys)))
        axis.set_xticklabels(keys, rotation=60, fontsize=7)
        axis.set_xlabel("sector (lambda,sigma)", fontsize=7)
        axis.set_title(name)
        handles = []
        if any(k in expected and spectrum[k] >= bottom for k in keys):
            handles.append(Patch(color="tab:green", label="expected"))
        if any(k not in expected and spectrum[k] >= bottom for k in keys):
            handles.append(Patch(color="tab:red", label="symmetry breaking"))
        if level is not None and level <= 2:
            axis.axhline(level, color="k", linestyle="--", linewidth=1)
            handles.append(
                Line2D([], [], color="k", linestyle="--", label="noise floor: (floor / RMS)^2")
            )
        if handles:
            axis.legend(handles=handles, fontsize=6, loc="best")
    axes[0][0].set_ylabel("fraction of squared norm")
    figure.tight_layout()
    figure.savefig(folder / "output_spectra.png", dpi=110)
    plt.close(figure)


def _errors(plt, outputs: dict, names: list[str], folder: Path) -> None:
    figure, axis = plt.subplots(figsize=(1.6 + 2.0 * len(names), 3.8))
    series = [
        ("equivariance RMSE", "equivariance_rmse"),
        ("noise floor", "noise_floor"),
        ("symmetrised RMSE", "symmetrized_rmse"),
        ("oriented RMSE", "oriented_rmse"),
    ]
    width = 0.2
    drawn = []
    for label, key in series:
        values = [outputs[n].get(key, outputs[n].get("accuracy", {}).get(key)) for n in names]
        if not all(v is None for v in values):
            drawn.append((label, values))
    for offset, (label, values) in enumerate(drawn):
        positions = [i + (offset - (len(drawn) - 1) / 2) * width for i in range(len(names))]
        axis.bar(positions, [v or 0 for v in values], width=width, label=label)
    axis.set_yscale("log")
    axis.set_xticks(range(len(names)))
    axis.set_xticklabels([f"{n}\n({_unit(outputs[n])})" for n in names], fontsize=7)
    axis.set_ylabel("RMSE, in each output's unit")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.tight_layout()
    figure.savefig(folder / "errors.png", dpi=110)
    plt.close(figure)


def _distribution(plt, outputs: dict, names: list[str], folder: Path, noun: str) -> dict:
    """Draw the per-sample histogram; returns the counts drawn per output."""
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    drawn = {}
    for name in names:
        values = outputs[name]["per_structure_equivariance"]
        if not values:
            continue
        shown, bins = histogram_bins(values)
        counts, _, _ = axis.hist(
            shown, bins=bins, histtype="step", label=_label(name, outputs[name])
        )
        drawn[name] = [int(c) for c in counts]
    axis.set_xscale("log")
    axis.set_xlabel(f"equivariance error per {noun.rstrip('s')} (RMS over entries)")
    axis.set_ylabel(noun)
    if axis.patches:
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(folder / "equivariance_distribution.png", dpi=110)
    plt.close(figure)
    return drawn


def _convergence(plt, outputs: dict, checked: list[str], folder: Path) -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    changes = []
    for name in checked:
        convergence = outputs[name]["convergence"]
        sizes = [g["size"] for g in convergence["grids"]]
        change = convergence["relative_change"]
        changes.append(change)
        left.plot(sizes, convergence["equivariance_rmse"], "o-", label=_label(name, outputs[name]))
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("grid size")
    left.set_ylabel("equivariance RMSE (first structures)")
    left.legend(fontsize=7)
    percent = [100 * c for c in changes]
    colors = ["tab:red" if c > CONVERGENCE_RTOL else "tab:green" for c in changes]
    shown = [max(p, 1e-3) for p in percent]  # (a change of 0 still gets a visible bar)
    right.bar(range(len(checked)), shown, color=colors)
    right.axhline(100 * CONVERGENCE_RTOL, color="k", linestyle="--", linewidth=1)
    right.text(
        len(checked) - 0.5,
        100 * CONVERGENCE_RTOL,
        f"criterion {100 * CONVERGENCE_RTOL:g} %",
        ha="right",
        va="bottom",
        fontsize=7,
    )
    for i, p in enumerate(percent):
        right.annotate(f"{p:.2g} %", (i, shown[i]), ha="center", va="bottom", fontsize=7)
    right.set_yscale("log")
    right.set_xticks(range(len(checked)))
    right.set_xticklabels(checked, fontsize=7)
    right.set_ylabel("relative change on the finer grid (%)")
    right.set_title("red: not converged", fontsize=8)
    figure.tight_layout()
    figure.savefig(folder / "convergence.png", dpi=110)
    plt.close(figure)


def _layer_spectra(plt, layers: dict, folder: Path) -> None:
    kinds = sorted({p.rsplit("_", 1)[-1] for p in layers})
    figure, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 3.8), squeeze=False)
    for axis, kind in zip(axes[0], kinds, strict=True):
        paths = [p for p in layers if p.endswith("_" + kind)]
        sectors = list(dict.fromkeys(k for p in paths for k in layers[p]["spectrum"]))
        sectors = [k for k in sectors if k not in ("0,1", "0")]
        heights = {k: [layers[p]["spectrum"].get(k, 0.0) for p in paths] for k in sectors}
        top = max((sum(h[i] for h in heights.values()) for i in range(len(paths))), default=0)
        visible = [k for k in sectors if top > 0 and max(heights[k]) >= 0.005 * top]
        rest = [k for k in sectors if k not in visible and max(heights[k]) > 0]
        bottom = [0.0] * len(paths)
        for sector in visible:
            axis.bar(range(len(paths)), heights[sector], bottom=bottom, label=f"({sector})")
            bottom = [b + h for b, h in zip(bottom, heights[sector], strict=True)]
        others = [sum(heights[k][i] for k in rest) for i in range(len(paths))]
        if any(o > 0 for o in others):
            axis.bar(
                range(len(paths)),
                others,
                bottom=bottom,
                color="0.7",
                label=f"{len(rest)} other sector{'s' if len(rest) > 1 else ''}, "
                "each < 0.5 % of the tallest bar",
            )
        axis.set_xticks(range(len(paths)))
        axis.set_xticklabels([p.rsplit("_", 1)[0] for p in paths], rotation=30)
        axis.set_ylabel("fraction of squared norm outside (0,1)")
        axis.set_title(f"{kind} features")
        if axis.patches:
            axis.legend(fontsize=6, ncol=2)
    figure.tight_layout()
    figure.savefig(folder / "layer_spectra.png", dpi=110)
    plt.close(figure)


def _figures(report: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outputs = report["outputs"]
    names = list(outputs)
    _output_spectra(plt, outputs, names, folder)
    _errors(plt, outputs, names, folder)
    _distribution(plt, outputs, names, folder, _noun(report))
    checked = [name for name in names if outputs[name].get("convergence")]
    if checked:  # (no figure with --convergence-structures 0: see _drawn)
        _convergence(plt, outputs, checked, folder)
    if report["layers"]:
        _layer_spectra(plt, report["layers"], folder)


def _drawn(report: dict) -> set[str]:
    """The figures ``report`` has data for."""
    drawn = set(FIGURES)
    if not report["layers"]:
        drawn.discard("layer_spectra.png")
    if not any(out.get("convergence") for out in report["outputs"].values()):
        drawn.discard("convergence.png")
    return drawn


def annotated(report: dict) -> dict:
    """A copy of ``report`` with each output's verdict (:func:`judge`) and advice."""
    report = copy.deepcopy(report)
    for name, out in report["outputs"].items():
        out.update(judge(out))
        line = advice(report, name)
        if line is not None:
            out["advice"] = line
    return report


def write_report(report: dict, output: str | Path) -> Path:
    """Write ``report.json``, ``report.md`` and the figures into ``output`` (figures of
    an earlier report that this one does not draw are removed)."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        (staging / "report.json").write_text(json.dumps(annotated(report), indent=2))
        (staging / "report.md").write_text(markdown_summary(report), encoding="utf-8")
        _figures(report, staging)
        output.mkdir(exist_ok=True)
        for name in set(FIGURES) - _drawn(report):
            (output / name).unlink(missing_ok=True)
        for item in staging.iterdir():
            os.replace(item, output / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output
