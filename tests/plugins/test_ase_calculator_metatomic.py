"""EquiscopeCalculator on metatomic models: diagnostics for every property, the
space-group average (against metatomic-ase's), one set of head defaults, and
symmetrised files refused with the fix."""

import ase.build
import numpy as np
import pytest
from metatomic.torch import AtomisticModel, ModelMetadata, load_atomistic_model
from metatomic_ase import MetatomicCalculator, SymmetrizedCalculator

from _models import EmbeddedAtoms, export
from equiscope.cli import main
from equiscope_ase import EquiscopeCalculator

PROPERTIES = ("energy", "energies", "forces", "stress", "stresses")


@pytest.fixture(scope="module")
def eam_path(tmp_path_factory):
    return export(EmbeddedAtoms(anisotropy=0.5), tmp_path_factory.mktemp("eam") / "eam.pt")


def rattled():
    atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.1, seed=1)
    return atoms


def everything(calculator):
    atoms = rattled()
    atoms.calc = calculator
    calculator.calculate(
        atoms, ["energy", "energies", "forces", "stress", "stresses"], ["positions"]
    )
    return dict(calculator.results)


@pytest.mark.parametrize("mode", ["average", "random-group"])
def test_metatomic_diagnostics_match_the_ase_path_on_the_same_model(eam_path, mode):
    """The head's results with per-copy spreads from the raw model evaluated on the
    head's copies equal the generic path (the raw model as an ASE calculator, one
    call per copy): every property and every ``*_rot_std``."""
    options = {"mode": mode, "grid": "octahedral", "seed": 3, "diagnostics": True}
    head = everything(EquiscopeCalculator(eam_path, **options))
    # the raw model as a plain ASE calculator with per-atom stresses: no rotation
    raw = EquiscopeCalculator(eam_path, grid=None, inversion=False)
    generic = everything(EquiscopeCalculator(raw, **options))
    for name in PROPERTIES:
        assert np.abs(generic[f"{name}_rot_std"]).max() > 1e-4, name  # anisotropy seen
        for key in (name, f"{name}_rot_std"):
            scale = np.abs(generic[key]).max()
            np.testing.assert_allclose(head[key], generic[key], rtol=0, atol=1e-10 * scale)


def test_metatomic_space_group_average_is_metatomic_ase_s(eam_path):
    atoms = ase.build.bulk("CO", "zincblende", a=4.1).repeat((1, 1, 2))  # Td sites
    reference = atoms.copy()
    reference.calc = SymmetrizedCalculator(
        MetatomicCalculator(eam_path),
        l_max=0,
        include_inversion=False,
        apply_space_group_symmetry=True,
    )
    reference.calc.calculate(reference, ["energy", "forces", "stress"], ["positions"])
    expected = reference.calc.results
    atoms.calc = EquiscopeCalculator(eam_path, grid=None, space_group=True, symprec=1e-6)
    raw = atoms.copy()
    raw.calc = MetatomicCalculator(eam_path)
    assert np.abs(raw.get_stress() - atoms.get_stress()).max() > 1e-4  # it did something
    assert atoms.get_potential_energy() == pytest.approx(expected["energy"], rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), expected["forces"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        atoms.get_stress(voigt=False), expected["stress"], rtol=0, atol=1e-12
    )


def test_a_symmetrised_file_is_refused_with_the_fix(eam_path, tmp_path, capsys):
    head = tmp_path / "eam-sym.pt"
    assert main(["symmetrize", str(eam_path), "-o", str(head)]) == 0
    # one set of defaults: octahedral with inversion
    assert "mode average, 48 evaluations per call" in capsys.readouterr().out
    loaded = load_atomistic_model(str(head))
    assert "grid octahedral (O(3)), 48 evaluations" in loaded.metadata().extra["equiscope::head"]
    with pytest.raises(ValueError, match=r"already a symmetrised head .*MetatomicCalculator"):
        EquiscopeCalculator(head)
    with pytest.raises(ValueError, match="already a symmetrised head"):
        EquiscopeCalculator(loaded)
    # a file written before the marker: recognised by its wrapper module
    old = tmp_path / "old-sym.pt"
    AtomisticModel(loaded.module, ModelMetadata(name="old"), loaded.capabilities()).save(str(old))
    with pytest.raises(ValueError, match="already a symmetrised head \\(mode average, 48"):
        EquiscopeCalculator(old)
    # and symmetrize refuses it in one line, exit code 2, nothing written
    again = tmp_path / "twice.pt"
    assert main(["symmetrize", str(head), "-o", str(again)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "is already symmetrised" in error
    assert not again.exists()
    assert main(["symmetrize", str(eam_path), "-o", str(again), "--no-inversion"]) == 0
    assert "24 evaluations per call" in capsys.readouterr().out
    # the file itself runs in metatomic-ase, as the message says
    atoms = rattled()
    atoms.calc = MetatomicCalculator(head)
    energy = atoms.get_potential_energy()
    atoms.calc = EquiscopeCalculator(eam_path)
    assert atoms.get_potential_energy() == pytest.approx(energy, rel=1e-12)


def test_symmetrize_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["symmetrize", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in (
        "(default: average)",
        "(default: octahedral)",
        "(default: include)",
        "(default: 0)",
        "(default: 3)",
        "--no-inversion",
    ):
        assert default in text, default


def test_diagnostics_cost_one_more_pass(eam_path):
    """With diagnostics the raw model runs once more on the copies: the results of
    the head are unchanged."""
    atoms = rattled()
    atoms.calc = EquiscopeCalculator(eam_path)
    forces = atoms.get_forces().copy()
    atoms.calc = EquiscopeCalculator(eam_path, diagnostics=True)
    np.testing.assert_array_equal(atoms.get_forces(), forces)
    assert atoms.calc.results["forces_rot_std"].shape == forces.shape
