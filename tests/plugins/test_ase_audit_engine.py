"""End to end through the core engine: ``audit_calculator`` and
``equiscope audit MODULE:FACTORY`` reports of known-answer calculators."""

import json
import math

import ase
import ase.build
import ase.io
import pytest
import torch
from ase.calculators.emt import EMT

import equiscope as eq
from _calculators import Chiral, PairCalculator, PlantedAnisotropy, cubic, triclinic
from equiscope_ase.audit import audit_calculator

O3 = eq.grid("lebedev", degree=4, inversion=True)
SO3 = eq.grid("lebedev", degree=4)
MOLECULE = [[0.0, 0.0, 0.0], [1.2, 0.1, -0.2], [-0.5, 0.9, 0.3], [0.1, -0.8, 0.7]]


def labelled(frames, path, calculator=EMT):
    for atoms in frames:  # the calculator's results stored in the file as labels
        atoms.calc = calculator()
        atoms.get_stress()
    ase.io.write(str(path), frames, format="extxyz")
    return path


def at_floor(report, names):
    for name in names:
        out = report["outputs"][name]
        assert out["equivariance_rmse"] <= 10 * out["noise_floor"], name
        assert out["noise_floor"] < 1e-12 * max(out["rms_value"], 1.0), name


@pytest.mark.parametrize("structure", [cubic, triclinic])
def test_emt_report_is_at_the_floor_with_inversion(structure, tmp_path):
    data = labelled([structure(), structure()], tmp_path / "cu.xyz", PairCalculator)
    report = audit_calculator(EMT(), data, grid=O3)
    assert set(report["outputs"]) == {"energy", "forces", "stress"}
    at_floor(report, ["energy", "forces", "stress"])
    for out in report["outputs"].values():  # labels of another model: the identity holds
        accuracy = out["accuracy"]
        assert accuracy["identity_residual"] < 1e-10
        assert accuracy["oriented_rmse"] == pytest.approx(accuracy["symmetrized_rmse"], rel=1e-10)
        assert accuracy["oriented_rmse"] > 1e-3
    assert report["outputs"]["forces"]["spectrum"]["1,1"] == pytest.approx(1.0, abs=1e-12)
    assert report["outputs"]["forces"]["unit"] == "eV/Å"


def test_planted_p2_report_has_the_analytic_variance():
    atoms = ase.Atoms("COHH", positions=MOLECULE)
    report = audit_calculator(PlantedAnisotropy(0.6), [atoms], grid=O3)
    p = torch.tensor(MOLECULE, dtype=torch.float64)
    d = torch.stack([p[j] - p[i] for i in range(4) for j in range(i + 1, 4)])
    r = d.norm(dim=1)
    n = d / r[:, None]
    p2 = 0.5 * (3 * (n @ n.T) ** 2 - 1)
    weights = torch.exp(-r)
    variance = 0.6**2 * float(weights @ p2 @ weights) / 5  # addition theorem
    mean = float(weights.sum())
    energy = report["outputs"]["energy"]
    assert energy["equivariance_rmse"] == pytest.approx(math.sqrt(variance) / 4, rel=1e-10)
    assert energy["spectrum"]["2,1"] == pytest.approx(variance / (mean**2 + variance), rel=1e-9)
    assert next(iter(energy["breaking_sectors"])) == "2,1"


def test_chiral_term_breaks_only_parity_and_is_at_the_floor_without_inversion():
    atoms = ase.Atoms("COHH", positions=MOLECULE)
    report = audit_calculator(Chiral(0.3), [atoms], grid=O3)
    for name in ("energy", "forces"):
        out = report["outputs"][name]
        assert out["equivariance_rmse"] > 1e3 * out["noise_floor"], name
        broken = [
            k for k, v in out["spectrum"].items() if k not in out["expected_sectors"] and v > 1e-20
        ]
        assert broken and all(k.endswith(",-1") for k in broken), (name, broken)
    proper = audit_calculator(Chiral(0.3), [atoms], grid=SO3)
    at_floor(proper, ["energy", "forces"])


def test_signed_volume_stress_is_at_the_floor():
    report = audit_calculator(PairCalculator(signed_volume=True), [cubic(), triclinic()], grid=O3)
    at_floor(report, ["energy", "forces", "stress"])


