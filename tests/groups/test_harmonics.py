"""Real spherical harmonics: the addition theorem and the basis change to Wigner D."""

import math

import torch
from scipy.spatial.transform import Rotation
from scipy.special import eval_legendre

import equiscope as eq
from equiscope.groups.harmonics import SphericalHarmonics


def test_spherical_harmonics_obey_the_addition_theorem():
    generator = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(40, 3, generator=generator, dtype=torch.float64))
    b = torch.nn.functional.normalize(torch.randn(40, 3, generator=generator, dtype=torch.float64))
    harmonics = torch.jit.script(SphericalHarmonics(8))
    ya, yb = harmonics(a), harmonics(b)
    for lam in range(9):
        block = slice(lam * lam, (lam + 1) ** 2)
        left = (ya[:, block] * yb[:, block]).sum(-1)
        cosines = (a * b).sum(-1).numpy()
        right = (2 * lam + 1) / (4 * math.pi) * torch.from_numpy(eval_legendre(lam, cosines))
        assert torch.allclose(left, right, atol=1e-12), lam


def test_harmonics_rotate_with_the_engines_wigner_d_up_to_the_sign_of_odd_m():
    """Y(R u) = D(R) Y(u) with D = S D_engine S, S = diag((-1)^m)."""
    harmonics = SphericalHarmonics(6)
    generator = torch.Generator().manual_seed(1)
    points = torch.nn.functional.normalize(
        torch.randn(30, 3, generator=generator, dtype=torch.float64), dim=-1
    )
    rotation = torch.from_numpy(Rotation.random(random_state=7).as_matrix())
    before, after = harmonics(points), harmonics(points @ rotation.T)
    for lam in range(7):
        block = slice(lam * lam, (lam + 1) ** 2)
        m = torch.arange(-lam, lam + 1)
        sign = torch.where(m % 2 != 0, -1.0, 1.0).to(torch.float64)
        d = sign[:, None] * eq.wigner_d(lam, rotation[None])[0] * sign[None, :]
        assert torch.allclose(after[:, block], before[:, block] @ d.T, atol=1e-13), lam


def test_harmonics_without_condon_shortley_rotate_with_metatomics_wigner_d():
    """``condon_shortley=False``: Y(R u) = D(R) Y(u) with the engine's (metatomic's) D,
    and Y(-u) = (-1)^l Y(u); scripted."""
    harmonics = torch.jit.script(SphericalHarmonics(6, condon_shortley=False))
    generator = torch.Generator().manual_seed(2)
    points = torch.nn.functional.normalize(
        torch.randn(30, 3, generator=generator, dtype=torch.float64), dim=-1
    )
    rotation = torch.from_numpy(Rotation.random(random_state=8).as_matrix())
    before, after = harmonics(points), harmonics(points @ rotation.T)
    inverted = harmonics(-points)
    for lam in range(7):
        block = slice(lam * lam, (lam + 1) ** 2)
        d = eq.wigner_d(lam, rotation[None])[0]
        assert torch.allclose(after[:, block], before[:, block] @ d.T, atol=1e-13), lam
        assert torch.allclose(inverted[:, block], (-1) ** lam * before[:, block], atol=1e-15)
