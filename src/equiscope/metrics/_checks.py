"""Input validation shared by the metrics: one clear ValueError per problem."""

from __future__ import annotations

import torch

from ..grids.grid import Grid


def finite_float64(values) -> torch.Tensor:
    """``values`` as a real float64 tensor; ValueError on complex, NaN or inf."""
    values = torch.as_tensor(values)
    if values.is_complex():
        raise ValueError("responses must be real")
    values = values.detach().to(torch.float64)
    if not bool(torch.isfinite(values).all()):
        bad = int((~torch.isfinite(values)).sum())
        raise ValueError(f"responses contain {bad} NaN or infinite value(s)")
    return values


def as_responses(responses, grid: Grid, *, min_dims: int = 1) -> torch.Tensor:
    """Check ``responses`` is a finite ``[grid.size, ...]`` tensor; return float64."""
    if not isinstance(grid, Grid):
        raise ValueError(f"expected an equiscope Grid, got {type(grid).__name__}")
    responses = torch.as_tensor(responses)
    if responses.ndim < min_dims:
        raise ValueError(
            f"responses must have at least {min_dims} dimension(s) "
            f"[grid points, ...], got shape {tuple(responses.shape)}"
        )
    if responses.shape[0] != grid.size:
        raise ValueError(
            f"responses have {responses.shape[0]} rows but grid '{grid.name}' has "
            f"{grid.size} elements (shape {tuple(responses.shape)})"
        )
    return finite_float64(responses)


def roundoff_tolerance(grid: Grid, scale: torch.Tensor) -> torch.Tensor:
    """Bound on accumulated round-off of a weighted sum over the grid."""
    eps = torch.finfo(torch.float64).eps
    n_eps = grid.size * eps
    return 64.0 * n_eps / (1.0 - n_eps) * scale.clamp(min=torch.finfo(torch.float64).tiny)


def input_epsilon(responses) -> float:
    """Machine epsilon of the dtype the responses were computed in."""
    dtype = torch.as_tensor(responses).dtype
    return torch.finfo(dtype if dtype.is_floating_point else torch.float64).eps


def clamp_roundoff(
    values: torch.Tensor,
    scale: torch.Tensor,
    grid: Grid,
    what: str,
    noise: torch.Tensor | float = 0.0,
):
    """Zero round-off negatives; raise on materially negative values.

    Negative-weight quadratures (Lebedev of degree 13, 25, 27) can make a
    non-negative integral come out negative when the grid does not resolve it.
    ``scale`` bounds the accumulation round-off; ``noise`` is the level below which
    the inputs themselves are round-off (``sum_i |w_i| (4 eps |z_i|)^2``).
    """
    tolerance = roundoff_tolerance(grid, scale) + noise
    if bool((values < -tolerance).any()):
        raise ValueError(
            f"{what} is materially negative on grid '{grid.name}' "
            f"(exact_degree={grid.exact_degree}): the grid does not resolve this "
            "response; use a finer grid and check convergence"
        )
    return values.clamp(min=0.0)
