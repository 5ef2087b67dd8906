"""Quadrature grids on groups, each with its computed exactness."""

from .cheapest import cheapest_grid
from .factory import GRID_NAMES, grid
from .grid import Grid

__all__ = ["GRID_NAMES", "Grid", "cheapest_grid", "grid"]
