"""Transformed copies of ASE ``Atoms`` and the back-transformation of their results.

For an element ``g`` of O(3) with matrix ``R`` the copy ``g x`` has positions
``r R^T``. Its cell rows ``c R^T`` span the transformed lattice; for an improper
element (``det R = -1``) they form a left-handed cell, which models using the signed
volume would see as a sign flip. ``-c R^T`` spans the same lattice and is
right-handed, so every copy gets that instead: the structure is the same, only its
description is. Results come back to the input frame as ``F R`` (forces, rows) and
``R^T S R`` (stress).

Imports numpy only: ``atoms`` is used through its own methods (``copy``,
``positions``, ``cell``, ``set_cell``), so the core needs no ASE import.
"""

from __future__ import annotations

import numpy as np

__all__ = ["back_transform_stress", "stress_matrix", "transformed_atoms"]


def transformed_atoms(atoms, matrix):
    """A copy of ``atoms`` mapped by the 3x3 orthogonal ``matrix`` (positions and cell),
    with a right-handed cell spanning the same lattice when ``det(matrix) < 0``."""
    matrix = np.asarray(matrix, dtype=np.float64)
    copy = atoms.copy()
    copy.calc = None
    copy.positions = atoms.positions @ matrix.T
    if atoms.cell.rank:
        cell = atoms.cell.array @ matrix.T
        if np.linalg.det(matrix) < 0:
            cell = -cell
        copy.set_cell(cell, scale_atoms=False)
    return copy


def stress_matrix(stress) -> np.ndarray:
    """A stress as a 3x3 matrix (from ASE's Voigt order xx, yy, zz, yz, xz, xy, or 3x3)."""
    stress = np.asarray(stress, dtype=np.float64)
    if stress.shape == (3, 3):
        return stress
    xx, yy, zz, yz, xz, xy = stress
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def back_transform_stress(stress, matrix) -> np.ndarray:
    """``R^T S R``: the stress of the copy ``g x`` in the frame of ``x`` (3x3)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    return matrix.T @ stress_matrix(stress) @ matrix