def test_same_report_as_the_metatomic_model(tmp_path):
    """The planted model as an exported metatomic model (MetatomicAdapter) and as
    an ASE calculator around it (metatomic-ase's MetatomicCalculator, through
    CalculatorAdapter): the same A and spectrum."""
    from metatomic_ase import MetatomicCalculator

    from _models import PlantedAnisotropy as Planted
    from _models import export
    from equiscope_atoms import audit, load_model, read_structures

    path = export(Planted(0.6, [0.0, 0.0, 0.0]), tmp_path / "planted.pt")
    atoms = ase.Atoms("COHH", positions=MOLECULE)
    ase.io.write(str(tmp_path / "molecule.xyz"), atoms)
    model = load_model(path)
    grid = eq.grid("lebedev", degree=4, inversion=True)
    theirs = audit(
        model,
        read_structures(tmp_path / "molecule.xyz", atomic_types=model.atomic_types),
        grid=grid,
        outputs=["energy", "forces"],
        progress=False,
    )
    ours = audit_calculator(
        MetatomicCalculator(str(path)),
        tmp_path / "molecule.xyz",
        grid=grid,
        outputs=["energy", "forces"],
    )
    for name in ("energy", "forces"):
        a, b = ours["outputs"][name], theirs["outputs"][name]
        assert a["equivariance_rmse"] == pytest.approx(b["equivariance_rmse"], rel=1e-10)
        assert a["spectrum"].keys() == b["spectrum"].keys()
        for sector, value in b["spectrum"].items():
            assert a["spectrum"][sector] == pytest.approx(value, rel=1e-10, abs=1e-15), sector


FACTORY = """
from ase.calculators.emt import EMT

def emt():
    return EMT()

def nothing():
    return None
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "my_emt.py").write_text(FACTORY)
    labelled([cubic(0), cubic(1)], tmp_path / "cu.xyz")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def run_cli(argv):
    from equiscope.cli import BadInput, build_parser
    from equiscope_ase.cli import AUDIT

    args = build_parser().parse_args(["audit", *argv])
    assert AUDIT.accepts(args.model)
    try:
        return AUDIT.command(args), ""
    except BadInput as error:
        return 2, str(error)


def test_cli_audits_a_factory(project, capsys):
    code, _ = run_cli(["my_emt:emt", "cu.xyz", "-o", "out", "--grid", "lebedev", "--degree", "4"])
    assert code == 0
    report = json.loads((project / "out" / "report.json").read_text())
    assert report["model"] == "my_emt:emt"
    assert set(report["outputs"]) == {"energy", "forces", "stress"}
    at_floor(report, ["energy", "forces", "stress"])
    assert (project / "out" / "report.md").is_file()
    assert "report:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing_module:emt", "cu.xyz"], "module 'missing_module' could not be imported"),
        (["my_emt:nothing", "cu.xyz"], "nothing() returned a NoneType, not an ASE calculator"),
        (["my_emt:emt", "none.xyz"], "data file none.xyz does not exist"),
        (["my_emt:emt", "cu.xyz", "--outputs", "dipole:vectr"], "unknown irrep 'vectr'"),
        (["my_emt:emt", "cu.xyz", "--outputs", "dipole:vector"], "does not implement dipole"),
        (["my_emt:emt", "cu.xyz", "--layers", "a.b"], "has no hidden layers"),
        (["my_emt:emt", "cu.xyz", "--dtype", "float32"], "--dtype: a calculator runs as it is"),
        (["my_emt:emt", "cu.xyz", "--totals", "energy"], "--totals"),
        (["my_emt:emt", "cu.xyz", "--device", "cuda"], "--device cuda"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(project, argv, message):
    code, error = run_cli([*argv, "-o", "out", "--grid", "octahedral"])
    assert code == 2
    assert message in error and "\n" not in error
    assert not (project / "out").exists()


def test_cli_model_dtype_sets_the_jitter(project):
    code, _ = run_cli(
        ["my_emt:emt", "cu.xyz", "-o", "out", "--grid", "octahedral", "--model-dtype", "float32"]
    )
    assert code == 0
    report = json.loads((project / "out" / "report.json").read_text())
    assert report["model_dtype"] == "float32"
    forces = report["outputs"]["forces"]
    # float32-sized input jitter: the measured floor is far above float64's
    assert forces["roundoff_measured"] > 1e-9
    assert forces["equivariance_rmse"] <= forces["noise_floor"]
