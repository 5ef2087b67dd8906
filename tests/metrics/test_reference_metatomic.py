"""equiscope's A and B equal the paper authors' reference implementation
(metatomic.torch.o3.SymmetrizedModel) on the same Lebedev grid, in float64."""

import pytest
import torch
from metatomic.torch import ModelOutput
from metatomic.torch.o3 import SymmetrizedModel

import equiscope as eq
from _models import PlantedAnisotropy, atomistic, molecule, rotated_system

GRID_DEGREE = 8
MAX_LAMBDA = 4


@pytest.fixture(scope="module")
def setup():
    model = atomistic(PlantedAnisotropy(0.6, [0.2, -0.1, 0.3]))
    system = molecule(torch.Generator().manual_seed(7))
    grid = eq.grid("lebedev", degree=GRID_DEGREE, inversion=True)
    outputs = {
        "energy": ModelOutput(sample_kind="system"),
        "non_conservative_force": ModelOutput(sample_kind="atom"),
    }
    responses = {name: [] for name in outputs}
    for matrix in grid.rotations:
        result = model.module([rotated_system(system, matrix)], outputs, None)
        for name in outputs:
            responses[name].append(result[name].block().values.detach())
    responses = {name: torch.stack(values) for name, values in responses.items()}
    wrapped = SymmetrizedModel.wrap(
        model,
        max_angular_momentum_character=MAX_LAMBDA,
        max_angular_momentum_grid=GRID_DEGREE,
        batch_size=400,
    )
    requests = {}
    for name, output in outputs.items():
        requests["o3::variance::" + name] = output
        requests["o3::character_projection::" + name] = output
    reference = wrapped.module([system], requests, None)
    return grid, responses, reference


def test_same_grid_as_symmetrized_model(setup):
    grid, _, _ = setup
    from metatomic.torch.o3._quadrature import (
        choose_quadrature,
        get_rotation_quadrature,
    )

    rotations, weights = get_rotation_quadrature(*choose_quadrature(GRID_DEGREE))
    assert torch.allclose(grid.rotations[: len(weights)], torch.from_numpy(rotations))
    assert torch.allclose(2 * grid.weights[: len(weights)], torch.from_numpy(weights))


def test_variance_matches(setup):
    grid, responses, reference = setup
    energy = responses["energy"][:, 0, 0]
    a2 = eq.equivariance_variance(energy, grid, irrep="scalar")
    ref = reference["o3::variance::energy"].block().values.reshape(())
    assert float(a2) == pytest.approx(float(ref), rel=1e-8)
    assert float(a2) > 1e-4  # the planted anisotropy is seen

    forces = responses["non_conservative_force"][..., 0]  # [n, atoms, 3]
    a2 = eq.equivariance_variance(forces, grid, irrep="vector") / 3  # per component
    ref = reference["o3::variance::non_conservative_force"].block().values.reshape(-1)
    assert torch.allclose(a2, ref, rtol=1e-8, atol=0)


def character_projection(tensor, lam, sigma):
    keys = tensor.keys
    for index in range(len(keys)):
        key = keys.entry(index)
        if int(key["chi_lambda"]) == lam and int(key["chi_sigma"]) == sigma:
            return tensor.block(index).values
    raise KeyError((lam, sigma))


@pytest.mark.parametrize("name", ["energy", "non_conservative_force"])
def test_character_projection_matches(setup, name):
    grid, responses, reference = setup
    values = responses[name]
    spec_per_sample = eq.sector_norms(values, grid, MAX_LAMBDA)
    sectors, norms = spec_per_sample  # [sectors, samples, (3,) 1]
    ref_tensor = reference["o3::character_projection::" + name]
    floor = 1e-12 * float(norms.sum())  # zero sectors agree to round-off of the total
    for index, (lam, sigma) in enumerate(sectors):
        ours = norms[index].reshape(norms.shape[1], -1).sum(-1)
        theirs = character_projection(ref_tensor, lam, sigma)
        theirs = theirs.reshape(theirs.shape[0], -1).sum(-1)
        assert torch.allclose(ours, theirs, rtol=1e-8, atol=floor), (lam, sigma)
