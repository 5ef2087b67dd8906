import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_grids_and_spectra_example(tmp_path):
    figure = tmp_path / "figure.png"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "01_grids_and_spectra.py"), str(figure)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "icosahedral       60  [1, 2, 3, 4, 5, 7, 8, 9, 11]" in result.stdout
    assert "xyz  {'3,1': 0.009524}" in result.stdout
    assert figure.stat().st_size > 10_000


def test_md_example_runs_on_a_given_model(tmp_path):
    from _models import PairPotential, export

    model = export(PairPotential(), tmp_path / "lj.pt")
    figure = tmp_path / "md.png"
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "02_md_with_heads.py"),
            "--model",
            str(model),
            "--steps",
            "3",
            "--output",
            str(figure),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    for head in ("raw", "random frame", "octahedral average", "icosahedral average"):
        assert head in result.stdout
    assert figure.stat().st_size > 10_000


def test_md_example_with_direct_forces(tmp_path):
    """--direct: MD on the model's non_conservative_force output through every head."""
    from metatomic.torch import ModelOutput

    from _models import MultipoleAnisotropy, export

    outputs = {
        "energy": ModelOutput(unit="eV", sample_kind="system"),
        "non_conservative_force": ModelOutput(unit="eV/Angstrom", sample_kind="atom"),
    }
    planted = MultipoleAnisotropy([0.0] * 6, [0.05, -0.03, 0.04])
    model = export(planted, tmp_path / "m.pt", outputs=outputs)
    result = run_example(
        "02_md_with_heads.py",
        "--model",
        str(model),
        "--steps",
        "3",
        "--direct",
        "--output",
        str(tmp_path / "md.png"),
    )
    assert "forces: direct (non_conservative_forces)" in result.stdout
    rows = [
        line.split() for line in result.stdout.splitlines() if line.endswith(tuple("0123456789"))
    ]
    heads = {" ".join(row[:-3]) for row in rows}
    assert {"raw", "random frame", "octahedral average", "icosahedral average"} <= heads


def run_example(name: str, *arguments: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *arguments],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_relax_example_keeps_the_space_group_of_an_invariant_model(tmp_path):
    from _models import PairPotential, export

    model = export(PairPotential(), tmp_path / "lj.pt")
    figure = tmp_path / "relax.png"
    result = run_example(
        "03_relax_keeps_symmetry.py", "--model", str(model), "--output", str(figure)
    )
    assert "space group Fm-3m (225)" in result.stdout.splitlines()[0]
    rows = [line for line in result.stdout.splitlines() if line.endswith(tuple("0123456789"))]
    rows = [row for row in rows if row[:11].strip() in ("raw", "O average", "I average")]
    assert len(rows) == 6  # three heads, with and without FixSymmetry
    lattice = set()
    for row in rows:
        # an exactly invariant model keeps Fm-3m even without FixSymmetry
        assert row.count("Fm-3m (225)") == 2, row
        a, b, c = (float(x) for x in row.split()[-8:-5])
        assert a == pytest.approx(b, abs=1e-6) and a == pytest.approx(c, abs=1e-6)
        assert float(row.split()[-2]) < 1e-3  # converged
        lattice.add(round(a, 5))
    assert len(lattice) == 1  # the heads leave an invariant model unchanged
    assert figure.stat().st_size > 10_000


def test_phonon_example_gives_zero_acoustic_modes_for_every_head(tmp_path):
    from _models import PairPotential, export

    model = export(PairPotential(), tmp_path / "lj.pt")
    figure = tmp_path / "phonons.png"
    result = run_example(
        "04_gamma_phonons.py", "--model", str(model), "--output", str(figure), "--a", "3.11"
    )
    rows = {line[:16].strip(): line for line in result.stdout.splitlines()}
    optical = set()
    for head in ("EMT (reference)", "raw", "O average", "I average"):
        row = rows[head]
        acoustic = [float(x) for x in row[16:46].split()]
        assert len(acoustic) == 3 and max(abs(x) for x in acoustic) < 1e-4, row
        sum_rule, symmetry = (float(x) for x in row.split()[-2:])
        assert sum_rule < 1e-8  # translation invariance, exact up to round-off
        # cubic up to the finite-difference floor of central differences
        assert symmetry < 1e-2
        if head != "EMT (reference)":
            optical.add(row[46:96])
    assert len(optical) == 1, optical  # an invariant model: the same for every head
    assert figure.stat().st_size > 10_000


