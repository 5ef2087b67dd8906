"""Averages and rotational spreads of ASE results evaluated on transformed copies.

For copies ``g_i x`` with matrices ``R_i`` and weights ``w_i`` (summing to 1), each
copy's results are brought back to the frame of ``x`` (energies unchanged, forces
``F R``, stress ``R^T S R``) and averaged. The spread is the weighted standard
deviation of the back-transformed values, elementwise,

    std = sqrt( sum_i w_i (z_i - mean)^2 ),

stored as ``<name>_rot_std`` with the names and shapes of metatomic-ase's
``SymmetrizedCalculator``: ``energy_rot_std`` (float), ``energies_rot_std``
``(N,)``, ``forces_rot_std`` ``(N, 3)``, ``stress_rot_std`` ``(3, 3)``,
``stresses_rot_std`` ``(N, 3, 3)``. Numpy only.
"""

from __future__ import annotations

import numpy as np

from ._transform import stress_matrix

__all__ = ["ROTATED_PROPERTIES", "back_transformed", "orbit_average", "voigt"]

# what each property is, for the back-transformation
ROTATED_PROPERTIES = {
    "energy": "scalar",
    "free_energy": "scalar",
    "energies": "scalar",
    "forces": "vector",
    "stress": "rank2",
    "stresses": "rank2",
}


def voigt(matrix: np.ndarray) -> np.ndarray:
    """3x3 stress(es) ``[..., 3, 3]`` in ASE's Voigt order (xx, yy, zz, yz, xz, xy)."""
    m = np.asarray(matrix)
    return np.stack(
        [m[..., 0, 0], m[..., 1, 1], m[..., 2, 2], m[..., 1, 2], m[..., 0, 2], m[..., 0, 1]],
        axis=-1,
    )


def _as_matrices(name: str, value) -> np.ndarray:
    value = np.asarray(value, dtype=np.float64)
    if name == "stress":
        return stress_matrix(value)
    if name == "stresses":
        if value.shape[-2:] == (3, 3):
            return value
        return np.stack([stress_matrix(row) for row in value])
    return value


def back_transformed(name: str, values: list, rotations: np.ndarray) -> np.ndarray:
    """The copies' ``name`` in the input frame: ``[n_copies, ...]`` (3x3 for stress)."""
    z = np.stack([_as_matrices(name, v) for v in values])
    kind = ROTATED_PROPERTIES[name]
    r = np.asarray(rotations, dtype=np.float64)
    if kind == "vector":  # F R, rows
        return np.einsum("kna,kab->knb", z, r)
    if kind == "rank2" and name == "stress":  # R^T S R
        return np.einsum("kab,kac,kcd->kbd", r, z, r)
    if kind == "rank2":
        return np.einsum("kab,knac,kcd->knbd", r, z, r)
    return z


def orbit_average(
    per_copy: dict[str, list], rotations: np.ndarray, weights: np.ndarray, *, spread: bool
) -> dict:
    """ASE results averaged over the copies (stress in Voigt order, per-atom
    stresses ``(N, 6)``), plus ``<name>_rot_std`` when ``spread``."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    out = {}
    for name, values in per_copy.items():
        z = back_transformed(name, values, rotations)
        shaped = w.reshape((-1,) + (1,) * (z.ndim - 1))
        mean = (shaped * z).sum(0)
        if name in ("stress", "stresses"):
            out[name] = voigt(mean)
        elif mean.ndim == 0:
            out[name] = float(mean)
        else:
            out[name] = mean
        if spread:
            variance = np.clip((shaped * (z - mean) ** 2).sum(0), 0.0, None)
            std = np.sqrt(variance)
            out[f"{name}_rot_std"] = float(std) if std.ndim == 0 else std
    return out
