"""The cheapest grid that averages out a given set of degrees exactly."""

from __future__ import annotations

from .factory import grid
from .grid import Grid

__all__ = ["cheapest_grid"]


def cheapest_grid(degrees: set[int], *, inversion: bool = True) -> Grid | None:
    """The smallest of the finite groups (tetrahedral 12, octahedral 24, icosahedral 60)
    and Lebedev grids whose *computed* exactness averages out every degree in
    ``degrees`` (``None`` when there is nothing to remove)."""
    if not degrees:
        return None
    candidates = [
        grid(name, inversion=inversion) for name in ("tetrahedral", "octahedral", "icosahedral")
    ]
    top = max(degrees, default=1)
    candidates += [grid("lebedev", degree=d, inversion=inversion) for d in range(top, top + 3)]
    fitting = [g for g in candidates if set(degrees) <= set(g.averages_out)]
    if not fitting:
        raise ValueError(f"no grid averages out lambda = {sorted(degrees)}")
    return min(fitting, key=lambda g: g.size)
