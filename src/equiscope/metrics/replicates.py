"""Unbiased estimates of A^2 and of the character spectrum from randomly oriented grids.

A grid ``{g_i, w_i}`` turned by a Haar-random element ``h`` integrates every function
exactly *in expectation*: ``E_h sum_i w_i F(g_i h) = integral F dmu``. So whatever is
linear in the responses, the symmetrised output ``Pi``, the Fourier coefficients
``C_beta`` of the spectrum, the mean square ``q = integral |u|^2``, is estimated
without bias by one such replicate, at every degree, however coarse the grid. Squares
of such estimates are biased upwards by their variance; products of two independent
replicates are not. From ``K`` independent replicates ``a``:

    |Pi|^2   ~  1/(K(K-1)) sum_{a != b} Pi_a . Pi_b
    B_beta   ~  1/(K(K-1)) sum_{a != b} <C_beta,a, C_beta,b>
    A^2 = integral |z|^2 - |Pi|^2   ~  mean_a q_a - (the first line)

all unbiased. The base grid's exactness only lowers the variance: a grid that averages
out degree ``lambda`` still does so when turned, so the mean of a response whose
breaking lives in those degrees is exact in every replicate. The variance of each
estimate of ``A^2`` comes from the delete-one-replicate jackknife (``K >= 3``).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from ..grids.grid import Grid
from .equivariance import back_transform
from .spectrum import SpectrumAccumulator

__all__ = [
    "ReplicateEstimate",
    "SampleEstimate",
    "haar_elements",
    "interval",
    "oriented",
    "t_quantile",
]


def haar_elements(n: int, generator: torch.Generator, *, improper: bool) -> torch.Tensor:
    """``n`` Haar-random elements of SO(3) (O(3) when ``improper``: each inverted with
    probability 1/2) as float64 ``[n, 3, 3]`` (QR of Gaussian matrices, signs fixed)."""
    gaussian = torch.randn(n, 3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2))[:, None, :]
    q = q * torch.linalg.det(q).sign()[:, None, None]  # proper
    if improper:
        flips = torch.rand(n, generator=generator, dtype=torch.float64) < 0.5
        q = torch.where(flips[:, None, None], -q, q)
    return q


def oriented(grid: Grid, element: torch.Tensor) -> Grid:
    """The grid turned by ``element``: elements ``g_i h``, same weights."""
    return Grid(
        grid.name,
        grid.group,
        grid.rotations @ element.to(torch.float64),
        grid.weights,
        check_degree=grid.check_degree,
        parameters={**grid.parameters, "oriented": True},
    )


def _cross(vectors: torch.Tensor) -> float:
    """``1/(K(K-1)) sum_{a != b} v_a . v_b`` for ``vectors`` ``[K, ...]``."""
    k = vectors.shape[0]
    flat = vectors.reshape(k, -1)
    total = flat.sum(0)
    return float((total.square().sum() - flat.square().sum()) / (k * (k - 1)))


def _jackknife_cross(vectors: torch.Tensor) -> float:
    """Delete-one jackknife variance of :func:`_cross` over the ``K`` replicates."""
    k = vectors.shape[0]
    flat = vectors.reshape(k, -1)
    total = flat.sum(0)
    norms = flat.square().sum(1)
    square_sum = float(norms.sum())
    # without replicate a: |S - v_a|^2 - (sum |v|^2 - |v_a|^2), over (K-1)(K-2)
    without = ((total - flat).square().sum(1) - (square_sum - norms)) / ((k - 1) * (k - 2))
    return float((k - 1) / k * (without - without.mean()).square().sum())


@dataclasses.dataclass
class SampleEstimate:
    """One sample's estimates from ``k`` replicates: ``a2`` (A^2 summed over entries)
    with its jackknife variance, the sector norms ``sectors`` and the mean square
    ``total`` (both summed over entries), and with a reference the error terms
    ``errors = {oriented, symmetrized, equivariance}`` (sums of squares). ``df``: the
    degrees of freedom of the variance, ``k - 1`` for one set of replicates and the
    sum over sets for estimates :meth:`combined` from independent sets."""

    k: int
    a2: float
    a2_variance: float
    sectors: dict
    total: float
    errors: dict | None = None
    sector_variances: dict = dataclasses.field(default_factory=dict)
    df: int = -1

    def __post_init__(self):
        if self.df < 0:
            self.df = self.k - 1

    def combined(self, other: SampleEstimate) -> SampleEstimate:
        """Both estimates as one, weighted by their replicates (independent draws)."""
        k = self.k + other.k
        wa, wb = self.k / k, other.k / k

        def mix(a, b):
            return wa * a + wb * b

        errors = None
        if self.errors is not None and other.errors is not None:
            errors = {key: mix(v, other.errors[key]) for key, v in self.errors.items()}
        return SampleEstimate(
            k=k,
            a2=mix(self.a2, other.a2),
            a2_variance=wa**2 * self.a2_variance + wb**2 * other.a2_variance,
            sectors={s: mix(v, other.sectors.get(s, 0.0)) for s, v in self.sectors.items()},
            total=mix(self.total, other.total),
            errors=errors,
            sector_variances={
                s: wa**2 * v + wb**2 * other.sector_variances.get(s, 0.0)
                for s, v in self.sector_variances.items()
            },
            df=self.df + other.df,
        )


class ReplicateEstimate:
    """Collects replicates of one response (``irrep`` as in
    :func:`~equiscope.back_transform`) on randomly oriented grids, then
    :meth:`estimate` gives the unbiased :class:`SampleEstimate`."""

    def __init__(self, irrep, max_lambda: int):
        self.irrep = irrep
        self.max_lambda = max_lambda
        self._means: list[torch.Tensor] = []  # Pi_a
        self._squares: list[float] = []  # q_a
        self._coefficients: list[list[torch.Tensor]] = []
        self.sectors: list = []

    @property
    def k(self) -> int:
        return len(self._means)

    def add(self, responses, grid: Grid) -> None:
        """Add the responses ``[grid.size, ...]`` (direct frame) of one replicate."""
        z = back_transform(responses, grid, self.irrep)
        self._means.append(torch.tensordot(grid.weights, z, dims=1).reshape(-1))
        self._squares.append(float(grid.weights @ z.reshape(grid.size, -1).square().sum(1)))
        accumulator = SpectrumAccumulator(grid, self.max_lambda, any_degree=True)
        accumulator.add(torch.as_tensor(responses, dtype=torch.float64))
        self.sectors = accumulator.sectors
        self._coefficients.append(accumulator.coefficients())

    def _a2(self, means: torch.Tensor, squares: torch.Tensor) -> float:
        return float(squares.mean()) - _cross(means)

    def estimate(self, reference: torch.Tensor | None = None) -> SampleEstimate:
        """The unbiased estimates; ``reference`` (the exact values, flattened like the
        back-transformed response) adds the error decomposition."""
        k = self.k
        if k < 3:
            raise ValueError(f"the jackknife needs at least 3 replicates, got {k}")
        means = torch.stack(self._means)
        squares = torch.tensor(self._squares, dtype=torch.float64)
        a2 = self._a2(means, squares)
        keep = ~torch.eye(k, dtype=torch.bool)
        leave_one_out = torch.tensor(
            [self._a2(means[keep[a]], squares[keep[a]]) for a in range(k)], dtype=torch.float64
        )
        variance = float((k - 1) / k * (leave_one_out - leave_one_out.mean()).square().sum())
        sectors, sector_variances = {}, {}
        for index, sector in enumerate(self.sectors):
            stacked = torch.stack([c[index] for c in self._coefficients])
            sectors[sector] = _cross(stacked)
            sector_variances[sector] = _jackknife_cross(stacked)
        errors = None
        if reference is not None:
            y = reference.reshape(-1).to(torch.float64)
            cross_term = 2 * float(means.mean(0) @ y) - float(y.square().sum())
            errors = {
                "oriented": float(squares.mean()) - cross_term,
                "symmetrized": _cross(means) - cross_term,
                "equivariance": a2,
            }
        return SampleEstimate(
            k, a2, variance, sectors, float(squares.mean()), errors, sector_variances
        )


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided Student-t quantile (normal for large ``df``)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, max(df, 1)))


def interval(a2: float, variance: float, df: int, level: float = 0.95) -> tuple[float, float]:
    """Confidence interval of ``A = sqrt(A^2)`` from an estimate of ``A^2`` and its
    variance: ``A^2 -+ t sd``, clamped at 0, square-rooted."""
    half = t_quantile(df, level) * math.sqrt(max(variance, 0.0))
    return math.sqrt(max(a2 - half, 0.0)), math.sqrt(max(a2 + half, 0.0))