def _inductive_bias_example(figure, *options: str) -> tuple[list[list[str]], str]:
    """Run example 07 for 1 epoch on 12 cells: (its table's rows, its output)."""
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "07_metatrain_inductive_biases.py"),
            *options,
            "--epochs",
            "1",
            "--structures",
            "12",
            "--output",
            str(figure),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    starts = ("bias", "SH", "tensor", "PET")
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith(starts)]
    return rows, result.stdout


@pytest.mark.slow
def test_inductive_bias_example_trains_and_reports(tmp_path):
    figure = tmp_path / "biases.png"
    rows, _ = _inductive_bias_example(figure, "--runs", "bias off,SH lmax 2,tensor basis")
    assert [row[:2] for row in rows] == [["bias", "off"], ["SH", "lmax"], ["tensor", "basis"]]
    # run (two words), accuracy, equivariance RMSE, seconds
    assert all(float(row[2]) > 0 and float(row[3]) > 0 for row in rows)  # PET: A > 0
    assert figure.stat().st_size > 10_000


def _example_module(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_field_gradient_target_known_answers():
    """Two unit charges d apart along z in a large box: V = diag(-1, -1, 2) / d^3 at
    each, i.e. only m = 0 of lambda = 2, (2 V_zz - V_xx - V_yy) / sqrt 6 = sqrt 6 / d^3;
    a perfect fcc cell (a cubic site) gives exactly zero."""
    import ase
    import ase.build
    import numpy as np

    example = _example_module("07_metatrain_inductive_biases")
    d = 2.5
    dimer = ase.Atoms("Cu2", positions=[[10, 10, 10], [10, 10, 10 + d]], cell=[20] * 3, pbc=True)
    fcc = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((1, 1, 2))
    expected = np.zeros((2, 5))
    expected[:, 2] = np.sqrt(6.0) / d**3
    assert np.allclose(example.field_gradients(dimer), expected, rtol=1e-12, atol=1e-14)
    assert np.abs(example.field_gradients(fcc)).max() < 1e-12


def test_born_charge_target_known_answers():
    """QEq Born charges Z_i[a, b] = dP_a / dr_ib: a heteronuclear dimer along z has
    Z_xx = Z_yy = q (moving sideways keeps the distance, so the charge) and no
    off-diagonal part; every molecule's charges sum to zero over the atoms (it stays
    neutral), rotate as R Z R^T, and carry an antisymmetric part (charge flow)."""
    import ase
    import numpy as np
    import torch
    from ase.collections import g2
    from scipy.spatial.transform import Rotation

    example = _example_module("07_metatrain_inductive_biases")
    dimer = ase.Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.13]])
    born = example.born_charges(dimer).reshape(2, 3, 3)
    charges = example.qeq_charges(torch.tensor(dimer.positions), ["C", "O"]).numpy()
    assert charges[0] > 0.05 and abs(charges.sum()) < 1e-14  # C gives charge to O
    for atom in range(2):
        assert np.allclose(np.diag(born[atom])[:2], charges[atom], rtol=1e-12, atol=0)
        assert np.abs(born[atom] - np.diag(np.diag(born[atom]))).max() < 1e-14
    assert abs(born[0, 2, 2] - charges[0]) > 0.01  # along the bond the charge flows

    molecule = g2["CH3CH2OH"].copy()
    molecule.rattle(0.1, seed=1)
    born = example.born_charges(molecule).reshape(-1, 3, 3)
    assert np.abs(born.sum(axis=0)).max() < 1e-12 * np.abs(born).max()
    antisymmetric = 0.5 * (born - born.transpose(0, 2, 1))
    assert np.linalg.norm(antisymmetric) > 0.05 * np.linalg.norm(born)
    rotation = Rotation.from_rotvec([0.3, -1.1, 0.7]).as_matrix()
    rotated = molecule.copy()
    rotated.positions = molecule.positions @ rotation.T
    expected = np.einsum("ab,ibc,dc->iad", rotation, born, rotation)
    assert np.allclose(example.born_charges(rotated).reshape(-1, 3, 3), expected, atol=1e-12)


