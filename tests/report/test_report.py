"""The audit report on synthetic report dicts: verdicts against their rule, advice
with known answers, the per-structure table, and what the figures draw."""

import math

import matplotlib
import pytest

from equiscope.report import _writer as rp

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def output(rmse, *, floor=1e-16, rms=1.0, irrep="scalar", spectrum=None, expected=("0,1",), **kw):
    out = {
        "irrep": irrep,
        "per_atom": irrep == "scalar",
        "equivariance_rmse": rmse,
        "noise_floor": floor,
        "rms_value": rms,
        "spectrum": spectrum or {"0,1": 1.0},
        "expected_sectors": list(expected),
        "breaking_sectors": {},
        "per_structure_equivariance": [rmse],
        "converged": None,
    }
    out.update(kw)
    return out


def report(outputs, *, model="model.pt", per_structure=None, **kw):
    result = {
        "model": model,
        "model_dtype": "float64",
        "structures": len(next(iter(outputs.values()))["per_structure_equivariance"]),
        "atoms": 8,
        "grid": {"name": "lebedev", "group": "O(3)", "size": 168, "exact_degree": 2},
        "max_lambda": 2,
        "outputs": outputs,
        "layers": {},
        "symmetrizable": True,
    }
    if per_structure is not None:
        result["per_structure"] = per_structure
    result.update(kw)
    return result


# -- verdicts -------------------------------------------------------------------------


def test_verdict_rule_states_the_thresholds():
    text = rp.verdict_rule()
    assert "10x the noise floor" in text
    assert "10 % of the symmetrised RMSE" in text
    assert "1 % of the output's RMS" in text


@pytest.mark.parametrize(
    ("rmse", "kw", "verdict", "compared"),
    [
        (5e-16, {}, "equivariant to round-off", "noise_floor"),  # 5x the floor
        (2e-15, {"rms": 1.0}, "small next to the output", "rms_value"),  # 20x floor, tiny
        (0.009, {"rms": 1.0}, "small next to the output", "rms_value"),
        (0.011, {"rms": 1.0}, "symmetry broken", "rms_value"),
        # labels: a head that cut the error 34x to 7.5 % of the model error passes ...
        (0.015, {"accuracy": {"symmetrized_rmse": 0.2}}, "small next to the model error", None),
        # ... where the floor alone (the old rule without labels) would call it broken
        (0.025, {"accuracy": {"symmetrized_rmse": 0.2}}, "symmetry broken", None),
    ],
)
def test_verdict_compares_with_accuracy_or_rms_beyond_the_floor(rmse, kw, verdict, compared):
    judged = rp.judge(output(rmse, **kw))
    assert judged["verdict"] == verdict
    assert judged["compared_with"] == (compared or "symmetrized_rmse")
    reference = {"noise_floor": 1e-16, "rms_value": 1.0, "symmetrized_rmse": 0.2}
    assert judged["verdict_ratio"] == pytest.approx(rmse / reference[judged["compared_with"]])


def test_verdict_with_nothing_to_compare_is_broken_and_json_safe():
    judged = rp.judge(output(0.1, rms=0.0))
    assert judged["verdict"] == "symmetry broken" and judged["verdict_ratio"] is None


# -- advice ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("irrep", "expected", "spectrum", "degrees", "inversion"),
    [
        ("scalar", ("0,1",), {"0,1": 0.9, "2,1": 0.1}, {2}, False),
        ("scalar", ("0,1",), {"0,1": 0.9, "0,-1": 0.1}, set(), True),
        ("vector", ("1,1",), {"1,1": 0.9, "0,1": 0.1}, {1}, False),  # a readout bias
        ("vector", ("1,1",), {"1,1": 0.9, "1,-1": 0.1}, {1, 2}, True),  # a pseudovector
        ("rank2", ("0,1", "1,-1", "2,1"), {"0,1": 0.5, "1,1": 0.5}, {1, 2, 3}, True),
        # a sector holding less than 1 % of the breaking is left to the grid's luck
        ("scalar", ("0,1",), {"0,1": 0.9, "1,1": 0.0999, "3,1": 1e-6}, {1}, False),
    ],
)
def test_removal_needs_follow_the_sectors(irrep, expected, spectrum, degrees, inversion):
    out = output(1.0, irrep=irrep, expected=expected, spectrum=spectrum)
    assert rp.removal_needs(out) == (degrees, inversion)


