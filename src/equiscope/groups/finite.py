"""The finite rotation groups T (12), O (24) and I (60) as 3x3 matrices.

Each group is the closure of two or three generators under matrix multiplication;
the closure is checked (size and orthogonality) so a wrong generator cannot slip
through.
"""

from __future__ import annotations

import functools
import math

import torch

__all__ = ["FINITE_GROUP_ORDERS", "finite_group", "rotation_about"]

FINITE_GROUP_ORDERS = {"tetrahedral": 12, "octahedral": 24, "icosahedral": 60}


def rotation_about(axis, angle: float) -> torch.Tensor:
    """Rotation by ``angle`` about ``axis`` (Rodrigues), float64 ``[3, 3]``."""
    axis = torch.as_tensor(axis, dtype=torch.float64)
    axis = axis / torch.linalg.norm(axis)
    k = torch.tensor(
        [[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]],
        dtype=torch.float64,
    )
    eye = torch.eye(3, dtype=torch.float64)
    return eye + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def _generators(name: str) -> list[torch.Tensor]:
    three_fold = rotation_about([1.0, 1.0, 1.0], 2.0 * math.pi / 3.0)
    two_fold_z = rotation_about([0.0, 0.0, 1.0], math.pi)
    if name == "tetrahedral":
        return [three_fold, two_fold_z]
    if name == "octahedral":
        return [three_fold, rotation_about([0.0, 0.0, 1.0], math.pi / 2.0)]
    if name == "icosahedral":
        # icosahedron with vertices at cyclic permutations of (0, +-1, +-phi)
        phi = (1.0 + math.sqrt(5.0)) / 2.0
        five_fold = rotation_about([0.0, 1.0, phi], 2.0 * math.pi / 5.0)
        return [three_fold, two_fold_z, five_fold]
    raise ValueError(
        f"unknown finite group '{name}'; expected one of {sorted(FINITE_GROUP_ORDERS)}"
    )


def _key(matrix: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(v) for v in torch.round(matrix.flatten() * 1e8).tolist())


@functools.cache
def _closure(name: str) -> torch.Tensor:
    generators = _generators(name)
    elements = {_key(torch.eye(3, dtype=torch.float64)): torch.eye(3, dtype=torch.float64)}
    frontier = list(elements.values())
    while frontier:
        new = []
        for a in frontier:
            for g in generators:
                product = g @ a
                key = _key(product)
                if key not in elements:
                    elements[key] = product
                    new.append(product)
        frontier = new
        if len(elements) > 1000:
            break
    result = torch.stack(list(elements.values()))
    expected = FINITE_GROUP_ORDERS[name]
    if result.shape[0] != expected:
        raise RuntimeError(f"closure of {name} has {result.shape[0]} != {expected}")
    return result


def finite_group(name: str) -> torch.Tensor:
    """All proper rotations of the named group, float64 ``[order, 3, 3]``.

    ``name`` is one of ``tetrahedral`` (T, 12), ``octahedral`` (O, 24),
    ``icosahedral`` (I, 60).
    """
    return _closure(name).clone()
