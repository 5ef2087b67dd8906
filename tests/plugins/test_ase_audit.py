"""Known answers through the ASE-calculator adapter: the orbit of any calculator,
evaluated one copy per call, measured with the core's A and spectrum."""

import math

import ase
import ase.build
import ase.io
import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones

import equiscope as eq
from _calculators import Chiral, Failing, PairCalculator, PlantedAnisotropy, cubic, triclinic
from equiscope_ase.audit import (
    CalculatorAdapter,
    CalculatorError,
    samples_from,
)

O3 = eq.grid("lebedev", degree=4, inversion=True)
SO3 = eq.grid("lebedev", degree=4)
MOLECULE = [[0.0, 0.0, 0.0], [1.2, 0.1, -0.2], [-0.5, 0.9, 0.3], [0.1, -0.8, 0.7]]


def measure(adapter, atoms, grid, outputs, max_lambda=2):
    """``{name: (A^2 summed, mean squared value, {sector: fraction})}``."""
    sample = samples_from([atoms])[0]
    result = adapter.evaluate(sample, grid, outputs=outputs)
    measured = {}
    for name in outputs:
        responses, kind = result.responses[name], result.kinds[name]
        a2 = float(eq.equivariance_variance(responses, grid, kind.irrep).sum())
        value2 = float(responses.square().sum()) / responses.shape[0]
        sectors, norms = eq.sector_norms(responses, grid, max_lambda)
        shares = norms.reshape(len(sectors), -1).sum(1)
        fractions = dict(zip(sectors, (shares / shares.sum()).tolist(), strict=True))
        measured[name] = (a2, value2, fractions)
    return measured


@pytest.mark.parametrize("structure", [cubic, triclinic])
@pytest.mark.parametrize(
    "calculator", [EMT, lambda: LennardJones(sigma=2.3, epsilon=0.1, rc=5.0, smooth=True)]
)
def test_ase_calculators_are_at_the_floor_with_inversion(calculator, structure):
    adapter = CalculatorAdapter(calculator())
    atoms = structure()
    outputs = adapter.outputs(samples_from([atoms]), None)
    assert outputs == ["energy", "forces", "stress"]
    measured = measure(adapter, atoms, O3, outputs)
    for name, (a2, value2, _) in measured.items():
        assert value2 > 0, name
        assert math.sqrt(a2 / value2) < 1e-10, name
    assert measured["forces"][2][(1, 1)] == pytest.approx(1.0, abs=1e-12)
    assert measured["energy"][2][(0, 1)] == pytest.approx(1.0, abs=1e-12)
    stress = measured["stress"][2]
    assert stress[(0, 1)] + stress[(2, 1)] == pytest.approx(1.0, abs=1e-12)


def test_planted_p2_anisotropy_has_the_analytic_variance_and_sector():
    atoms = ase.Atoms("COHH", positions=MOLECULE)
    adapter = CalculatorAdapter(PlantedAnisotropy(0.6))
    measured = measure(adapter, atoms, O3, ["energy", "forces"])
    p = torch.tensor(MOLECULE, dtype=torch.float64)
    d = torch.stack([p[j] - p[i] for i in range(4) for j in range(i + 1, 4)])
    r = d.norm(dim=1)
    n = d / r[:, None]
    p2 = 0.5 * (3 * (n @ n.T) ** 2 - 1)
    weights = torch.exp(-r)
    variance = 0.6**2 * float(weights @ p2 @ weights) / 5  # addition theorem
    mean = float(weights.sum())
    a2, _, fractions = measured["energy"]
    assert a2 == pytest.approx(variance, rel=1e-10)
    assert fractions[(2, 1)] == pytest.approx(variance / (mean**2 + variance), rel=1e-9)
    assert max((v, k) for k, v in fractions.items() if k != (0, 1))[1] == (2, 1)
    assert measured["forces"][0] > 1e-6  # forces from the energy carry it as well