@pytest.mark.parametrize(
    ("spectrum", "grid", "size"),
    [
        ({"0,1": 0.9, "2,1": 0.1}, "--grid tetrahedral --no-inversion", 12),  # removes 1, 2, 5
        (
            {"0,1": 0.9, "2,1": 0.05, "3,1": 0.05},
            "--grid octahedral --no-inversion",
            24,
        ),  # 1, 2, 3, 5, 7
        ({"0,1": 0.9, "4,1": 0.1}, "--grid icosahedral --no-inversion", 60),  # 1-5, 7-9
        (
            {"0,1": 0.9, "6,1": 0.1},
            "--grid lebedev --degree 6 --no-inversion",
            26 * 7,
        ),  # no group removes 6
        ({"0,1": 0.9, "2,1": 0.05, "0,-1": 0.05}, "--grid tetrahedral", 24),
    ],
)
def test_advice_picks_the_cheapest_grid_and_prints_the_command(spectrum, grid, size):
    out = output(0.1, spectrum=spectrum)
    line = rp.advice(report({"energy": out}), "energy")
    assert f"equiscope symmetrize model.pt -o model-sym.pt {grid}`" in line
    assert f"at {size} evaluations per call" in line


def test_forces_get_the_advice_of_the_energy_they_derive_from():
    """Forces of an energy that breaks in lambda = 2 break in degree 2 only; their own
    direct frame shows (3,1), which alone would ask for lambda 2-4 (icosahedral)."""
    energy = output(0.1, spectrum={"0,1": 0.99, "2,1": 0.01})
    forces = output(
        0.3,
        irrep="vector",
        expected=("1,1",),
        spectrum={"1,1": 0.8, "3,1": 0.2},
        derived_from="energy",
    )
    alone = rp.advice(report({"forces": {**forces, "derived_from": None}}), "forces")
    assert "--grid icosahedral" in alone
    line = rp.advice(report({"energy": energy, "forces": forces}), "forces")
    assert (
        "of energy, which it derives from" in line and "--grid tetrahedral --no-inversion`" in line
    )


def test_no_advice_when_fine_or_not_symmetrizable():
    fine = report({"energy": output(1e-16)})
    assert rp.advice(fine, "energy") is None
    assert "Every output passes the verdict rule" in rp.markdown_summary(fine)
    broken = output(0.1, spectrum={"0,1": 0.9, "2,1": 0.1})
    jets = report({"logit": broken}, symmetrizable=False)
    assert rp.advice(jets, "logit") is None and "## Next step" not in rp.markdown_summary(jets)


def test_symmetrize_command():
    assert (
        rp.symmetrize_command("runs/my model.pt", "octahedral", inversion=True)
        == "equiscope symmetrize 'runs/my model.pt' -o 'runs/my model-sym.pt' "
        "--grid octahedral"
    )
    assert (
        rp.symmetrize_command("m.ckpt", "lebedev", degree=6)
        == "mtt export m.ckpt -o m.pt && equiscope symmetrize m.pt -o m-sym.pt "
        "--grid lebedev --degree 6 --no-inversion"
    )


# -- markdown -------------------------------------------------------------------------


