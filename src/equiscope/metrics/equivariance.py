"""Output equivariance: the symmetrised projection Pi and the error A.

For an output declared to transform as ``rho`` (an irrep ``(lambda, sigma)``, or a
Cartesian vector / rank-2 tensor), the back-transformed response on the grid is

    z(g) = rho(g)^T f(g x)           (rho orthogonal, so rho(g)^-1 = rho(g)^T)

and

    Pi(f)(x) = sum_i w_i z(g_i)                 (projection on equivariant functions)
    A^2(x)   = sum_i w_i |z(g_i) - Pi(f)(x)|^2  (variance over the orbit; 0 iff
                                                  f is equivariant at x)

Given an exactly equivariant reference ``y`` the errors split exactly (the cross
term vanishes because the weights sum to one):

    sum_i w_i |z(g_i) - y|^2 = |Pi(f) - y|^2 + A^2
    (oriented)                 (symmetrised)   (equivariance)
"""

from __future__ import annotations

import math

import torch

from ..grids.grid import Grid
from ._checks import as_responses, clamp_roundoff, input_epsilon

__all__ = [
    "back_transform",
    "equivariance_variance",
    "error_decomposition",
    "noise_floor",
    "pooled_rmse",
    "representation",
    "symmetrize",
]

_CARTESIAN = {"scalar": 0, "vector": 1, "rank2": 2}


def representation(grid: Grid, irrep) -> tuple[torch.Tensor, int]:
    """``rho(g_i)`` ``[n, d, d]`` and the number of trailing dims it acts on."""
    if isinstance(irrep, str):
        if irrep not in _CARTESIAN:
            raise ValueError(
                f"unknown irrep '{irrep}'; expected (lambda, sigma) or one of "
                + ", ".join(_CARTESIAN)
            )
        rank = _CARTESIAN[irrep]
        if rank == 0:
            return torch.ones(grid.size, 1, 1, dtype=torch.float64), 0
        if rank == 1:
            return grid.rotations, 1
        r = grid.rotations
        return torch.einsum("nab,ncd->nacbd", r, r).reshape(grid.size, 9, 9), 2
    group = grid.group
    try:
        degree, sigma = (int(v) for v in irrep)
    except (TypeError, ValueError):
        raise ValueError(f"irrep {irrep!r} is not (lambda, sigma) or a name") from None
    if not group.has_improper and sigma in (-1, 1) and group.spherical:
        sigma = 0  # parity plays no role on proper rotations
    if not group.spherical and degree > 0:
        sigma = 0
    return grid.representation((degree, sigma)), 1


def back_transform(responses, grid: Grid, irrep) -> torch.Tensor:
    """``z_i = rho(g_i)^T u_i`` for responses ``[n, ..., d]`` (``[n, ..., 3, 3]``
    for ``"rank2"``, ``[n, ...]`` for ``"scalar"``); float64, same shape."""
    rho, n_dims = representation(grid, irrep)
    u = as_responses(responses, grid, min_dims=1 + n_dims)
    if n_dims == 0:
        return u
    dim = rho.shape[-1]
    shape = u.shape
    if math.prod(shape[len(shape) - n_dims :]) != dim:
        raise ValueError(
            f"irrep {irrep!r} needs trailing dimension(s) of total size {dim}, "
            f"got responses of shape {tuple(shape)}"
        )
    flat = u.reshape(shape[0], -1, dim)
    return torch.einsum("nba,nsb->nsa", rho, flat).reshape(shape)


def _component_dims(irrep) -> int:
    return 0 if irrep == "scalar" else (2 if irrep == "rank2" else 1)


def symmetrize(responses, grid: Grid, irrep) -> torch.Tensor:
    """The symmetrised output ``Pi(f)`` in the input frame, ``[..., d]``."""
    z = back_transform(responses, grid, irrep)
    return torch.tensordot(grid.weights, z, dims=1)


def _squared_norm(x: torch.Tensor, n_components: int) -> torch.Tensor:
    return x.reshape(*x.shape[: x.ndim - n_components], -1).square().sum(-1)


