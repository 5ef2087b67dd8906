"""Least-squares refit of the readout: exact on targets a readout of the same trunk
produces, refused where the readout is not linear."""

import ase.build
import numpy as np
import pytest
import torch
from metatomic.torch import ModelOutput, systems_to_torch
from metatrain.utils.architectures import get_default_hypers
from metatrain.utils.data import DatasetInfo
from metatrain.utils.data.target_info import get_generic_target_info
from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

from equiscope_atoms.orbit import transformed_system
from equiscope_metatrain.architecture import EquiscopeModel
from equiscope_metatrain.refit import readout_parameters, refit_readout

SMALL = {"d_pet": 8, "d_head": 8, "d_node": 8, "d_feedforward": 8, "num_heads": 1}
STRESS = {"quantity": "pressure", "unit": "eV/A^3", "type": {"cartesian": {"rank": 2}}}


def model_with(targets: dict, *, tensor_basis: bool, lmax=None) -> EquiscopeModel:
    info = DatasetInfo(
        length_unit="angstrom",
        atomic_types=[29],
        targets={
            name: get_generic_target_info(name, {**options, "num_subtargets": 1})
            for name, options in targets.items()
        },
    )
    hypers = get_default_hypers("experimental.equiscope")["model"]
    hypers["base"]["model"] = {**SMALL, "num_gnn_layers": 2}
    hypers["tensor_basis_readout"] = tensor_basis
    if lmax is not None:  # solid-harmonic edges; lmax = 0: an invariant trunk
        hypers["edge_embedding"] = {"kind": "solid_harmonics", "lmax": lmax}
    torch.manual_seed(0)
    return EquiscopeModel(hypers, info).to(torch.float64).eval()


def stress_model(tensor_basis: bool, lmax=None) -> EquiscopeModel:
    return model_with(
        {"non_conservative_stress": {**STRESS, "sample_kind": "system"}},
        tensor_basis=tensor_basis,
        lmax=lmax,
    )


def copper_cells(model, n: int, seed: int) -> list:
    generator = np.random.default_rng(seed)
    systems = []
    for index in range(n):
        atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((1, 1, 2))
        deformation = np.eye(3) + 0.03 * generator.standard_normal((3, 3))
        atoms.set_cell(atoms.cell.array @ deformation, scale_atoms=True)
        atoms.rattle(0.1, seed=seed + index)
        system = systems_to_torch(atoms, dtype=torch.float64)
        systems.append(get_system_with_neighbor_lists(system, model.requested_neighbor_lists()))
    return systems


def stresses(model, systems) -> torch.Tensor:
    request = {"non_conservative_stress": ModelOutput(sample_kind="system")}
    with torch.no_grad():
        values = [model([s], request)["non_conservative_stress"].block().values for s in systems]
    return torch.stack([v.reshape(-1) for v in values])


def teacher_and_student(tensor_basis: bool, lmax=None):
    """Two copies of a model, the first with other readout weights (same trunk)."""
    teacher = stress_model(tensor_basis, lmax)
    student = stress_model(tensor_basis, lmax)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in readout_parameters(teacher, "non_conservative_stress"):
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    return teacher, student


def refit_and_check(
    teacher, student, n_fit: int, n_validation: int, orientations: int, weight: float = 0.0
):
    """Refit ``student`` to ``teacher``'s stresses on fresh cells (``weight``: the
    equivariance weight); checks the targets come back to round-off on the fitted and the
    held-out cells. Returns the held-out cells, the targets' size and the refit's report."""
    fit = copper_cells(student, n_fit, seed=0)
    validation = copper_cells(student, n_validation, seed=100)
    targets, validation_targets = stresses(teacher, fit), stresses(teacher, validation)
    size = float(validation_targets.square().mean().sqrt())
    result = refit_readout(
        student,
        fit,
        targets,
        validation,
        validation_targets,
        output="non_conservative_stress",
        orientations=orientations,
        equivariance_weight=weight,
    )
    assert result["validation_rmse_before"] > 0.1 * size
    assert result["training_rmse_after"] < 1e-8 * size
    assert result["validation_rmse_after"] < 1e-8 * size
    return validation, size, result


@pytest.mark.parametrize("tensor_basis", [True, False])
def test_refit_recovers_a_readout_of_the_same_trunk(tensor_basis):
    """Targets from the model with other readout weights (same trunk): the map is affine
    in the readout, so the refit (one orientation) reproduces them to round-off on
    held-out cells too."""
    teacher, student = teacher_and_student(tensor_basis)
    validation, size, _ = refit_and_check(teacher, student, 60, 4, orientations=0)
    refitted = stresses(student, validation)
    assert torch.allclose(refitted, stresses(teacher, validation), rtol=0, atol=1e-8 * size)


def test_refit_with_orientations_keeps_an_exactly_equivariant_readout():
    """An invariant trunk (lmax = 0) with the tensor basis: the teacher's stress rotates
    exactly, so the rotated and inverted copies' targets are its own outputs there; the
    refit recovers it on all of them and the refitted stress still rotates exactly."""
    teacher, student = teacher_and_student(True, lmax=0)
    validation, size, _ = refit_and_check(teacher, student, 16, 2, orientations=2)
    rotation = torch.linalg.matrix_exp(
        torch.tensor([[0.0, -0.4, 0.9], [0.4, 0.0, -0.2], [-0.9, 0.2, 0.0]], dtype=torch.float64)
    )
    moved = [
        get_system_with_neighbor_lists(
            transformed_system(s, rotation), student.requested_neighbor_lists()
        )
        for s in validation
    ]
    expected = rotation @ stresses(student, validation).reshape(-1, 3, 3) @ rotation.T
    rotated = stresses(student, moved).reshape(-1, 3, 3)
    assert torch.allclose(rotated, expected, rtol=0, atol=1e-10 * size)