def test_axial_born_target_is_the_antisymmetric_part(tmp_path):
    """``born_axial``: the lambda = 1, sigma = -1 block of the Born charges, of the same
    norm as their antisymmetric part."""
    import ase.io
    import numpy as np

    example = _example_module("07_metatrain_inductive_biases")
    frames = ase.io.read(str(example.generate_molecules(tmp_path / "m.xyz", 3)), ":")
    for atoms in frames:
        born = atoms.arrays["born"].reshape(-1, 3, 3)
        antisymmetric = 0.5 * (born - born.transpose(0, 2, 1))
        norms = np.linalg.norm(atoms.arrays["born_axial"], axis=1)
        assert np.allclose(norms, np.linalg.norm(antisymmetric, axis=(1, 2)), atol=1e-12)
        assert norms.max() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "name"),
    [
        ("efg", "mtt::efg"),
        ("stress", "non_conservative_stress"),
        ("born", "mtt::born_charges"),
        ("born-axial", "mtt::born_axial"),
    ],
)
def test_inductive_bias_example_trains_a_tensor_target(tmp_path, target, name):
    figure = tmp_path / "figure.png"
    rows, output = _inductive_bias_example(figure, "--target", target)
    assert [row[:2] for row in rows] == [["PET", "readout"], ["tensor", "basis"]]
    assert all(float(row[2]) > 0 and float(row[3]) > 0 for row in rows)
    assert f"validation {name} RMSE" in output
    assert figure.stat().st_size > 10_000


@pytest.mark.slow
def test_inductive_bias_example_trains_the_xtb_dipole_next_to_the_energy(tmp_path):
    """``--target dipole --with-energy``: GFN2-xTB molecules, the dipole as a vector and
    the energy with its forces (no stress: molecules)."""
    figure, work = tmp_path / "figure.png", tmp_path / "runs"
    options = ("--target", "dipole", "--with-energy", "--runs", "PET readout,tensor basis")
    rows, output = _inductive_bias_example(figure, *options, "--workdir", str(work))
    assert [row[:2] for row in rows] == [["PET", "readout"], ["tensor", "basis"]]
    assert all(float(row[2]) > 0 and float(row[3]) > 0 for row in rows)
    assert "validation mtt::dipole RMSE" in output and "stress" not in output
    (log,) = (work / "tensor_basis" / "outputs").glob("*/*/train.csv")
    header = log.read_text().splitlines()[0]
    assert "validation energy RMSE" in header and "validation forces RMSE" in header
    assert figure.stat().st_size > 10_000


@pytest.mark.slow
def test_inductive_bias_example_trains_the_stress_next_to_the_energy(tmp_path):
    """``--with-energy``: the direct and conservative stress of the export on the
    validation cells; with one epoch the export is that epoch's model, so its direct
    stress RMSE is metatrain's validation RMSE (same cells, same per-atom scaling).
    ``--refit``: the stress on fresh cells and its equivariance, before and after, and
    behind the averaging head."""
    figure = tmp_path / "figure.png"
    options = ("--target", "stress", "--with-energy", "--refit", "--runs", "tensor basis")
    rows, output = _inductive_bias_example(figure, *options, "--strain", "0.04")
    assert "direct stress" in output and "conservative stress" in output
    (row,) = rows
    # run (two words), accuracy, equivariance, seconds, direct, conservative, two probes,
    # fresh before / refit / head, A before / refit / head
    accuracy, direct, conservative = float(row[2]), float(row[5]), float(row[6])
    assert abs(direct - accuracy) < 1e-3 * accuracy  # the CSV keeps 5 significant digits
    assert conservative > 0 and float(row[7]) > 0 and float(row[8]) > 0
    assert "predicting the training cells' mean stress" in output
    assert "fresh before / refit" in output
    assert len(row) == 15 and all(float(value) > 0 for value in row[9:])
    assert float(row[10]) < float(row[9])  # the refit lowers the error on fresh cells
    # the head's O grid removes the refit's lowest symmetry-breaking sectors exactly
    assert float(row[14]) < float(row[13])
    refit_figure = figure.with_name("figure_refit.png")
    assert f"figure: {refit_figure}" in output and refit_figure.stat().st_size > 10_000


