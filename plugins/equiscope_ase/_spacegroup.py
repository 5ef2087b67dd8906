"""Averaging results over a crystal's own space-group operations (found by spglib).

A space-group operation ``(W, t)`` acts on fractional coordinates as ``s -> W s + t``.
With ASE's cell ``C`` (lattice vectors as rows, ``r = C^T s``) its Cartesian
rotation is ``R = C^T W C^{-T}``, and it maps atom ``i`` onto the site of atom
``p(i)`` (same species, modulo the lattice). The operation leaves the crystal
unchanged, so an exactly equivariant model gives ``F_{p(i)} = R F_i`` and
``S = R S R^T``. Averaging over the operations ``G`` projects any results onto
that symmetry:

    F'_{p_g(i)} = 1/|G| sum_g R_g F_i        e'_{p_g(i)} = 1/|G| sum_g e_i
    S' = 1/|G| sum_g R_g S R_g^T             s'_{p_g(i)} = 1/|G| sum_g R_g s_i R_g^T

(energy unchanged). Every operation spglib reports is used, pure lattice
translations of a supercell included, so the operations form a group and the
average is a projection. One base evaluation; a post-processing of its results.
"""

from __future__ import annotations

import warnings

import numpy as np

from ._averaging import voigt
from ._transform import stress_matrix

__all__ = ["SpaceGroupError", "space_group_average", "space_group_operations"]


class SpaceGroupError(ValueError):
    """The structure has no space group to average over (not a 3D periodic crystal)."""


def _wrapped(fractions: np.ndarray) -> np.ndarray:
    wrapped = fractions - np.floor(fractions)
    return np.where(wrapped >= 1.0, 0.0, wrapped)


def space_group_operations(atoms, symprec: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Cartesian rotations ``[G, 3, 3]`` and atom maps ``[G, N]`` (atom ``i`` goes to
    the site of atom ``maps[g, i]``) of the space group of ``atoms`` (spglib with
    tolerance ``symprec``, in Angstrom)."""
    import spglib
    from scipy.spatial import cKDTree

    if atoms.cell.rank != 3 or not all(atoms.pbc):
        raise SpaceGroupError(
            "space-group averaging needs a crystal periodic in 3D "
            f"(cell rank {atoms.cell.rank}, pbc {list(map(bool, atoms.pbc))})"
        )
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    fractions = _wrapped(atoms.get_scaled_positions(wrap=False))
    numbers = np.asarray(atoms.numbers)
    with warnings.catch_warnings():  # spglib 2.x's notice about its error handling
        warnings.simplefilter("ignore", DeprecationWarning)
        found = spglib.get_symmetry((cell, fractions, numbers), symprec=symprec)
    if found is None:
        raise SpaceGroupError(f"spglib found no symmetry operations (symprec {symprec})")
    w = np.asarray(found["rotations"], dtype=np.float64)
    t = np.asarray(found["translations"], dtype=np.float64)
    rotations = np.einsum("ab,gbc,cd->gad", cell.T, w, np.linalg.inv(cell.T))
    images = _wrapped(np.einsum("gab,nb->gna", w, fractions) + t[:, None, :])
    tree = cKDTree(fractions, boxsize=1.0)
    _, maps = tree.query(images.reshape(-1, 3), k=1)
    maps = maps.reshape(len(w), len(atoms))
    offset = images - fractions[maps]
    offset -= np.round(offset)
    distance = np.linalg.norm(offset @ cell, axis=-1)
    wrong_species = numbers[maps] != numbers[None, :]
    if distance.max() > 3 * symprec or wrong_species.any():
        raise SpaceGroupError(
            f"space-group operations do not map the atoms onto each other within "
            f"{3 * symprec:g} Angstrom (largest miss {distance.max():.3g})"
        )
    return rotations, maps


def space_group_average(results: dict, rotations: np.ndarray, maps: np.ndarray) -> dict:
    """``results`` (ASE's: energy, energies, forces, stress, stresses) averaged over
    the operations; other entries are left as they are."""
    out = dict(results)
    count = len(rotations)
    n = maps.shape[1]
    if "energies" in results:
        energies = np.asarray(results["energies"], dtype=np.float64)
        acc = np.zeros_like(energies)
        np.add.at(acc, maps.reshape(-1), np.tile(energies, count))
        out["energies"] = acc / count
    if "forces" in results:
        forces = np.asarray(results["forces"], dtype=np.float64)
        moved = np.einsum("gab,nb->gna", rotations, forces)  # R F_i
        acc = np.zeros_like(forces)
        np.add.at(acc, maps.reshape(-1), moved.reshape(-1, 3))
        out["forces"] = acc / count
    if "stress" in results:
        stress = stress_matrix(results["stress"])
        mean = np.einsum("gab,bc,gdc->ad", rotations, stress, rotations) / count
        out["stress"] = voigt(mean) if np.shape(results["stress"]) == (6,) else mean
    if "stresses" in results:
        given = np.asarray(results["stresses"], dtype=np.float64)
        matrices = given.shape[-2:] == (3, 3)
        stresses = given if matrices else np.stack([stress_matrix(s) for s in given])
        moved = np.einsum("gab,nbc,gdc->gnad", rotations, stresses, rotations)
        acc = np.zeros((n, 3, 3))
        np.add.at(acc, maps.reshape(-1), moved.reshape(-1, 3, 3))
        out["stresses"] = acc / count if matrices else voigt(acc / count)
    return out