def test_planted_chiral_term_breaks_only_parity():
    atoms = ase.Atoms("COHH", positions=MOLECULE)
    chirality = 0.3
    adapter = CalculatorAdapter(Chiral(chirality))
    p = np.array(MOLECULE)
    det = float(np.linalg.det(p[1:4] - p[0]))
    measured = measure(adapter, atoms, O3, ["energy", "forces"])
    a2, _, fractions = measured["energy"]
    assert a2 == pytest.approx((chirality * det) ** 2, rel=1e-10)
    for name in ("energy", "forces"):
        a2, value2, fractions = measured[name]
        assert a2 > 1e-6 * value2, name
        expected = (0, 1) if name == "energy" else (1, 1)
        broken = {k: v for k, v in fractions.items() if k != expected and v > 1e-20}
        assert broken and all(sigma == -1 for _, sigma in broken), (name, broken)
    # without inversion the term is invariant: at the floor
    for name, (a2, value2, _) in measure(adapter, atoms, SO3, ["energy", "forces"]).items():
        assert math.sqrt(a2 / value2) < 1e-10, name


@pytest.mark.parametrize("structure", [cubic, triclinic])
def test_signed_volume_stress_is_at_the_floor_with_inversion(structure):
    atoms = structure()
    calculator = PairCalculator(signed_volume=True)
    adapter = CalculatorAdapter(calculator)
    for name, (a2, value2, _) in measure(
        adapter, atoms, O3, ["energy", "forces", "stress"]
    ).items():
        assert math.sqrt(a2 / value2) < 1e-10, name
    # the calculator is sensitive to the handedness: -cell flips its stress
    left = atoms.copy()
    left.set_cell(-atoms.cell.array, scale_atoms=False)
    assert np.allclose(calculator.get_stress(left), -calculator.get_stress(atoms))
    assert abs(calculator.get_stress(atoms)).max() > 1e-3


def test_declared_outputs_per_structure_and_per_atom():
    atoms = ase.Atoms("COHH", positions=MOLECULE)
    bias = np.array([0.2, -0.1, 0.3])
    declared = {"dipole": "vector", "charges": "scalar", "axial": "pseudovector"}
    adapter = CalculatorAdapter(PlantedAnisotropy(0.0, bias), declared=declared)
    sample = samples_from([atoms])[0]
    assert adapter.outputs([sample], None) == ["energy", "forces", *declared]
    result = adapter.evaluate(sample, O3, outputs=list(declared))
    assert result.responses["dipole"].shape == (O3.size, 1, 3)
    assert result.responses["charges"].shape == (O3.size, 4, 1)
    assert result.kinds["dipole"].per_structure and not result.kinds["charges"].per_structure
    assert result.kinds["axial"].irrep == (1, -1)
    measured = measure(adapter, atoms, O3, list(declared))
    assert measured["dipole"][0] == pytest.approx(float(bias @ bias), rel=1e-10)
    for name in ("charges", "axial"):
        a2, value2, _ = measured[name]
        assert math.sqrt(a2 / value2) < 1e-10, name
    assert measured["axial"][2][(1, -1)] == pytest.approx(1.0, abs=1e-12)
    # the same axial vector declared polar breaks: all of it sits in (1,-1)
    polar = CalculatorAdapter(PlantedAnisotropy(0.0), declared={"axial": "vector"})
    a2, value2, _ = measure(polar, atoms, O3, ["axial"])["axial"]
    assert a2 == pytest.approx(value2, rel=1e-10)


def test_same_known_answer_as_the_metatomic_model():
    from metatomic.torch import System

    from _models import PlantedAnisotropy as MetatomicPlanted
    from _models import atomistic
    from equiscope_atoms import evaluate_orbit, wrap_model

    model = wrap_model(atomistic(MetatomicPlanted(0.6, [0.0, 0.0, 0.0])))
    system = System(
        types=torch.tensor([6, 8, 1, 1], dtype=torch.int32),
        positions=torch.tensor(MOLECULE, dtype=torch.float64),
        cell=torch.zeros(3, 3, dtype=torch.float64),
        pbc=torch.zeros(3, dtype=torch.bool),
    )
    reference = evaluate_orbit(model, system, O3, outputs=["energy"], forces=True)
    atoms = ase.Atoms("COHH", positions=MOLECULE)
    ours = samples_from([atoms])[0]
    result = CalculatorAdapter(PlantedAnisotropy(0.6)).evaluate(
        ours, O3, outputs=["energy", "forces"]
    )
    for name, irrep in (("energy", "scalar"), ("forces", "vector")):
        mine, theirs = result.responses[name], reference.responses[name]
        a2 = eq.equivariance_variance(mine, O3, irrep).sum()
        b2 = eq.equivariance_variance(theirs, O3, irrep).sum()
        assert float(a2) == pytest.approx(float(b2), rel=1e-10)
        _, norms = eq.sector_norms(mine, O3, 2)
        _, reference_norms = eq.sector_norms(theirs, O3, 2)
        assert torch.allclose(
            norms.reshape(len(norms), -1).sum(1),
            reference_norms.reshape(len(reference_norms), -1).sum(1),
            rtol=1e-10,
            atol=1e-14,
        )


