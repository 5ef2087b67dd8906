"""Grid convergence: networks are not band-limited, so every metric on a finite
grid is checked against the same metric on a finer one."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Sequence

import torch

from ..grids.factory import grid as make_grid
from ..grids.grid import Grid

__all__ = ["ConvergenceCheck", "GridConvergenceWarning", "check_convergence", "refine"]


class GridConvergenceWarning(UserWarning):
    """A metric changed by more than the tolerance on a finer grid."""


@dataclasses.dataclass
class ConvergenceCheck:
    grids: list[dict]
    values: list[float]
    relative_change: float
    rtol: float

    @property
    def converged(self) -> bool:
        return self.relative_change <= self.rtol

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "converged": self.converged}


def refine(grid: Grid) -> Grid:
    """A finer grid of the same group: Lebedev degree + 2 (one more lambda resolved
    in products), the Lebedev grid one step beyond a finite group, twice the points
    for random and axial grids."""
    inversion = grid.group.has_improper
    if grid.name == "lebedev":
        return make_grid("lebedev", degree=grid.parameters["degree"] + 2, inversion=inversion)
    if grid.name == "random":
        n, seed = grid.parameters["n"], grid.parameters["seed"]
        return make_grid("random", n=2 * n, seed=seed + 1, inversion=inversion)
    if grid.name in ("so2", "o2"):
        return make_grid(grid.name, n=2 * grid.parameters["n"])
    degree = 2 * grid.exact_degree + 2
    return make_grid("lebedev", degree=degree, inversion=inversion)


def _as_float(value) -> float:
    value = torch.as_tensor(value, dtype=torch.float64)
    return float(value.sum())


def check_convergence(
    evaluate: Callable[[Grid], float],
    grids: Sequence[Grid],
    *,
    rtol: float = 0.01,
) -> ConvergenceCheck:
    """Evaluate a metric on successively finer ``grids``; the relative change
    between the last two, ``|v_fine - v_coarse| / |v_fine|``, must stay below
    ``rtol`` (1 % by default), else :class:`GridConvergenceWarning` is raised as a
    warning."""
    if len(grids) < 2:
        raise ValueError("a convergence check needs at least two grids")
    values = [_as_float(evaluate(g)) for g in grids]
    coarse, fine = values[-2], values[-1]
    scale = max(abs(fine), abs(coarse))
    change = abs(fine - coarse) / scale if scale > 0 else 0.0
    result = ConvergenceCheck([g.to_dict() for g in grids], values, change, rtol)
    if not result.converged:
        warnings.warn(
            f"metric changed by {100 * change:.2f}% from grid '{grids[-2].name}' "
            f"({grids[-2].size} elements) to '{grids[-1].name}' ({grids[-1].size}); "
            f"above the {100 * rtol:.1f}% tolerance: use a finer grid",
            GridConvergenceWarning,
            stacklevel=2,
        )
    return result
