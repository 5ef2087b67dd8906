"""equiscope.testing.assert_equivariant: passes on an equivariant calculator, fails
with the output, the deviation and the breaking sector on planted ones."""

import ase.build
import pytest
from ase.calculators.emt import EMT

import equiscope as eq
from _analytic_calculators import PlantedCalculator
from equiscope.testing import assert_equivariant


def copper():
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.1, seed=1)
    return atoms


def test_emt_passes_in_float64():
    relative = assert_equivariant(EMT(), copper())
    assert set(relative) == {"energy", "forces", "stress"}
    assert max(relative.values()) < 1e-12
    cluster = ase.Atoms("Cu4", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.4, 0.3], [1, 1, 2]])
    assert set(assert_equivariant(EMT(), cluster, grid="icosahedral")) == {"energy", "forces"}


def test_a_planted_p2_anisotropy_fails_naming_the_output_and_sector_2_1():
    with pytest.raises(AssertionError) as failure:
        assert_equivariant(PlantedCalculator(p2=0.3, axis=(0.3, 0.5, 0.8)), copper())
    lines = str(failure.value).splitlines()
    assert [line.split("'")[1] for line in lines] == ["energy", "forces", "stress"]
    assert "largest deviation" in lines[0] and "of its RMS" in lines[0]
    assert lines[0].endswith("dominant breaking sector 2,1 (" + lines[0].split("2,1 (")[1])


def test_a_chiral_term_fails_with_inversion_in_0_minus_1_and_passes_without():
    chiral = PlantedCalculator(chiral=0.05)
    with pytest.raises(AssertionError, match=r"'energy' .*\(improper\).* sector 0,-1 \("):
        assert_equivariant(chiral, copper())
    assert_equivariant(chiral, copper(), inversion=False)
    assert_equivariant(chiral, copper(), grid=eq.grid("tetrahedral"))


def test_a_metatomic_model_file_runs_through_metatomic_ase(tmp_path):
    from _models import EmbeddedAtoms, PairPotential, export

    assert_equivariant(export(PairPotential(), tmp_path / "lj.pt"), copper())
    with pytest.raises(AssertionError, match="'energy' is not equivariant"):
        assert_equivariant(export(EmbeddedAtoms(anisotropy=0.5), tmp_path / "e.pt"), copper())


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown output 'dipole'"):
        assert_equivariant(EMT(), copper(), outputs=["dipole"])
    with pytest.raises(TypeError, match="needs an ASE calculator"):
        assert_equivariant(42, copper())