def _weighted_square(z, centre, grid: Grid, n_components: int, eps: float, what: str):
    """``sum_i w_i |z_i - centre|^2`` with round-off negatives clamped."""
    deviation = _squared_norm(z - centre, n_components)
    value = torch.tensordot(grid.weights, deviation, dims=1)
    scale = torch.tensordot(grid.weights.abs(), deviation, dims=1)
    noise = (4 * eps) ** 2 * torch.tensordot(
        grid.weights.abs(), _squared_norm(z, n_components), dims=1
    )
    return clamp_roundoff(value, scale, grid, what, noise)


def equivariance_variance(responses, grid: Grid, irrep) -> torch.Tensor:
    """``A^2`` per sample, summed over components: ``[...]`` for responses
    ``[n, ..., d]`` given in the direct frame, ``u_i = f(g_i x)``.

    Accumulated in float64 around the mean, so it is non-negative for positive
    weights; round-off negatives from negative-weight rules are clamped and
    materially negative values raise.
    """
    z = back_transform(responses, grid, irrep)
    mean = torch.tensordot(grid.weights, z, dims=1)
    return _weighted_square(
        z,
        mean,
        grid,
        _component_dims(irrep),
        input_epsilon(responses),
        "the equivariance variance A^2",
    )


def error_decomposition(responses, reference, grid: Grid, irrep) -> dict:
    """Squared errors per sample against an exactly equivariant ``reference``
    ``[..., d]`` (in the input frame): ``oriented``, ``symmetrized`` and
    ``equivariance`` with ``oriented = symmetrized + equivariance``."""
    z = back_transform(responses, grid, irrep)
    reference = torch.as_tensor(reference).detach().to(torch.float64)
    if reference.shape != z.shape[1:]:
        raise ValueError(
            f"reference has shape {tuple(reference.shape)}, expected "
            f"{tuple(z.shape[1:])} (the responses without the grid dimension)"
        )
    if not bool(torch.isfinite(reference).all()):
        raise ValueError("reference contains NaN or infinite values")
    n_components = _component_dims(irrep)
    eps = input_epsilon(responses)
    mean = torch.tensordot(grid.weights, z, dims=1)
    return {
        "oriented": _weighted_square(z, reference, grid, n_components, eps, "the oriented error"),
        "symmetrized": _squared_norm(mean - reference, n_components),
        "equivariance": _weighted_square(
            z, mean, grid, n_components, eps, "the equivariance error"
        ),
    }


def pooled_rmse(squared, n_components: int = 1, n_atoms=None) -> float:
    """Dataset RMSE from per-sample squared errors summed over components.

    ``sqrt(sum_s e_s^2 / (N_samples * n_components))``; with ``n_atoms`` (per
    structure) each ``e_s`` is first divided by its structure's atom count, as
    metatrain reports per-structure targets per atom.
    """
    squared = torch.as_tensor(squared, dtype=torch.float64).reshape(-1)
    if squared.numel() == 0:
        raise ValueError("no samples to pool")
    if n_atoms is not None:
        n_atoms = torch.as_tensor(n_atoms, dtype=torch.float64).reshape(-1)
        if n_atoms.shape != squared.shape or bool((n_atoms <= 0).any()):
            raise ValueError(f"n_atoms must hold one positive count per sample ({squared.numel()})")
        squared = squared / n_atoms.square()
    return math.sqrt(float(squared.sum()) / (squared.numel() * n_components))


def noise_floor(values, dtype: torch.dtype = torch.float32) -> float:
    """A cheap **lower bound** on the round-off of a model computing in ``dtype``:
    ``eps(dtype) * RMS(values)``.

    The real round-off of forces and stresses of float32 models (sums over neighbours,
    derivatives) is often 10-1000 times larger, so a symmetric model can look broken
    against this bound. Audits use the *measured* floor instead,
    :func:`equiscope.audit.measured_roundoff` (the spread of the outputs when the
    inputs move by their own rounding error), and report the larger of the two.
    """
    values = torch.as_tensor(values).detach().to(torch.float64)
    if values.numel() == 0:
        raise ValueError("no values to estimate a noise floor from")
    return torch.finfo(dtype).eps * float(values.square().mean().sqrt())
