"""Pick the cheapest grid that removes every sector where a model breaks symmetry.

A quick probe evaluates the model's energy on a fine Lebedev orbit of one or more
structures, measures the fraction of its squared norm in each lambda >= 1, and keeps
the lambdas above ``tolerance``. Among the finite groups (tetrahedral 12, octahedral
24, icosahedral 60) and Lebedev grids, the smallest whose *computed* exactness averages
out all of them wins; inversion is added when the model has parity-odd content.
"""

from __future__ import annotations

import equiscope as eq
from equiscope.grids import cheapest_grid

from .models import LoadedModel
from .orbit import evaluate_orbit

__all__ = ["breaking_lambdas", "cheapest_grid"]


def breaking_lambdas(
    model: LoadedModel, systems: list, *, max_lambda: int = 6, tolerance: float = 1e-6
) -> tuple[set[int], bool]:
    """Degrees ``lambda >= 1`` whose energy content exceeds ``tolerance`` (fraction of
    the squared norm), and whether any parity-odd sector ``(0, -1)`` does."""
    grid = eq.grid("lebedev", degree=2 * max_lambda, inversion=True)
    norms: dict = {}
    for system in systems:
        result = evaluate_orbit(model, system, grid, outputs=["energy"])
        spectrum = eq.spectrum(
            result.responses["energy"][:, 0, 0], grid, max_lambda, completeness_rtol=1.0
        )
        for sector, value in spectrum.items():
            norms[sector] = norms.get(sector, 0.0) + value
    total = sum(norms.values())
    if total == 0:
        return set(), False
    degrees = {lam for (lam, _), v in norms.items() if lam >= 1 and v / total > tolerance}
    odd = norms.get((0, -1), 0.0) / total > tolerance
    return degrees, odd