def test_refit_refuses_blocks_on_cross_products():
    rank_2 = {"quantity": "", "unit": "", "type": {"cartesian": {"rank": 2}}}
    model = model_with({"mtt::born": {**rank_2, "sample_kind": "atom"}}, tensor_basis=True)
    with pytest.raises(ValueError, match="'mtt::born' has blocks read out on cross products"):
        readout_parameters(model, "mtt::born")


def test_refit_rejects_bad_input():
    model = stress_model(True)
    cells = copper_cells(model, 2, seed=0)
    before = [p.detach().clone() for p in readout_parameters(model, "non_conservative_stress")]
    with pytest.raises(ValueError, match="no readout for output 'energy'"):
        readout_parameters(model, "energy")
    nan = torch.zeros(2, 9)
    nan[1, 4] = float("nan")
    for targets, validation_targets, message in (
        (torch.zeros(2, 6), torch.zeros(2, 6), "targets have 6 values per structure"),
        (torch.zeros(2, 9), nan, "validation_targets holds NaN or infinite values"),
        (torch.zeros(3, 9), torch.zeros(2, 9), "targets has 3 rows for 2 structures"),
    ):
        with pytest.raises(ValueError, match=message):
            refit_readout(
                model, cells, targets, cells, validation_targets, output="non_conservative_stress"
            )
    after = readout_parameters(model, "non_conservative_stress")
    assert all(torch.equal(a, b) for a, b in zip(after, before, strict=True))  # untouched
    with pytest.raises(ValueError, match="at least one training and one validation"):
        refit_readout(model, cells, torch.zeros(2, 9), [], torch.zeros(0, 9), output="x")
    zeros = torch.zeros(2, 9)
    with pytest.raises(ValueError, match=r"equivariance_weight must be >= 0, got -1\.0"):
        refit_readout(model, cells, zeros, cells, zeros, output="x", equivariance_weight=-1.0)
    with pytest.raises(ValueError, match="equivariance_weight > 0 needs orientations >= 1"):
        refit_readout(
            model, cells, zeros, cells, zeros, output="x", equivariance_weight=1.0, orientations=0
        )


def orbit_spread_rmse(model, systems, orientations: int, seed: int) -> float:
    """Independent Cartesian check of the refit's equivariance RMSE: the stress of each
    cell and of its copies under the random O(3) grid the refit draws, rotated back
    (``R^T sigma(R x) R``), RMS about the orbit mean."""
    import equiscope as eq

    grid = eq.grid("random", n=orientations, seed=seed, inversion=True)
    matrices = torch.cat([torch.eye(3, dtype=torch.float64)[None], grid.rotations])
    back = []
    for matrix in matrices:
        moved = [
            get_system_with_neighbor_lists(
                transformed_system(s, matrix), model.requested_neighbor_lists()
            )
            for s in systems
        ]
        back.append(matrix.T @ stresses(model, moved).reshape(-1, 3, 3) @ matrix)
    back = torch.stack(back)
    return float((back - back.mean(dim=0)).square().mean().sqrt())


def test_equivariance_weight_trades_accuracy_for_symmetry():
    """PET's readout on its orientation-dependent trunk, fitted to the exactly equivariant
    stress of a tensor-basis model on an invariant trunk, at one ridge: the penalised
    least squares moves along its Pareto front as mu grows (the spread about the orbit
    mean falls, the error rises), never ends above its start in the objective it
    minimises (Delta = 0 is a candidate), and reports the spread an independent
    Cartesian computation on the same orbit gives."""
    teacher = stress_model(True, lmax=0)
    fit = copper_cells(teacher, 12, seed=0)
    validation = copper_cells(teacher, 3, seed=100)
    targets, validation_targets = stresses(teacher, fit), stresses(teacher, validation)
    results = []
    for weight in (0.0, 3.0, 1000.0):
        student = stress_model(False)
        result = refit_readout(
            student,
            fit,
            targets,
            validation,
            validation_targets,
            output="non_conservative_stress",
            orientations=2,
            ridges=(1e-10,),
            equivariance_weight=weight,
        )
        before = (
            result["training_rmse_before"] ** 2
            + weight * result["training_equivariance_rmse_before"] ** 2
        )
        after = (
            result["training_rmse_after"] ** 2
            + weight * result["training_equivariance_rmse_after"] ** 2
        )
        assert after <= before
        for name, systems, seed in (("training", fit, 0), ("validation", validation, 1)):
            reported = result[f"{name}_equivariance_rmse_after"]
            assert reported == pytest.approx(orbit_spread_rmse(student, systems, 2, seed), 1e-9)
        results.append(result)
    spreads = [r["training_equivariance_rmse_after"] for r in results]
    errors = [r["training_rmse_after"] for r in results]
    assert spreads[0] > spreads[1] > spreads[2]
    assert errors[0] < errors[1] < errors[2]
    assert spreads[2] < 0.1 * spreads[0]


def test_equivariance_weight_keeps_an_exact_answer_exact():
    """Targets an equivariant readout of the same trunk gives exactly: the penalty is
    zero there, so the penalised refit still recovers them to round-off."""
    teacher, student = teacher_and_student(True, lmax=0)
    _, size, result = refit_and_check(teacher, student, 16, 2, orientations=2, weight=100.0)
    assert result["validation_equivariance_rmse_after"] < 1e-10 * size
