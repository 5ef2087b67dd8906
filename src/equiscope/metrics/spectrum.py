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

import math
import warnings

import torch

from ..grids.grid import Grid
from ..groups.group import Sector, sector_label
from ._checks import as_responses, finite_float64, roundoff_tolerance

__all__ = [
    "Spectrum",
    "SpectrumAccumulator",
    "SpectrumIncompleteWarning",
    "sector_norms",
    "spectrum",
]

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
    if isinstance(max_degree, bool) or not isinstance(max_degree, int) or max_degree < 0:
        raise ValueError(f"max_lambda must be a non-negative integer, got {max_degree!r}")
    if max_degree > grid.exact_degree:
        raise ValueError(
            f"max_lambda={max_degree} is beyond what grid '{grid.name}' resolves "
            f"(exact_degree={grid.exact_degree}); use a finer grid"
        )
    return max_degree


class SpectrumAccumulator:
    """Streams responses over batches of grid elements.

    The coefficients ``C = sum_i w_i rho(g_i) u_i`` are linear in the responses, so a
    large orbit (e.g. PET edge features) never has to be held in memory at once:
    ``add(responses, start)`` with rows ``start .. start + b`` of the grid, in any
    order; every grid element must be added exactly once before :meth:`norms` or
    :meth:`spectrum`.
    """

    def __init__(self, grid: Grid, max_lambda: int, *, any_degree: bool = False):
        if not isinstance(grid, Grid):
            raise ValueError(f"expected an equiscope Grid, got {type(grid).__name__}")
        self.grid = grid
        if any_degree:  # a randomly oriented grid: unbiased coefficients at every degree
            if isinstance(max_lambda, bool) or not isinstance(max_lambda, int) or max_lambda < 0:
                raise ValueError(f"max_lambda must be a non-negative integer, got {max_lambda!r}")
            self.max_lambda = max_lambda
        else:
            self.max_lambda = _check_degree(max_lambda, grid)
        self.sectors = grid.group.sectors(self.max_lambda)
        blocks = [
            grid.weights[:, None] * grid.representation(s).reshape(grid.size, -1)
            for s in self.sectors
        ]
        self._sizes = [b.shape[1] for b in blocks]
        self._weighted = torch.cat(blocks, dim=1)  # [n, sum d^2]
        self._factors = torch.tensor(
            [grid.group.spectral_factor(s) for s in self.sectors], dtype=torch.float64
        )
        self._coefficients: torch.Tensor | None = None
        self._total: torch.Tensor | None = None
        self._scale: torch.Tensor | None = None
        self._trailing: tuple[int, ...] | None = None
        self._seen = torch.zeros(grid.size, dtype=torch.int64)

    def add(self, responses, start: int = 0) -> None:
        """Add ``responses`` ``[b, ...]`` for grid elements ``start .. start + b``."""
        u = finite_float64(responses)
        if u.ndim < 1 or u.shape[0] == 0 or start < 0 or start + u.shape[0] > self.grid.size:
            raise ValueError(
                f"responses of shape {tuple(u.shape)} at row {start} do not fit grid "
                f"'{self.grid.name}' with {self.grid.size} elements"
            )
        if self._trailing is None:
            self._trailing = tuple(u.shape[1:])
            width = math.prod(self._trailing)
            self._coefficients = torch.zeros(self._weighted.shape[1], width, dtype=torch.float64)
            self._total = torch.zeros(width, dtype=torch.float64)
            self._scale = torch.zeros(width, dtype=torch.float64)
        elif tuple(u.shape[1:]) != self._trailing:
            raise ValueError(
                f"responses have trailing shape {tuple(u.shape[1:])}, earlier batches "
                f"had {self._trailing}"
            )
        rows = slice(start, start + u.shape[0])
        self._seen[rows] += 1
        u = u.reshape(u.shape[0], -1)
        weighted = self._weighted[rows]
        chunk = max(1, _CHUNK_ELEMENTS // max(weighted.shape[1], weighted.shape[0]))
        for first in range(0, u.shape[1], chunk):
            columns = slice(first, first + chunk)
            self._coefficients[:, columns] += weighted.T @ u[:, columns]
        squared = u.square()
        self._total += self.grid.weights[rows] @ squared
        self._scale += self.grid.weights[rows].abs() @ squared

    def _check_complete(self) -> None:
        if self._trailing is None or not bool((self._seen == 1).all()):
            missing = int((self._seen == 0).sum())
            repeated = int((self._seen > 1).sum())
            raise ValueError(
                f"the spectrum needs every one of the {self.grid.size} grid elements "
                f"once: {missing} missing, {repeated} added more than once"
            )

    def coefficients(self) -> list[torch.Tensor]:
        """Per sector, ``sqrt(c_beta) sum_i w_i rho_beta(g_i) u_i`` ``[d^2, width]``
        (``B_beta`` is its squared norm). Linear in the responses: on a randomly
        oriented grid it is an unbiased estimate of the exact one, whatever the
        degree (see :mod:`equiscope.metrics.replicates`)."""
        self._check_complete()
        parts = self._coefficients.split(self._sizes, dim=0)
        return [f.sqrt() * c for f, c in zip(self._factors, parts, strict=True)]

    @property
    def total(self) -> float:
        """``sum_i w_i |u_i|^2`` summed over trailing entries."""
        self._check_complete()
        return float(self._total.sum())

    def norms(self) -> torch.Tensor:
        """Per-sector squared norms for every trailing entry,
        float64 ``[len(sectors), *trailing]``."""
        self._check_complete()
        parts = self._coefficients.split(self._sizes, dim=0)
        squared = torch.stack([c.square().sum(0) for c in parts])
        return (self._factors[:, None] * squared).reshape(len(self.sectors), *self._trailing)

    def spectrum(self, *, completeness_rtol: float = 1e-6) -> Spectrum:
        """The spectrum summed over trailing entries; warns when incomplete."""
        values = self.norms().reshape(len(self.sectors), -1).sum(1)
        total = float(self._total.sum())
        result = Spectrum(
            {s: float(v) for s, v in zip(self.sectors, values, strict=True)},
            total,
            self.max_lambda,
        )
        scale = self._scale.sum()
        slack = max(
            completeness_rtol * abs(total),
            float(roundoff_tolerance(self.grid, scale)),
        )
        if abs(result.residual) > slack:
            held = float(values.sum()) / total if total else 0.0
            warnings.warn(
                f"spectrum up to lambda={self.max_lambda} on grid '{self.grid.name}' "
                f"holds {held:.6f} of the squared norm: content above max_lambda or "
                "not resolved by the grid",
                SpectrumIncompleteWarning,
                stacklevel=3,
            )
        return result


def sector_norms(responses, grid: Grid, max_lambda: int) -> tuple[list, torch.Tensor]:
    """Per-sector squared norms for every trailing entry of ``responses``
    ``[grid.size, ...]``.

    :return: ``(sectors, B)`` with ``B`` float64 ``[len(sectors), *trailing]``
    """
    accumulator = SpectrumAccumulator(grid, max_lambda)
    accumulator.add(as_responses(responses, grid))
    return accumulator.sectors, accumulator.norms()


def spectrum(
    responses, grid: Grid, max_lambda: int, *, completeness_rtol: float = 1e-6
) -> Spectrum:
    """Character spectrum of ``responses`` ``[grid.size, ...]``, summed over the
    trailing dimensions.

    Warns (:class:`SpectrumIncompleteWarning`) when the sectors up to ``max_lambda``
    miss more than ``completeness_rtol`` of the total: the response has content
    above ``max_lambda``, or the grid does not resolve it.
    """
    accumulator = SpectrumAccumulator(grid, max_lambda)
    accumulator.add(as_responses(responses, grid))
    return accumulator.spectrum(completeness_rtol=completeness_rtol)
