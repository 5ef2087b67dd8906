import math

import pytest
import torch

import equiscope as eq
from _models import orbit, unit_points


@pytest.fixture(scope="module")
def o3_grid():
    return eq.grid("lebedev", degree=8, inversion=True)


def pair_field(positions):
    """An exactly equivariant vector per atom: sum_j exp(-r_ij) r_hat_ij."""
    d = positions[..., None, :, :] - positions[..., :, None, :]
    r = d.norm(dim=-1, keepdim=True)
    unit = torch.where(r > 0, d / r.clamp(min=1e-30), 0.0)
    return (torch.exp(-r) * unit).sum(-2)


def cloud(generator, n=6):
    return 1.3 * torch.randn(n, 3, dtype=torch.float64, generator=generator)


def test_equivariant_vector_has_zero_variance(o3_grid, generator):
    positions = orbit(cloud(generator), o3_grid.rotations)  # [n_grid, atoms, 3]
    forces = pair_field(positions)
    a2 = eq.equivariance_variance(forces, o3_grid, irrep="vector")
    assert a2.shape == (6,)
    assert float(a2.max()) < 1e-28
    spherical = forces[..., [1, 2, 0]]
    assert float(eq.equivariance_variance(spherical, o3_grid, irrep=(1, 1)).max()) < 1e-28


@pytest.mark.parametrize("irrep", ["vector", (1, 1)])
def test_constant_bias_gives_its_squared_norm(o3_grid, generator, irrep):
    bias = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    atoms = cloud(generator)
    forces = pair_field(orbit(atoms, o3_grid.rotations)) + bias
    if irrep != "vector":
        forces = forces[..., [1, 2, 0]]
    a2 = eq.equivariance_variance(forces, o3_grid, irrep=irrep)
    assert torch.allclose(a2, torch.full_like(a2, float(bias @ bias)), atol=1e-13, rtol=0)
    # Pi removes the bias and keeps the equivariant part exactly
    projected = eq.symmetrize(forces, o3_grid, irrep=irrep)
    expected = pair_field(atoms)
    if irrep != "vector":
        expected = expected[..., [1, 2, 0]]
    assert torch.allclose(projected, expected, atol=1e-13)


def test_planted_p2_anisotropy_has_the_analytic_variance(o3_grid, generator):
    # u(g) = exp(-r) (1 + a P2(z . R n)): Var = exp(-2r) a^2 <P2^2> = exp(-2r) a^2 / 5
    a, r = 0.7, 1.4
    n = unit_points(10, generator)
    cos = orbit(n, o3_grid.rotations)[..., 2]
    u = math.exp(-r) * (1 + a * 0.5 * (3 * cos**2 - 1))
    a2 = eq.equivariance_variance(u, o3_grid, irrep="scalar")
    expected = math.exp(-2 * r) * a**2 / 5
    assert torch.allclose(a2, torch.full_like(a2, expected), rtol=1e-12, atol=0)
    spec = eq.spectrum(u, o3_grid, max_lambda=4)
    assert spec[(2, 1)] == pytest.approx(10 * expected, rel=1e-12)


