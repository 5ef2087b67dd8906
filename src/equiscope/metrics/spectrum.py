"""The character spectrum B: how much of a response lives in each irrep sector.

For a response ``u(g) = f(g x)`` on the grid (no back-rotation, so it works for
hidden features with no declared representation), the projection onto the
isotypic sector ``beta`` has squared norm (Peter-Weyl)

    B_beta = c_beta | sum_i w_i rho_beta(g_i) u(g_i) |_F^2 ,

with ``c_beta`` the sector's spectral factor (``2 lambda + 1`` for O(3)). For O(3)
this equals the coset formula ``(2l+1)/4 |C_p +- (-1)^l C_i|^2``. The sectors are
orthogonal and complete: ``sum_beta B_beta = sum_i w_i |u(g_i)|^2`` for responses
band-limited to the largest degree computed, so ``B / sum(B)`` is a spectrum.
"""

from __future__ import annotations

import warnings

import torch

from ..grids.grid import Grid
from ..groups.group import Sector, sector_label
from ._checks import as_responses, roundoff_tolerance

__all__ = ["Spectrum", "SpectrumIncompleteWarning", "sector_norms", "spectrum"]

# columns processed at once: bounds the [sum d^2, columns] coefficient matrix
_CHUNK_ELEMENTS = 2**24


class SpectrumIncompleteWarning(UserWarning):
    """The sectors computed do not add up to the response's squared norm."""


class Spectrum(dict):
    """``{(degree, sigma): B}`` with the total squared norm it should add up to.

    - ``total``: ``sum_i w_i |u(g_i)|^2`` (summed over trailing dimensions);
    - ``residual``: ``total - sum(B)``, the content above ``max_degree`` (or not
      resolved by the grid);
    - :meth:`fractions` and :meth:`labelled` give the normalised spectrum.
    """

    def __init__(self, values: dict[Sector, float], total: float, max_degree: int):
        super().__init__(values)
        self.total = total
        self.max_degree = max_degree

    @property
    def residual(self) -> float:
        return self.total - sum(self.values())

    def fractions(self) -> dict[Sector, float]:
        """``B / sum(B)`` per sector (all zero for a zero response)."""
        norm = sum(self.values())
        return {k: (v / norm if norm > 0 else 0.0) for k, v in self.items()}

    def labelled(self) -> dict[str, float]:
        """Fractions keyed like report.json: ``"lambda,sigma"`` or ``"m"``."""
        return {sector_label(k): v for k, v in self.fractions().items()}

    def dominant(self, n: int = 3) -> list[tuple[Sector, float]]:
        """The ``n`` sectors with the largest fraction, largest first."""
        return sorted(self.fractions().items(), key=lambda kv: -kv[1])[:n]


def _check_degree(max_degree, grid: Grid) -> int:
    if (
        isinstance(max_degree, bool)
        or not isinstance(max_degree, int)
        or max_degree < 0
    ):
        raise ValueError(
            f"max_lambda must be a non-negative integer, got {max_degree!r}"
        )
    if max_degree > grid.exact_degree:
        raise ValueError(
            f"max_lambda={max_degree} is beyond what grid '{grid.name}' resolves "
            f"(exact_degree={grid.exact_degree}); use a finer grid"
        )
    return max_degree


def sector_norms(responses, grid: Grid, max_lambda: int) -> tuple[list, torch.Tensor]:
    """Per-sector squared norms for every trailing entry.

    :return: ``(sectors, B)`` with ``B`` float64 ``[len(sectors), *trailing]``
    """
    return _sector_norms(as_responses(responses, grid), grid, max_lambda)


def _sector_norms(u: torch.Tensor, grid: Grid, max_lambda: int):
    max_lambda = _check_degree(max_lambda, grid)
    trailing = u.shape[1:]
    u = u.reshape(grid.size, -1)
    sectors = grid.group.sectors(max_lambda)
    blocks = [
        grid.weights[:, None] * grid.representation(s).reshape(grid.size, -1)
        for s in sectors
    ]
    sizes = [b.shape[1] for b in blocks]
    weighted = torch.cat(blocks, dim=1)  # [n, sum d^2]
    factors = torch.tensor([grid.group.spectral_factor(s) for s in sectors])
    out = torch.empty(len(sectors), u.shape[1], dtype=torch.float64)
    chunk = max(1, _CHUNK_ELEMENTS // max(weighted.shape[1], grid.size))
    for start in range(0, u.shape[1], chunk):
        coefficients = weighted.T @ u[:, start : start + chunk]  # [sum d^2, chunk]
        squared = torch.stack(
            [c.square().sum(0) for c in coefficients.split(sizes, dim=0)]
        )
        out[:, start : start + chunk] = factors[:, None] * squared
    return sectors, out.reshape(len(sectors), *trailing)


def spectrum(
    responses, grid: Grid, max_lambda: int, *, completeness_rtol: float = 1e-6
) -> Spectrum:
    """Character spectrum of ``responses`` ``[grid.size, ...]``, summed over the
    trailing dimensions.

    Warns (:class:`SpectrumIncompleteWarning`) when the sectors up to ``max_lambda``
    miss more than ``completeness_rtol`` of the total: the response has content
    above ``max_lambda``, or the grid does not resolve it.
    """
    u = as_responses(responses, grid)
    sectors, norms = _sector_norms(u, grid, max_lambda)
    u = u.reshape(grid.size, -1)
    total_per_entry = torch.einsum("n,nc->c", grid.weights, u.square())
    total = float(total_per_entry.sum())
    values = norms.reshape(len(sectors), -1).sum(1)
    result = Spectrum(
        {s: float(v) for s, v in zip(sectors, values, strict=True)}, total, max_lambda
    )
    scale = torch.tensor(float(torch.einsum("n,nc->", grid.weights.abs(), u.square())))
    slack = max(completeness_rtol * abs(total), float(roundoff_tolerance(grid, scale)))
    if abs(result.residual) > slack:
        warnings.warn(
            f"spectrum up to lambda={max_lambda} on grid '{grid.name}' holds "
            f"{sum(values).item() / total if total else 0:.6f} of the squared norm: "
            "content above max_lambda or not resolved by the grid",
            SpectrumIncompleteWarning,
            stacklevel=2,
        )
    return result