def test_markdown_has_units_rule_worst_structures_and_advice():
    values = [0.01 * (i + 1) for i in range(13)]  # structure 12 is the worst
    energy = output(0.05, spectrum={"0,1": 0.9, "2,1": 0.1}, unit="eV/atom")
    energy["per_structure_equivariance"] = values
    forces = output(1e-16, irrep="vector", expected=("1,1",), unit="")
    forces["per_structure_equivariance"] = [1e-16] * 13
    names = {"index": list(range(100, 113)), "formula": ["CH4"] * 12 + ["H2O"], "atoms": [5] * 13}
    text = rp.markdown_summary(report({"energy": energy, "forces": forces}, per_structure=names))
    assert "| energy (eV/atom) | 0.05 |" in text
    assert "| forces (units not declared) |" in text
    assert rp.verdict_rule() in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and " | H2O | " in line]
    assert rows == ["| 1 | 112 | H2O | 5 | 0.13 | 1e-16 |"]  # worst first, data index
    assert "| A: energy (eV/atom) | A: forces (units not declared) |" in text
    assert "| 10 | 103 | CH4 |" in text and "| 11 |" not in text
    assert "3 more structures in report.json" in text
    assert "- energy: sectors (2,1) hold 100 % of the symmetry breaking" in text
    printed = rp.terminal_summary(report({"energy": energy, "forces": forces}))
    assert "## Next step" in printed and "worst first" not in printed


def test_annotated_report_records_verdicts_and_advice(tmp_path):
    import json

    broken = output(0.1, spectrum={"0,1": 0.9, "2,1": 0.1}, unit="eV/atom")
    folder = rp.write_report(report({"energy": broken}), tmp_path / "out")
    saved = json.loads((folder / "report.json").read_text())["outputs"]["energy"]
    assert saved["verdict"] == "symmetry broken"
    assert saved["verdict_rule"] == "A < 1 % of the RMS value"
    assert saved["verdict_ratio"] == pytest.approx(0.1)
    assert "--grid tetrahedral" in saved["advice"] and saved["unit"] == "eV/atom"


# -- figures --------------------------------------------------------------------------


def rounding_up_value() -> float:
    """A value x with 10 ** log10(x) > x: the old bins started above it."""
    for i in range(1, 1000):
        x = 1e-3 * (1 + i / 997)
        if 10 ** math.log10(x) > x:
            return x
    raise AssertionError("no value rounds up")


@pytest.mark.parametrize(
    "values",
    [
        [rounding_up_value(), 0.5, 0.2, 0.1],  # the smallest value was dropped before
        [0.3, 0.3, 0.3],  # all equal
        [2e-5],  # one structure
        [0.0, 1e-3, 0.2],  # an exactly equivariant structure
        [0.0, 0.0],  # all zero
    ],
)
def test_histogram_holds_every_structure(values):
    shown, bins = rp.histogram_bins(values)
    assert bins[0] < min(shown) and max(shown) < bins[-1]
    counts, _, _ = plt.hist(shown, bins=bins)
    plt.close("all")
    assert counts.sum() == len(values)


def test_distribution_figure_draws_every_structure(tmp_path):
    values = [rounding_up_value(), 0.5, 0.2, 0.1]
    outputs = {"forces": output(0.3, per_structure_equivariance=values)}
    drawn = rp._distribution(plt, outputs, ["forces"], tmp_path, "structures")
    assert sum(drawn["forces"]) == 4


class Capture:
    """``matplotlib.pyplot`` whose ``close`` keeps the figure for the test."""

    def __init__(self):
        self.figures = []

    def __getattr__(self, name):
        return getattr(plt, name)

    def close(self, figure):
        self.figures.append(figure)


def test_spectrum_figure_draws_the_noise_floor(tmp_path):
    out = output(0.1, floor=1e-5, rms=0.1, spectrum={"0,1": 0.99, "2,1": 0.01})
    capture = Capture()
    rp._output_spectra(capture, {"energy": out}, ["energy"], tmp_path)
    (axis,) = capture.figures[0].axes
    levels = [line.get_ydata()[0] for line in axis.lines]
    assert levels == [pytest.approx((1e-5 / 0.1) ** 2)]
    legend = [t.get_text() for t in axis.get_legend().get_texts()]
    assert legend == ["expected", "symmetry breaking", "noise floor: (floor / RMS)^2"]


