"""GFN2-xTB molecular data: labels that obey physics, files that read back, clear errors.

Known answers: the forces are minus the finite-difference gradient of the energy; the
dipole is a polar vector (rotates with the molecule, flips under inversion) and, the
molecules being neutral, does not move with the origin.
"""

import sys

import ase.io
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from equiscope_atoms import read_structures
from equiscope_atoms.molecules import (
    G2_ELEMENTS,
    g2_molecules,
    generate_xtb_molecules,
    with_xtb_labels,
)


def _labelled(atoms):
    atoms = with_xtb_labels(atoms.copy())
    return atoms.get_potential_energy(), atoms.get_forces(), atoms.calc.results["dipole"]


@pytest.fixture(scope="module")
def methanol():
    atoms = next(a for a in g2_molecules() if a.get_chemical_formula() == "CH4O").copy()
    atoms.rattle(0.05, seed=3)
    return atoms


def test_g2_selection():
    molecules = g2_molecules()
    assert len(molecules) > 50
    for atoms in molecules:
        assert set(atoms.get_chemical_symbols()) <= set(G2_ELEMENTS)
        assert 3 <= len(atoms) <= 12
    assert all(len(a) <= 4 for a in g2_molecules(max_atoms=4))


def test_forces_are_minus_the_energy_gradient(methanol):
    _, forces, _ = _labelled(methanol)
    step = 1e-4
    for atom, axis in [(0, 0), (1, 2), (4, 1)]:
        plus, minus = methanol.copy(), methanol.copy()
        plus.positions[atom, axis] += step
        minus.positions[atom, axis] -= step
        gradient = (_labelled(plus)[0] - _labelled(minus)[0]) / (2 * step)
        assert forces[atom, axis] == pytest.approx(-gradient, abs=1e-4)
    assert np.abs(forces).max() > 0.1  # rattled: the comparison is not 0 = 0


def test_dipole_is_a_polar_vector_free_of_the_origin(methanol):
    _, forces, dipole = _labelled(methanol)
    assert np.linalg.norm(dipole) > 0.1  # e A; methanol's is ~0.35
    matrix = Rotation.random(random_state=11).as_matrix()  # float64
    rotated = methanol.copy()
    rotated.positions = methanol.positions @ matrix.T
    _, rotated_forces, rotated_dipole = _labelled(rotated)
    np.testing.assert_allclose(rotated_dipole, matrix @ dipole, atol=1e-6)
    np.testing.assert_allclose(rotated_forces, forces @ matrix.T, atol=1e-6)
    inverted = methanol.copy()
    inverted.positions = -methanol.positions
    np.testing.assert_allclose(_labelled(inverted)[2], -dipole, atol=1e-6)
    moved = methanol.copy()
    moved.positions = methanol.positions + np.array([3.0, -1.0, 7.5])
    np.testing.assert_allclose(_labelled(moved)[2], dipole, atol=1e-6)


def test_generated_file_reads_back_with_its_labels(tmp_path):
    path = generate_xtb_molecules(tmp_path / "molecules.xyz", 4, seed=5)
    frames = ase.io.read(str(path), ":")
    molecules = g2_molecules()
    assert [a.get_chemical_formula() for a in frames] == [
        a.get_chemical_formula() for a in molecules[:4]
    ]
    for index, atoms in enumerate(frames):
        displacement = atoms.positions - molecules[index].positions
        assert 0 < np.abs(displacement).max() < 0.5  # rattled, seeded by seed + index
        # relabelled from the positions as written (8 decimals, 1e-8 A: with force
        # constants below 100 eV/A^2 the labels can move by 1e-6)
        energy, forces, dipole = _labelled(atoms)
        assert atoms.get_potential_energy() == pytest.approx(energy, abs=1e-6)
        np.testing.assert_allclose(atoms.get_forces(), forces, atol=1e-6)
        np.testing.assert_allclose(atoms.calc.results["dipole"], dipole, atol=1e-6)
        np.testing.assert_array_equal(atoms.info["xtb_dipole"], atoms.calc.results["dipole"])
    structures = read_structures(path)
    assert structures[0].energy == pytest.approx(frames[0].get_potential_energy())
    assert structures[0].forces.shape == (len(frames[0]), 3)
    again = ase.io.read(str(generate_xtb_molecules(tmp_path / "again.xyz", 4, seed=5)), ":")
    assert all(np.array_equal(a.positions, b.positions) for a, b in zip(frames, again, strict=True))


def test_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="n must be at least 1, got 0"):
        generate_xtb_molecules(tmp_path / "none.xyz", 0)
    with pytest.raises(ValueError, match="no G2 molecule is made of"):
        generate_xtb_molecules(tmp_path / "none.xyz", 1, elements=("Cu",))
    monkeypatch.setitem(sys.modules, "tblite.ase", None)  # as if tblite were not installed
    with pytest.raises(ImportError, match=r"pip install 'equiscope\[xtb\]'"):
        with_xtb_labels(g2_molecules()[0].copy())
    assert not (tmp_path / "none.xyz").exists()