def test_inductive_bias_example_refuses_options_for_other_targets(tmp_path):
    example = str(EXAMPLES / "07_metatrain_inductive_biases.py")
    options = ["--target", "born", "--with-energy", "--output", str(tmp_path / "f.png")]
    result = subprocess.run(
        [sys.executable, example, *options],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "--with-energy needs copper cells or --target dipole, not --target born" in result.stderr
    assert not (tmp_path / "f.png").exists()
    options = ["--target", "efg", "--refit", "--output", str(tmp_path / "f.png")]
    result = subprocess.run(
        [sys.executable, example, *options], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "--refit needs --target stress, not --target efg" in result.stderr
    for extra, message in (
        ([], "--refit-equivariance-weight needs --refit"),
        (["--refit"], "--refit-equivariance-weight must be >= 0, got -1.0"),
    ):
        options = ["--target", "stress", *extra, "--refit-equivariance-weight", "-1"]
        result = subprocess.run(
            [sys.executable, example, *options, "--output", str(tmp_path / "f.png")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 2
        assert message in result.stderr
        assert not (tmp_path / "f.png").exists()


def test_stress_probe_fits_separate_optimum_from_gradient_training():
    """Planted answers for the probe's two fits. Targets exactly linear in the inputs:
    least squares recovers them to round-off. With independent inputs 2000 Adam steps get
    there too; when the inputs share one dominant factor per cell and the targets live in
    the 3 % left (as the stress in the trunk's summed features), Adam stays near the
    targets' spread while least squares is still exact."""
    import numpy as np

    example = _example_module("07_metatrain_inductive_biases")
    generator = np.random.default_rng(0)
    independent = generator.standard_normal((320, 20))
    weights = generator.standard_normal((20, 9))
    weights -= weights.mean(axis=0)  # blind to a shift common to all inputs
    targets, sizes = independent @ weights, np.ones((320, 1))
    spread = 1000.0 * targets[256:].std()

    fits = example.linear_fits(independent, targets, sizes, 256)
    assert fits["probe lstsq"] < 1e-12 * spread
    assert fits["probe Adam"] < 0.01 * spread

    shared = 5.0 + generator.standard_normal((320, 1)) + 0.03 * independent
    fits = example.linear_fits(shared, targets, sizes, 256)
    assert fits["probe lstsq"] < 1e-10 * spread
    assert fits["probe Adam"] > 0.8 * spread


def test_mean_stress_baseline_known_answer(tmp_path):
    """Training cells with stresses 1 and 3 (times the identity, eV/A^3), a validation
    cell of 4 atoms with 4: the mean predicts 2, off by 2 / 4 atoms on the 3 diagonal
    components of 9, so sqrt(3 / 9) * 0.5 eV/A^3 = 288.7 meV/A^3 per atom."""
    import ase
    import ase.io
    import numpy as np
    from ase.calculators.singlepoint import SinglePointCalculator

    example = _example_module("07_metatrain_inductive_biases")
    frames = []
    for value in (1.0, 3.0, 4.0):
        atoms = ase.Atoms("Cu4", positions=np.eye(4, 3) * 2.0, cell=[5.0] * 3, pbc=True)
        atoms.calc = SinglePointCalculator(atoms, stress=-value * np.array([1, 1, 1, 0, 0, 0]))
        frames.append(atoms)
    ase.io.write(str(tmp_path / "cells.xyz"), frames, format="extxyz")
    (tmp_path / "indices").mkdir()
    (tmp_path / "indices" / "training.txt").write_text("0\n1\n")
    (tmp_path / "indices" / "validation.txt").write_text("2\n")
    expected = 1000.0 * np.sqrt(3.0 / 9.0) * 2.0 / 4.0
    rmse = example.mean_stress_rmse(tmp_path, tmp_path / "cells.xyz")
    assert abs(rmse - expected) < 1e-9 * expected
