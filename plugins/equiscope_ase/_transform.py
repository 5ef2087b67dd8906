"""Transformed copies of ASE ``Atoms`` and the back-transformation of their results
(right-handed cells for improper elements): :mod:`equiscope._copies`, re-exported for
the ASE adapters. Imports numpy only, never metatensor or metatomic.
"""

from equiscope._copies import back_transform_stress, stress_matrix, transformed_atoms

__all__ = ["back_transform_stress", "stress_matrix", "transformed_atoms"]
