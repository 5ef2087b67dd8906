"""Groups acting on 3D space, their elements and real irreducible representations."""

from .finite import finite_group
from .group import Group, Sector, sector_label
from .wigner import irrep_matrices, wigner_d, wigner_generators

__all__ = [
    "Group",
    "Sector",
    "finite_group",
    "irrep_matrices",
    "sector_label",
    "wigner_d",
    "wigner_generators",
]
