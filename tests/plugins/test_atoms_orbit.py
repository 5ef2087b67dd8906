import pytest
import torch
from metatomic.torch import ModelOutput, System

import equiscope as eq
from _models import PlantedAnisotropy, molecule
from equiscope_atoms import orbit_responses, tiny_pet, transformed_system


def no_neighbors(system):
    return system


def test_planted_model_on_the_orbit_has_the_known_bias_variance():
    bias = [0.2, -0.1, 0.3]
    model = PlantedAnisotropy(0.0, bias)
    grid = eq.grid("octahedral", inversion=True)
    system = molecule(torch.Generator().manual_seed(3))
    # energy: isotropic pair sum, exactly invariant; its forces are equivariant
    responses = orbit_responses(model, system, grid, batch_size=7, neighbor_lists=no_neighbors)
    assert responses.energy.shape == (48,)
    assert float(eq.equivariance_variance(responses.energy, grid, "scalar")) < 1e-28
    assert float(eq.equivariance_variance(responses.forces, grid, "vector").max()) < 1e-26


def test_forces_are_minus_the_energy_gradient_in_every_frame():
    model = PlantedAnisotropy(0.5, [0.0, 0.0, 0.0])
    grid = eq.grid("tetrahedral")
    system = molecule(torch.Generator().manual_seed(4))
    responses = orbit_responses(model, system, grid, neighbor_lists=no_neighbors)
    for index, matrix in enumerate(grid.rotations):
        copy = transformed_system(system, matrix)
        positions = copy.positions.clone().requires_grad_(True)
        moved = System(types=copy.types, positions=positions, cell=copy.cell, pbc=copy.pbc)
        energy = model([moved], {"energy": ModelOutput(sample_kind="system")}, None)
        energy = energy["energy"].block().values.sum()
        (gradient,) = torch.autograd.grad(energy, positions)
        assert torch.allclose(responses.forces[index], -gradient, atol=1e-12)
        assert float(responses.energy[index]) == pytest.approx(float(energy.detach()), rel=1e-12)


def test_pet_features_do_not_depend_on_batch_size():
    model = tiny_pet([1, 6, 8], width=8, layers=1)
    system = molecule(torch.Generator().manual_seed(5))
    grid = eq.grid("tetrahedral")
    one = orbit_responses(model, system, grid, batch_size=1, features=("gnn_layers.0_node",))
    all_ = orbit_responses(model, system, grid, batch_size=12, features=("gnn_layers.0_node",))
    assert torch.allclose(one.energy, all_.energy, atol=1e-10)
    assert torch.allclose(one.forces, all_.forces, atol=1e-10)
    features = one.features["gnn_layers.0_node"]
    assert features.shape[:2] == (12, 5)
    assert torch.allclose(features, all_.features["gnn_layers.0_node"], atol=1e-10)
    # untrained PET is not invariant, but its energy is close to it
    a2 = float(eq.equivariance_variance(one.energy, grid, "scalar"))
    assert 0 < a2 < float(one.energy.square().mean())
