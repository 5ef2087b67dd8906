"""``grid(name, ...)``: build the quadrature grids equiscope knows."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..groups.finite import FINITE_GROUP_ORDERS, finite_group
from ..groups.group import Group
from .grid import Grid

__all__ = ["GRID_NAMES", "grid"]

GRID_NAMES = ("lebedev", *FINITE_GROUP_ORDERS, "random", "so2", "o2")

_MAX_LEBEDEV_DEGREE = 131


def _with_inversion(rotations: torch.Tensor, weights: torch.Tensor):
    return torch.cat([rotations, -rotations]), torch.cat([weights, weights]) / 2.0


def _spherical(name, rotations, weights, inversion, check_degree, **parameters) -> Grid:
    group = Group("O(3)" if inversion else "SO(3)")
    if inversion:
        rotations, weights = _with_inversion(rotations, weights)
    parameters["inversion"] = inversion
    return Grid(
        name,
        group,
        rotations,
        weights,
        check_degree=check_degree,
        parameters=parameters,
    )


# the orders scipy.integrate.lebedev_rule provides (exact for spherical harmonics up
# to that degree)
_LEBEDEV_ORDERS = (
    *range(3, 32, 2),
    35,
    *range(41, 132, 6),
)


def _zyz(alpha: np.ndarray, beta: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """Active rotations ``Rz(alpha) Ry(beta) Rz(gamma)``, ``[n, 3, 3]``."""

    def rz(angle):
        c, s, zero, one = np.cos(angle), np.sin(angle), 0 * angle, 0 * angle + 1
        return np.stack(
            [
                np.stack([c, -s, zero], -1),
                np.stack([s, c, zero], -1),
                np.stack([zero, zero, one], -1),
            ],
            -2,
        )

    c, s, zero, one = np.cos(beta), np.sin(beta), 0 * beta, 0 * beta + 1
    ry = np.stack(
        [np.stack([c, zero, s], -1), np.stack([zero, one, zero], -1), np.stack([-s, zero, c], -1)],
        -2,
    )
    return rz(alpha) @ ry @ rz(gamma)


def _lebedev_product(order: int, n_inplane: int) -> tuple[np.ndarray, np.ndarray]:
    """Lebedev nodes ``(alpha, beta)`` x ``n_inplane`` equispaced ``gamma``,
    ``R = Rz(alpha) Ry(beta) Rz(gamma)`` (alpha-major), weights
    ``w_Lebedev / (4 pi n_inplane)`` summing to 1: the grid of metatomic's
    ``SymmetrizedModel``, so that both integrate on the same points."""
    from scipy.integrate import lebedev_rule

    nodes, weights = lebedev_rule(order)  # weights sum to 4 pi
    x, y, z = nodes
    alpha = np.arctan2(y, x)
    beta = np.arccos(np.clip(z, -1.0, 1.0))
    gamma = np.linspace(0.0, 2.0 * np.pi, n_inplane, endpoint=False)
    rotations = _zyz(
        np.repeat(alpha, n_inplane), np.repeat(beta, n_inplane), np.tile(gamma, alpha.size)
    )
    return rotations, np.repeat(weights / (4.0 * np.pi * n_inplane), n_inplane)


def _lebedev(degree: int, inversion: bool, n_inplane: int | None) -> Grid:
    if not 1 <= degree <= _MAX_LEBEDEV_DEGREE:
        raise ValueError(f"lebedev degree must be in 1..{_MAX_LEBEDEV_DEGREE}, got {degree}")
    # the smallest order >= degree; degree + 1 in-plane angles average every
    # D^lambda with lambda <= degree exactly
    order = min(o for o in _LEBEDEV_ORDERS if o >= degree)
    n_inplane = degree + 1 if n_inplane is None else _positive("n_inplane", n_inplane)
    rotations, weights = _lebedev_product(order, n_inplane)
    return _spherical(
        "lebedev",
        torch.from_numpy(rotations),
        torch.from_numpy(weights),
        inversion,
        degree + 2,
        degree=degree,
        lebedev_order=order,
        n_inplane=n_inplane,
    )


def _random(n: int, seed: int, inversion: bool) -> Grid:
    from scipy.spatial.transform import Rotation

    rotations = torch.from_numpy(Rotation.random(n, random_state=seed).as_matrix())
    weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
    return _spherical("random", rotations, weights, inversion, 2, n=n, seed=seed)


def _axial(n: int, reflections: bool) -> Grid:
    angles = torch.arange(n, dtype=torch.float64) * (2.0 * math.pi / n)
    c, s, zero, one = torch.cos(angles), torch.sin(angles), 0 * angles, 0 * angles + 1
    rotations = torch.stack(
        [
            torch.stack([c, -s, zero], -1),
            torch.stack([s, c, zero], -1),
            torch.stack([zero, zero, one], -1),
        ],
        -2,
    )
    weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
    if reflections:
        flip = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
        rotations = torch.cat([rotations, rotations @ flip])
        weights = torch.cat([weights, weights]) / 2.0
    group = Group("O(2)" if reflections else "SO(2)")
    name = "o2" if reflections else "so2"
    return Grid(name, group, rotations, weights, check_degree=n + 1, parameters={"n": n})


def _positive(option: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"grid option {option} must be a positive integer, got {value!r}")
    return value


def grid(
    name: str,
    *,
    degree: int | None = None,
    n: int | None = None,
    seed: int = 0,
    inversion: bool = False,
    n_inplane: int | None = None,
) -> Grid:
    """Build a quadrature grid.

    - ``"lebedev"`` (``degree=d``): Lebedev rule of order ``>= d`` on the sphere x
      ``d + 1`` equispaced in-plane angles; averages every ``D^lambda`` with
      ``lambda <= d`` exactly, so ``exact_degree = d // 2``.
    - ``"tetrahedral"``, ``"octahedral"``, ``"icosahedral"``: the rotation group itself
      (12, 24, 60 elements), equal weights.
    - ``"random"`` (``n=``, ``seed=``): ``n`` Haar-random rotations (Monte Carlo).
    - ``"so2"`` / ``"o2"`` (``n=``): ``n`` equispaced rotations about z (``"o2"`` adds
      the ``n`` reflections ``Rz(phi) diag(1, -1, 1)``).

    ``inversion=True`` pairs every rotation ``R`` with ``-R`` (O(3) instead of SO(3)).
    ``n_inplane`` (Lebedev only) overrides the ``d + 1`` in-plane angles: more damp the
    sectors above ``d`` (see :meth:`Grid.leakage`) without changing the exactness;
    metatomic-ase's ``SymmetrizedCalculator`` uses ``2 d + 1``.
    """
    if n_inplane is not None and name != "lebedev":
        raise ValueError(f"n_inplane applies to grid 'lebedev' only, not '{name}'")
    if name == "lebedev":
        if degree is None:
            raise ValueError("grid 'lebedev' needs degree=")
        return _lebedev(_positive("degree", degree), inversion, n_inplane)
    if name in FINITE_GROUP_ORDERS:
        rotations = finite_group(name)
        weights = torch.full((rotations.shape[0],), 1.0 / rotations.shape[0], dtype=torch.float64)
        return _spherical(name, rotations, weights, inversion, 12)
    if name == "random":
        if n is None:
            raise ValueError("grid 'random' needs n=")
        return _random(_positive("n", n), int(seed), inversion)
    if name in ("so2", "o2"):
        if n is None:
            raise ValueError(f"grid '{name}' needs n=")
        if inversion:
            raise ValueError(
                f"grid '{name}' acts about the z axis and has no inversion; "
                "use 'o2' for the reflections"
            )
        return _axial(_positive("n", n), reflections=name == "o2")
    raise ValueError(f"unknown grid '{name}'; expected one of {', '.join(GRID_NAMES)}")