def test_rank2_tensor_with_planted_uniaxial_part(o3_grid, generator):
    c = 0.8
    positions = orbit(cloud(generator, 4), o3_grid.rotations)
    d = positions[..., None, :, :] - positions[..., :, None, :]
    stress = torch.einsum("...ija,...ijb->...ab", d, d)  # equivariant
    assert float(eq.equivariance_variance(stress, o3_grid, irrep="rank2").max()) < 1e-24
    planted = stress + c * torch.diag(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    a2 = eq.equivariance_variance(planted, o3_grid, irrep="rank2")
    assert float(a2) == pytest.approx(2 * c**2 / 3, rel=1e-12)


def test_error_identity(o3_grid, generator):
    bias = torch.tensor([0.1, 0.0, -0.4], dtype=torch.float64)
    atoms = cloud(generator)
    reference = pair_field(atoms)
    positions = orbit(atoms, o3_grid.rotations)
    cos = positions[..., 2:3] / positions.norm(dim=-1, keepdim=True)
    prediction = 1.05 * pair_field(positions) + bias + 0.2 * cos**3
    errors = eq.error_decomposition(prediction, reference, o3_grid, irrep="vector")
    assert torch.allclose(
        errors["oriented"],
        errors["symmetrized"] + errors["equivariance"],
        rtol=1e-12,
        atol=0,
    )
    assert float(errors["equivariance"].min()) > 1e-3
    projected = eq.symmetrize(prediction, o3_grid, irrep="vector")
    assert torch.allclose(errors["symmetrized"], (projected - reference).square().sum(-1))


def test_pooled_rmse_and_noise_floor():
    squared = torch.tensor([4.0, 16.0], dtype=torch.float64)
    assert eq.pooled_rmse(squared, n_components=2) == pytest.approx(math.sqrt(20 / 4))
    assert eq.pooled_rmse(squared, n_atoms=[2, 4]) == pytest.approx(math.sqrt((1 + 1) / 2))
    values = torch.tensor([3.0, -3.0, 3.0, -3.0])
    assert eq.noise_floor(values, torch.float32) == pytest.approx(3 * 2.0**-23)
    with pytest.raises(ValueError, match="n_atoms"):
        eq.pooled_rmse(squared, n_atoms=[1])
    with pytest.raises(ValueError, match="no samples"):
        eq.pooled_rmse(torch.zeros(0))


def test_negative_weight_rule_clamps_roundoff_and_raises_on_material(generator):
    grid = eq.grid("lebedev", degree=13, inversion=True)
    assert float(grid.weights.min()) < 0
    # a float32 equivariant model: only round-off, no error raised, A at the noise floor
    positions = orbit(cloud(generator), grid.rotations)
    forces = pair_field(positions).to(torch.float32)
    a2 = eq.equivariance_variance(forces, grid, irrep="vector")
    assert float(a2.min()) >= 0
    floor = eq.noise_floor(forces, torch.float32)
    assert math.sqrt(float(a2.mean()) / 3) < 10 * floor
    # a response concentrated on the negative weights is not resolved: raise
    spike = (grid.weights < 0).to(torch.float64)
    with pytest.raises(ValueError, match="materially negative"):
        eq.equivariance_variance(spike, grid, irrep="scalar")


def test_axial_grid_with_cartesian_vectors(generator):
    grid = eq.grid("o2", n=8)
    positions = orbit(cloud(generator), grid.rotations)
    forces = pair_field(positions)
    assert float(eq.equivariance_variance(forces, grid, irrep="vector").max()) < 1e-28
    tilted = forces + torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    a2 = eq.equivariance_variance(tilted, grid, irrep="vector")
    assert torch.allclose(a2, torch.ones_like(a2), atol=1e-13)
    in_plane = forces[..., :2]
    assert float(eq.equivariance_variance(in_plane, grid, irrep=(1, 0)).max()) < 1e-28


@pytest.mark.parametrize(
    ("shape", "irrep", "message"),
    [
        ((684, 4, 3), (2, 1), "total size 5"),
        ((684, 4, 3), "tensor", "unknown irrep 'tensor'"),
        ((684, 4, 3), (1, 2), "not an irrep of O\\(3\\)"),
        ((684, 3), "rank2", "at least 3 dimension"),
        ((683, 3), "vector", "has 684 elements"),
    ],
)
def test_bad_input(o3_grid, shape, irrep, message):
    with pytest.raises(ValueError, match=message):
        eq.equivariance_variance(torch.zeros(shape), o3_grid, irrep=irrep)


def test_reference_shape_checked(o3_grid):
    with pytest.raises(ValueError, match="reference has shape"):
        eq.error_decomposition(torch.zeros(684, 2, 3), torch.zeros(3, 3), o3_grid, "vector")