def test_layer_legend_lists_only_drawn_sectors(tmp_path):
    spectrum = {"0,1": 0.5, "1,1": 0.3, "2,1": 0.2, "3,1": 1e-9, "4,1": 0.0}
    layers = {f"gnn_layers.{i}_node": {"spectrum": spectrum} for i in range(2)}
    capture = Capture()
    rp._layer_spectra(capture, layers, tmp_path)
    (axis,) = capture.figures[0].axes
    legend = [t.get_text() for t in axis.get_legend().get_texts()]
    # (4,1) holds nothing, (3,1) too little to see: one grey "other" segment
    assert legend == ["(1,1)", "(2,1)", "1 other sector, each < 0.5 % of the tallest bar"]


def test_convergence_figure_shows_the_change_and_the_criterion(tmp_path):
    grids = [{"size": 48}, {"size": 168}]
    outputs = {
        "energy": output(
            0.1,
            convergence={
                "grids": grids,
                "equivariance_rmse": [1.0, 1.033],
                "relative_change": 0.033 / 1.033,
            },
        ),
        "forces": output(
            0.1,
            convergence={
                "grids": grids,
                "equivariance_rmse": [1.0, 1.001],
                "relative_change": 0.001 / 1.001,
            },
        ),
    }
    capture = Capture()
    rp._convergence(capture, outputs, ["energy", "forces"], tmp_path)
    right = capture.figures[0].axes[1]
    texts = [t.get_text() for t in right.texts]
    assert "3.2 %" in texts and "0.1 %" in texts and "criterion 1 %" in texts
    assert [line.get_ydata()[0] for line in right.lines] == [1.0]  # the 1 % line
    colors = [bar.get_facecolor() for bar in right.patches]
    assert colors[0] != colors[1]  # the 3.2 % change stands out from the converged one


# -- the default estimate and calculators ----------------------------------------------


def test_estimated_outputs_show_their_interval_and_precision():
    out = output(
        0.1,
        spectrum={"0,1": 0.9, "2,1": 0.05},
        breaking_sectors={"2,1": 0.05},
        equivariance_rmse_ci95=[0.09, 0.11],
        above_max_lambda=0.05,
        converged=True,
        estimate={"relative_half_width": 0.1, "target": 0.1, "replicates": [4, 4]},
    )
    grid = {
        "name": "icosahedral",
        "group": "O(3)",
        "size": 120,
        "exact_degree": 2,
        "randomly_oriented": True,
        "replicates": 4,
        "copies": 480,
    }
    text = rp.markdown_summary(report({"energy": out}, grid=grid))
    assert "| 0.1 [0.09, 0.11] |" in text and "yes (±10%)" in text
    assert "randomly oriented icosahedral grids on O(3) (120 elements each)" in text
    assert "per structure and output (energy 4)" in text
    assert "480 evaluations" in text
    assert "| (0,1) | (2,1): 0.05 | 0.05 |" in text  # the share above max lambda
    grid.update(name="octahedral", size=24, inversion="random per replicate")
    text = rp.markdown_summary(report({"energy": out}, grid=grid))
    assert "(24 elements each, each inverted as a whole with probability 1/2)" in text


def test_calculators_are_advised_to_wrap_in_equiscope_calculator():
    out = output(0.1, spectrum={"0,1": 0.9, "2,1": 0.1})
    line = rp.advice(report({"energy": out}, symmetrizable="calculator"), "energy")
    assert line.endswith(
        "`EquiscopeCalculator(calculator, grid='tetrahedral', inversion=False)`"
    ), line
    text = rp.markdown_summary(report({"energy": out}, symmetrizable="calculator"))
    assert "equiscope symmetrize" not in text
