"""Jet mass, subjet pair masses (known answers) and the physics summary of generated jets."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from equiscope_jets import JetData, jet_mass, physics_summary, save_jets, subjet_pair_masses

EXAMPLE = Path(__file__).parents[3] / "examples" / "05_jet_physics.py"


def _massless(pt, eta, phi):
    return np.array(
        [pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], dtype=np.float64
    )


def test_jet_mass_known_answers():
    p4 = np.array([[5.0, 3.0, 0.0, 0.0], [13.0, 3.0, 4.0, 12.0]])
    np.testing.assert_allclose(jet_mass(p4), [4.0, 0.0])
    assert jet_mass(np.array([1.0, 2.0, 0.0, 0.0])) == 0.0  # spacelike rounding -> 0


def test_three_particles_are_three_subjets():
    """Three well-separated particles: the subjets are the particles, so the pair masses are
    m_ij^2 = 2 pT_i pT_j (cosh(eta_i - eta_j) - cos(phi_i - phi_j)), in subjet-pT order."""
    kinematics = [(300.0, 0.1, 0.0), (200.0, -0.2, 0.3), (100.0, 0.3, 0.4)]
    particles = [_massless(*k) for k in kinematics]
    momenta = np.zeros((2, 200, 4), dtype=np.float32)
    momenta[0, :3] = particles
    momenta[1, :2] = particles[:2]  # < 3 constituents: NaN
    data = JetData(momenta=momenta, label=np.ones(2, dtype=np.int64), jet=momenta.sum(axis=1))
    masses = subjet_pair_masses(data)
    expected = []
    for a, b in ((0, 1), (0, 2), (1, 2)):
        (pt_a, eta_a, phi_a), (pt_b, eta_b, phi_b) = kinematics[a], kinematics[b]
        expected.append(np.sqrt(2 * pt_a * pt_b * (np.cosh(eta_a - eta_b) - np.cos(phi_a - phi_b))))
    np.testing.assert_allclose(masses[0], expected, rtol=1e-5)
    assert np.isnan(masses[1]).all()


def test_physics_summary_of_generated_jets(top_jets, qcd_jets):
    """Fixed seeds (deterministic): on 20 jets the top mass and W peaks are already there
    (seed 7: top peak 173, W peak 81, 65% of m_min in [65, 95]; QCD median 98 GeV)."""
    summary = physics_summary(JetData.concatenate([top_jets, qcd_jets]))
    top, qcd = summary["top"], summary["qcd"]
    assert top["jets"] == qcd["jets"] == 20
    assert 160 < top["mass_peak"] < 190 and top["mass_fraction_150_200"] > 0.5
    assert 65 < top["w_candidate_peak"] < 95 and top["w_candidate_fraction_65_95"] > 0.4
    assert qcd["mass_median"] < 130 and qcd["mass_fraction_150_200"] < 0.3
    assert qcd["w_candidate_median"] < top["w_candidate_median"] - 20
    assert sum(qcd["mass_fractions_100_150_200_250"]) < 0.6
    assert set(physics_summary(top_jets)) == {"top"}


def test_example_reads_files_and_plots(top_jets, qcd_jets, tmp_path):
    top = save_jets(top_jets, tmp_path / "top.npz")
    qcd = save_jets(qcd_jets, tmp_path / "qcd.npz")
    figure = tmp_path / "mass.png"
    command = [sys.executable, str(EXAMPLE), "--top", str(top), "--qcd", str(qcd)]
    result = subprocess.run(
        [*command, "--output", str(figure)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "W candidate m_min peak [GeV]" in result.stdout
    row = next(line for line in result.stdout.splitlines() if line.startswith("jets "))
    assert row.split()[1:] == ["20", "20"]
    assert 10_000 < figure.stat().st_size < 200_000
