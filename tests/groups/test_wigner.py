import pytest
import torch
from metatomic.torch.o3._wigner import (
    build_packed_wigner_matrices,
    wigner_matrices_for_lambda,
)
from scipy.spatial.transform import Rotation

import equiscope as eq
from _models import unit_points


def random_rotations(n, seed=0):
    return torch.from_numpy(Rotation.random(n, random_state=seed).as_matrix())


@pytest.mark.parametrize("lam", range(7))
def test_matches_metatomic_reference(lam):
    rotations = random_rotations(50)
    packed = build_packed_wigner_matrices(rotations, lam)
    reference = wigner_matrices_for_lambda(packed, 50, lam)
    assert torch.allclose(eq.wigner_d(lam, rotations), reference, atol=1e-12, rtol=0)


@pytest.mark.parametrize("lam", [1, 2, 5, 9])
def test_homomorphism_and_orthogonality(lam):
    a, b = random_rotations(20, 1), random_rotations(20, 2)
    da, db, dab = eq.wigner_d(lam, a), eq.wigner_d(lam, b), eq.wigner_d(lam, a @ b)
    assert torch.allclose(da @ db, dab, atol=1e-12)
    eye = torch.eye(2 * lam + 1, dtype=torch.float64)
    assert torch.allclose(da @ da.transpose(1, 2), eye.expand_as(da), atol=1e-12)


def test_lambda_one_is_the_rotation_in_yzx_order():
    rotations = random_rotations(10)
    order = [1, 2, 0]
    assert torch.allclose(eq.wigner_d(1, rotations), rotations[:, order][:, :, order])


def test_real_spherical_harmonics_transform_with_d(generator):
    # l = 2 harmonics (xy, yz, 3z^2 - r^2, xz, x^2 - y^2) up to normalisation
    points = unit_points(30, generator)
    rotation = random_rotations(1, 3)[0]

    def harmonics(p):
        x, y, z = p.unbind(-1)
        s3 = 3**0.5
        return torch.stack(
            [
                s3 * x * y,
                s3 * y * z,
                0.5 * (3 * z**2 - 1),
                s3 * x * z,
                s3 / 2 * (x**2 - y**2),
            ],
            -1,
        )

    rotated = harmonics(points @ rotation.T)
    expected = harmonics(points) @ eq.wigner_d(2, rotation[None])[0].T
    assert torch.allclose(rotated, expected, atol=1e-12)


def test_parity_of_improper_elements():
    rotations = random_rotations(5)
    for lam, sigma in [(0, -1), (1, 1), (1, -1), (2, 1), (3, -1)]:
        improper = eq.irrep_matrices(lam, sigma, -rotations)
        proper = eq.irrep_matrices(lam, sigma, rotations)
        assert torch.allclose(improper, sigma * (-1) ** lam * proper)


def test_unresolved_parity_rejects_improper_elements():
    with pytest.raises(ValueError, match="sigma=0"):
        eq.irrep_matrices(1, 0, -torch.eye(3, dtype=torch.float64)[None])


def test_negative_lambda_rejected():
    with pytest.raises(ValueError, match="lambda"):
        eq.wigner_d(-1, random_rotations(1))


def _axis_generators() -> torch.Tensor:
    """``K_a`` with ``K_a v = e_a x v``, ``[3, 3, 3]``."""
    eye = torch.eye(3, dtype=torch.float64)
    return torch.stack([torch.linalg.cross(eye[a].expand(3, 3), eye, dim=-1).T for a in range(3)])


@pytest.mark.parametrize("lam", range(7))
def test_generators_exponentiate_to_d(lam):
    generators = eq.wigner_generators(lam)
    assert generators.shape == (3, 2 * lam + 1, 2 * lam + 1)
    assert torch.allclose(generators, -generators.transpose(1, 2), atol=1e-14)
    for axis, k in enumerate(_axis_generators()):
        for theta in (0.3, -1.7, 2.9):
            rotation = torch.matrix_exp(theta * k)
            expected = eq.wigner_d(lam, rotation[None])[0]
            assert torch.allclose(torch.matrix_exp(theta * generators[axis]), expected, atol=1e-12)


@pytest.mark.parametrize("lam", [1, 2, 3, 6])
def test_generators_are_a_vector_operator(lam):
    """``D(R) (w . G) D(R)^T = (R w) . G``."""
    generators = eq.wigner_generators(lam)
    w = torch.tensor([0.3, -1.2, 0.8], dtype=torch.float64)
    for rotation in random_rotations(4, seed=lam):
        d = eq.wigner_d(lam, rotation[None])[0]
        left = d @ torch.einsum("x,xmn->mn", w, generators) @ d.T
        right = torch.einsum("x,xmn->mn", rotation @ w, generators)
        assert torch.allclose(left, right, atol=1e-12)


def test_lambda_one_generators_are_the_cross_product():
    """On lambda = 1 blocks (``y, z, x``), ``(w . G) t = w x t``."""
    w = torch.tensor([0.3, -1.2, 0.8], dtype=torch.float64)
    t = torch.tensor([-0.5, 0.4, 2.0], dtype=torch.float64)
    order = [1, 2, 0]
    coupled = torch.einsum("x,xmn,n->m", w, eq.wigner_generators(1), t[order])
    assert torch.allclose(coupled, torch.linalg.cross(w, t)[order], atol=1e-14)


def test_negative_lambda_generators_rejected():
    with pytest.raises(ValueError, match="lambda must be non-negative, got -2"):
        eq.wigner_generators(-2)