def test_a_failing_copy_names_the_structure_and_the_grid_element():
    atoms = ase.Atoms("COHH", positions=MOLECULE)
    adapter = CalculatorAdapter(Failing(fail_at=5))
    with pytest.raises(CalculatorError) as error:
        adapter.evaluate(samples_from([atoms])[0], O3, outputs=["energy"])
    message = str(error.value)
    assert "\n" not in message
    assert "structure 0, grid element 5" in message
    assert "RuntimeError: planted failure" in message


def test_stress_is_left_out_when_a_structure_is_not_periodic():
    samples = samples_from([cubic(), ase.Atoms("COHH", positions=MOLECULE)])
    adapter = CalculatorAdapter(EMT())
    with pytest.warns(UserWarning, match="structure\\(s\\) 1 are not"):
        assert adapter.outputs(samples, None) == ["energy", "forces"]
    with pytest.raises(CalculatorError, match="stress needs every structure periodic"):
        adapter.outputs(samples, ["energy", "stress"])
    with pytest.raises(CalculatorError, match="unknown output\\(s\\) dipole"):
        adapter.outputs(samples, ["dipole"])
    with pytest.raises(CalculatorError, match="does not implement dipole"):
        CalculatorAdapter(EMT(), declared={"dipole": "vector"}).outputs(samples, None)


def test_declared_output_of_the_wrong_shape():
    atoms = ase.Atoms("COHH", positions=MOLECULE)
    adapter = CalculatorAdapter(PlantedAnisotropy(0.0), declared={"charges": "vector"})
    with pytest.raises(CalculatorError, match="output 'charges' \\(declared vector\\) has shape"):
        adapter.evaluate(samples_from([atoms])[0], SO3, outputs=["charges"])


def test_jitter_moves_positions_and_cell_by_their_rounding_error():
    sample = samples_from([triclinic()])[0]
    adapter = CalculatorAdapter(EMT(), model_dtype="float32")
    assert adapter.dtype == torch.float32
    eps = torch.finfo(torch.float32).eps
    moved = adapter.jittered(sample, eps, torch.Generator().manual_seed(0))
    shift = np.abs(moved.atoms.positions - sample.atoms.positions)
    scale = np.linalg.norm(sample.atoms.positions, axis=1, keepdims=True)
    assert 0 < shift.max() < 6 * eps * scale.max()
    cell_shift = np.abs(moved.atoms.cell.array - sample.atoms.cell.array)
    assert 0 < cell_shift.max() < 6 * eps * np.linalg.norm(sample.atoms.cell.array, axis=1).max()
    assert moved.index == sample.index
    again = adapter.jittered(sample, eps, torch.Generator().manual_seed(0))
    assert np.array_equal(again.atoms.positions, moved.atoms.positions)


def test_references_from_an_extxyz_file(tmp_path):
    from equiscope_ase.audit import read_atoms

    atoms = cubic()
    atoms.calc = EMT()
    energy, forces, stress = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
    atoms.info["dipole"] = np.array([0.1, 0.2, 0.3])
    ase.io.write(str(tmp_path / "cu.xyz"), [atoms, atoms], format="extxyz")
    samples = read_atoms(tmp_path / "cu.xyz", limit=1)
    assert len(samples) == 1
    adapter = CalculatorAdapter(EMT(), declared={"dipole": "vector"})
    sample = samples[0]
    assert adapter.reference(sample, "energy").tolist() == [[pytest.approx(energy)]]
    assert torch.allclose(adapter.reference(sample, "forces"), torch.from_numpy(forces))
    full = adapter.reference(sample, "stress")
    assert full.shape == (1, 3, 3)
    assert float(full[0, 1, 2]) == pytest.approx(stress[3])
    assert adapter.reference(sample, "dipole").tolist() == [pytest.approx([0.1, 0.2, 0.3])]
    # a live calculator's results are not labels
    assert samples_from([atoms])[0].labels.get("energy") is None
    # the identity copy reproduces the labels
    result = adapter.evaluate(sample, eq.Grid.identity(), outputs=["energy", "forces", "stress"])
    for name in ("energy", "forces", "stress"):
        assert torch.allclose(result.responses[name][0], adapter.reference(sample, name))
