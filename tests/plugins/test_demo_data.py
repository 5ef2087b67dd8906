"""The built-in copper data: strain and rattle set how far the cells are from fcc."""

import ase.build
import ase.io
import numpy as np

from equiscope_atoms.demo import generate_copper

PERFECT = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((1, 1, 2))


def _frames(path, **options):
    return ase.io.read(str(generate_copper(path, 6, seed=3, **options)), ":")


def test_no_strain_no_rattle_gives_perfect_fcc_at_rest(tmp_path):
    for atoms in _frames(tmp_path / "c.xyz", strain=0.0, rattle=0.0):
        assert np.allclose(atoms.cell.array, PERFECT.cell.array, atol=1e-12)
        assert np.abs(atoms.get_forces()).max() < 1e-10  # every site a centre of symmetry
        stress = atoms.get_stress(voigt=False)
        assert np.allclose(stress, stress[0, 0] * np.eye(3), atol=1e-10)  # cubic: a pressure


def test_strain_scales_the_cell_deformation(tmp_path):
    """Same seed: the deformation ``cell0^-1 cell - 1`` doubles with ``strain``."""
    inverse = np.linalg.inv(PERFECT.cell.array)
    small = _frames(tmp_path / "a.xyz", strain=0.01, rattle=0.0)
    large = _frames(tmp_path / "b.xyz", strain=0.02, rattle=0.0)
    for a, b in zip(small, large, strict=True):
        deformation_a = inverse @ a.cell.array - np.eye(3)
        deformation_b = inverse @ b.cell.array - np.eye(3)
        assert np.abs(deformation_a).max() > 1e-3
        assert np.allclose(deformation_b, 2.0 * deformation_a, atol=1e-12)


def test_rattle_sets_the_displacements(tmp_path):
    """No strain: atoms sit ``rattle`` A (standard deviation per component) off their sites."""
    displacements = np.concatenate(
        [
            atoms.positions - PERFECT.positions
            for atoms in _frames(tmp_path / "r.xyz", strain=0.0, rattle=0.05)
        ]
    )
    # 144 components drawn from N(0, 0.05^2): the sample deviation is within 20 %
    assert abs(displacements.std() - 0.05) < 0.2 * 0.05
