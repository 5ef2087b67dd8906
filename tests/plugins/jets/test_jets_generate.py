"""Generated jets: landscape layout, padding, ordering, kinematics, cuts, reproducibility."""

import numpy as np
import pytest

from equiscope_jets import generate
from equiscope_jets.generate import ETA_MAX, JET_RADIUS, N_CONSTITUENTS, PT_RANGE, generate_jets
from equiscope_jets.physics import jet_mass


def _pt(p):
    return np.hypot(p[..., 1], p[..., 2])


def _eta(p):
    momentum = np.linalg.norm(p[..., 1:], axis=-1)
    return np.arctanh(p[..., 3] / momentum)


def _rapidity(p):
    return 0.5 * np.log((p[..., 0] + p[..., 3]) / (p[..., 0] - p[..., 3]))


def _phi(p):
    return np.arctan2(p[..., 2], p[..., 1])


def _delta_r(a, b):
    dphi = (_phi(a) - _phi(b) + np.pi) % (2 * np.pi) - np.pi
    return np.hypot(_rapidity(a) - _rapidity(b), dphi)


def test_layout_and_padding(jets):
    n = len(jets)
    assert n == 20
    assert jets.momenta.shape == (n, N_CONSTITUENTS, 4) and jets.momenta.dtype == np.float32
    assert jets.pid.shape == jets.charge.shape == (n, N_CONSTITUENTS)
    assert jets.jet.shape == jets.truth.shape == (n, 4)
    assert jets.label.shape == (n,)
    assert set(jets.label.tolist()) == {1 if jets.metadata["process"] == "top" else 0}
    mask = jets.mask
    counts = mask.sum(axis=1)
    assert (counts >= 1).all()
    # filled slots first, then zeros everywhere (momenta, PID, charge)
    assert np.array_equal(mask, np.arange(N_CONSTITUENTS) < counts[:, None])
    assert not jets.momenta[~mask].any() and not jets.pid[~mask].any()
    assert not jets.charge[~mask].any()
    assert (jets.pid[mask] != 0).all()
    # charge agrees with the PID: photons and neutral hadrons 0, pi+ +1, electrons -1
    pid, charge = jets.pid[mask], jets.charge[mask]
    assert set(np.unique(charge).tolist()) <= {-1, 0, 1}
    assert (charge[np.isin(pid, [22, 130, 2112, -2112])] == 0).all()
    assert (charge[pid == 211] == 1).all() and (charge[pid == 11] == -1).all()
    # the mean multiplicity is around 60-80 per jet (about 75 for top, 61 for QCD jets)
    assert 40 < counts.mean() < 110


def test_constituents_are_pt_ordered_and_light(jets):
    p = jets.momenta.astype(np.float64)
    mask = jets.mask
    pt = np.where(mask, _pt(p), -1.0)
    assert (np.diff(pt, axis=1) <= 0).all()
    energy, momentum = p[..., 0][mask], np.linalg.norm(p[..., 1:], axis=-1)[mask]
    assert (energy >= momentum - 1e-6 * energy).all()  # E >= |p| up to float32 rounding
    assert jet_mass(p[mask]).max() < 2.0  # photons, leptons, hadrons: m < 2 GeV


def test_jet_is_the_sum_of_its_constituents(jets):
    assert (jets.n_constituents < N_CONSTITUENTS).all()
    total = jets.momenta.astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(jets.jet, total, rtol=1e-6, atol=1e-3)


def test_selection_cuts(jets):
    pt, eta = _pt(jets.jet), _eta(jets.jet)
    assert ((pt > PT_RANGE[0]) & (pt < PT_RANGE[1])).all()
    assert (np.abs(eta) < ETA_MAX).all()
    # constituents belong to the jet: nearly all within R of the axis
    p = jets.momenta.astype(np.float64)
    with np.errstate(all="ignore"):
        distance = _delta_r(p, jets.jet[:, None, :])[jets.mask]
    assert np.mean(distance < JET_RADIUS) > 0.98 and distance.max() < 1.5 * JET_RADIUS


def test_top_jets_contain_a_top_and_qcd_jets_none(top_jets, qcd_jets):
    top = top_jets.truth
    assert (_delta_r(top, top_jets.jet) < JET_RADIUS).all()
    assert ((jet_mass(top) > 160) & (jet_mass(top) < 185)).all()  # m_t = 172.5, width 1.4
    assert not qcd_jets.truth.any()


def test_top_jets_are_heavier(top_jets, qcd_jets):
    """Fixed seeds: deterministic. Top: peak at m_t; QCD: Sudakov peak at low mass. The
    margins are wide (20 jets at seed 7: top median 175, 65% in [150, 200]; QCD median 98,
    5%), so another platform's event stream would pass too."""
    top, qcd = jet_mass(top_jets.jet), jet_mass(qcd_jets.jet)
    assert 150 < np.median(top) < 195
    assert np.median(qcd) < 130
    assert np.median(top) > np.median(qcd) + 40
    assert np.mean((top > 150) & (top < 200)) > 0.5
    assert np.mean((qcd > 150) & (qcd < 200)) < 0.3


def test_metadata(top_jets):
    meta = top_jets.metadata
    assert meta["process"] == "top" and meta["seed"] == 7 and meta["n"] == 20
    assert meta["pythia_version"] == "8.317.2"
    assert meta["events"] >= 20 // 2  # at most two jets per event pass
    assert "24:onIfAny = 1 2 3 4 5" in meta["settings"]


def _same(a, b) -> bool:
    return all(
        np.array_equal(getattr(a, name), getattr(b, name))
        for name in ("momenta", "label", "jet", "pid", "charge", "truth")
    )


def test_reproducible_by_seed():
    first = generate_jets("qcd", 6, seed=11, progress=False)
    again = generate_jets("qcd", 6, seed=11, progress=False)
    other = generate_jets("qcd", 6, seed=12, progress=False)
    assert _same(first, again) and first.metadata == again.metadata
    assert not np.array_equal(first.momenta, other.momenta)


def test_workers_do_not_change_the_result(capsys):
    """Chunks are seeded by index: 2 processes give the serial result (and a bar)."""
    serial = generate_jets("top", 6, seed=3, chunk_size=3, progress=False)
    parallel = generate_jets("top", 6, seed=3, chunk_size=3, workers=2)
    assert _same(serial, parallel)
    assert "6/6" in capsys.readouterr().err


def test_truncation_keeps_the_hardest_constituents(monkeypatch):
    full = generate_jets("top", 3, seed=5, progress=False)
    monkeypatch.setattr(generate, "N_CONSTITUENTS", 30)
    cut = generate_jets("top", 3, seed=5, progress=False)
    assert cut.momenta.shape == (3, 30, 4)
    np.testing.assert_array_equal(cut.momenta, full.momenta[:, :30])
    np.testing.assert_array_equal(cut.pid, full.pid[:, :30])
    np.testing.assert_array_equal(cut.jet, full.jet)  # the jet keeps every constituent


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown process 'higgs'"):
        generate_jets("higgs", 1)
    with pytest.raises(ValueError, match="n must be at least 1, got 0"):
        generate_jets("top", 0)
    with pytest.raises(ValueError, match="workers must be at least 1"):
        generate_jets("top", 1, workers=0)
    with pytest.raises(ValueError, match="seed must be non-negative"):
        generate_jets("top", 1, seed=-1)
