"""Audit and heads: known answers with planted anisotropies, the invariant baseline at
round-off, the report files."""

import json
import math

import pytest
import torch
from _planted import PlantedAxial, PlantedLegendre, sector_fraction

import equiscope as eq
from equiscope_jets import (
    GROUPS,
    JetAuditError,
    SymmetrizedTagger,
    audit_tagger,
    build_tagger,
    write_jet_report,
)
from equiscope_jets.actions import random_elements, rotate


def _logit(report, group):
    return report["groups"][group]["outputs"]["logit"]


@pytest.mark.parametrize("m", [1, 3])
def test_planted_axial_sector_and_error(small_momenta, m):
    report = audit_tagger(PlantedAxial(m), small_momenta, groups=["so2-axis"], layers=False)
    out = _logit(report, "so2-axis")
    assert out["spectrum"][str(m)] == pytest.approx(sector_fraction(0.5, 1.0, 0.5), rel=1e-9)
    assert out["equivariance_rmse"] == pytest.approx(0.5 / math.sqrt(2), rel=1e-9)
    assert next(iter(out["breaking_sectors"])) == str(m) and out["converged"]


def test_planted_legendre_sector_and_error(small_momenta):
    report = audit_tagger(PlantedLegendre(2), small_momenta, groups=["so3", "so2-axis"])
    out = _logit(report, "so3")
    assert out["spectrum"]["2"] == pytest.approx(sector_fraction(0.5, 1.0, 1 / 5), rel=1e-9)
    assert out["equivariance_rmse"] == pytest.approx(0.5 / math.sqrt(5), rel=1e-9)
    assert _logit(report, "so2-axis")["equivariance_rmse"] < 1e-12  # the axis is kept


def test_invariant_model_is_at_round_off_everywhere(small_momenta):
    torch.manual_seed(0)
    model = build_tagger("invariant", {"width": 8, "depth": 1, "heads": 2})
    groups = ["so2-axis", "o2-axis", "so2-beam", "o3", "boost-axis", "boost-beam"]
    report = audit_tagger(
        model,
        small_momenta[:6],
        groups=groups,
        grids={"o3": eq.grid("lebedev", degree=4, inversion=True)},
        rapidity_steps=3,
    )
    for group in groups[:4]:
        out = _logit(report, group)
        assert out["equivariance_rmse"] <= out["noise_floor"]
        assert out["spectrum"][out["expected_sectors"][0]] > 1 - 1e-9
        for layer in report["groups"][group]["layers"].values():
            assert layer["spectrum"][out["expected_sectors"][0]] > 1 - 1e-9
    for b in report["boosts"].values():
        assert max(b["relative"]) < 1e-5
    assert report["outputs"] is report["groups"]["so2-axis"]["outputs"]  # contract keys


@pytest.mark.parametrize(("m", "removed"), [(1, True), (3, True), (7, True), (8, False)])
def test_average_head_removes_exactly_the_sectors_of_its_grid(small_momenta, m, removed):
    head = SymmetrizedTagger(PlantedAxial(m), "average", grid=eq.grid("so2", n=8))
    grids = {"so2-axis": eq.grid("so2", n=24)}  # A^2 of m = 8 needs m = 16 integrated exactly
    report = audit_tagger(head, small_momenta, groups=["so2-axis"], grids=grids, layers=False)
    out = _logit(report, "so2-axis")
    if removed:
        assert out["equivariance_rmse"] < 1e-12
    else:  # m = 8 is invariant under C8: the head leaves it alone
        assert out["equivariance_rmse"] == pytest.approx(0.5 / math.sqrt(2), rel=1e-9)


@pytest.mark.parametrize(("degree", "removed"), [(3, True), (4, False)])
def test_octahedral_head_on_planted_legendre(small_momenta, degree, removed):
    head = SymmetrizedTagger(PlantedLegendre(degree), "average", group="so3")
    grids = {"so3": eq.grid("lebedev", degree=8)}
    out = _logit(audit_tagger(head, small_momenta[:4], groups=["so3"], grids=grids), "so3")
    assert (out["equivariance_rmse"] < 1e-12) == removed


def test_canonical_and_random_heads(small_momenta):
    torch.manual_seed(0)
    model = build_tagger("transformer", {"width": 8, "depth": 1, "heads": 2}).eval()
    generator = torch.Generator().manual_seed(5)
    x = small_momenta.double()
    with torch.no_grad():
        for frame, groups in (("jet", ["so2-axis", "so2-beam"]), ("lab", ["so3"])):
            head = SymmetrizedTagger(model, "canonical", frame=frame)
            for group in groups:
                moved = rotate(x, random_elements(GROUPS[group], x, generator))
                torch.testing.assert_close(head(moved), head(x), atol=1e-5, rtol=1e-5)
        random_head = SymmetrizedTagger(model, "random", seed=3)
        again = SymmetrizedTagger(model, "random", seed=3)
        torch.testing.assert_close(random_head(x), again(x))  # seeded
    with pytest.raises(ValueError, match="unknown head mode"):
        SymmetrizedTagger(model, "median")
    with pytest.raises(ValueError, match="needs a compact group"):
        SymmetrizedTagger(model, "average", group="boost-axis")


def test_report_files(tmp_path, small_momenta, mixed_jets):
    torch.manual_seed(0)
    model = build_tagger("transformer", {"width": 8, "depth": 1, "heads": 2})
    report = audit_tagger(
        model,
        small_momenta[:3],
        labels=mixed_jets.label[:3],
        groups=["so2-axis", "boost-axis"],
        rapidity_steps=3,
        source="tiny",
    )
    write_jet_report(report, tmp_path / "audit")
    saved = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert {"grid", "outputs", "layers", "groups", "boosts"} <= set(saved)
    out = saved["outputs"]["logit"]
    assert {"equivariance_rmse", "noise_floor", "spectrum", "converged"} <= set(out)
    # fractions of the total: the rest lies above max lambda
    assert sum(out["spectrum"].values()) + out["above_max_lambda"] == pytest.approx(1.0)
    assert set(saved["layers"]) == {"embed_particle", "blocks.0_particle", "pool_jet"}
    for name in (
        "report.md",
        "errors.png",
        "output_spectra.png",
        "layer_spectra.png",
        "boosts.png",
        "so2-axis/report.json",
        "so2-axis/layer_spectra.png",
    ):
        assert (tmp_path / "audit" / name).is_file(), name
    assert "| boost-axis (relative) | " in (tmp_path / "audit" / "report.md").read_text()


@pytest.mark.parametrize(
    ("momenta", "options", "message"),
    [
        (torch.zeros(2, 3, 4), {}, "a jet has no constituents"),
        (torch.full((1, 3, 4), float("nan")), {}, "NaN"),
        (torch.ones(1, 3, 4), {"groups": ["so5"]}, "unknown group 'so5'"),
        (torch.ones(1, 3, 4), {"groups": []}, "no groups"),
    ],
)
def test_audit_bad_input(momenta, options, message):
    with pytest.raises(JetAuditError, match=message):
        audit_tagger(PlantedAxial(1), momenta, **options)
