"""Compact groups acting on 3D space, and their real irreducible representations.

A *sector* is a hashable key ``(degree, sigma)`` naming one real irrep:

============  ==========================  =========  ================
group         sectors                     dimension  spectral factor
============  ==========================  =========  ================
O(3)          ``(lambda, +-1)``           2l+1       2l+1
SO(3)         ``(lambda, 0)``             2l+1       2l+1
O(2) about z  ``(0, +-1)``, ``(m>=1, 0)`` 1, 2       1, 2
SO(2) about z ``(0, 0)``, ``(m>=1, 0)``   1, 2       1, 1
============  ==========================  =========  ================

``sigma`` follows metatensor: parity under inversion is ``sigma (-1)^lambda``;
``sigma = 0`` means parity is not part of the group. The *spectral factor* ``c``
makes ``c |integral u(g) rho(g) dmu|_F^2`` the squared norm of the projection of a
function ``u`` on the group onto that sector (Peter-Weyl); for SO(2) the real
2x2 block is the sum of the complex irreps ``+-m``, hence ``c = 1``.
"""

from __future__ import annotations

import torch

from .wigner import irrep_matrices

__all__ = ["Group", "Sector", "get_group", "sector_label"]

Sector = tuple[int, int]


def sector_label(sector: Sector) -> str:
    """``"lambda,sigma"`` (e.g. ``"1,-1"``), or just ``"m"`` when sigma is 0."""
    degree, sigma = sector
    return f"{degree},{sigma}" if sigma else f"{degree}"


class Group:
    """One of O(3), SO(3), O(2), SO(2); the axial groups act about the z axis."""

    def __init__(self, name: str):
        if name not in ("O(3)", "SO(3)", "O(2)", "SO(2)"):
            raise ValueError(f"unknown group '{name}'")
        self.name = name
        self.spherical = name.endswith("(3)")
        self.has_improper = name.startswith("O")

    def __repr__(self) -> str:
        return f"Group('{self.name}')"

    def __eq__(self, other) -> bool:
        return isinstance(other, Group) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def sectors(self, max_degree: int) -> list[Sector]:
        """All sectors of degree ``0 .. max_degree``, in a fixed order."""
        out: list[Sector] = []
        for degree in range(max_degree + 1):
            if self.spherical:
                out += [(degree, 1), (degree, -1)] if self.has_improper else [(degree, 0)]
            elif degree == 0:
                out += [(0, 1), (0, -1)] if self.has_improper else [(0, 0)]
            else:
                out.append((degree, 0))
        return out

    def check_sector(self, sector) -> Sector:
        """Validate ``sector`` for this group and return it as a tuple of ints."""
        try:
            degree, sigma = (int(v) for v in sector)
        except (TypeError, ValueError):
            raise ValueError(
                f"irrep {sector!r} is not a (degree, sigma) pair of integers"
            ) from None
        if degree < 0 or (degree, sigma) not in self.sectors(degree):
            raise ValueError(
                f"irrep {sector!r} is not an irrep of {self.name}; valid examples: "
                + ", ".join(str(s) for s in self.sectors(1))
            )
        return degree, sigma

    def dimension(self, sector: Sector) -> int:
        degree = sector[0]
        if self.spherical:
            return 2 * degree + 1
        return 1 if degree == 0 else 2

    def spectral_factor(self, sector: Sector) -> float:
        if self.name == "SO(2)":
            return 1.0
        return float(self.dimension(sector))

    def representation(self, sector: Sector, elements: torch.Tensor) -> torch.Tensor:
        """Orthogonal matrices ``rho(g)``, float64 ``[n, d, d]``."""
        degree, sigma = sector
        if self.spherical:
            return irrep_matrices(degree, sigma, elements)
        elements = elements.to(torch.float64)
        det = torch.linalg.det(elements)
        if degree == 0:
            sign = torch.where(det < 0, float(sigma or 1), 1.0).to(torch.float64)
            return sign[:, None, None]
        angle = torch.atan2(elements[:, 1, 0], elements[:, 0, 0])
        c, s = torch.cos(degree * angle), torch.sin(degree * angle)
        rotation = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
        flip = torch.where(det < 0, -1.0, 1.0).to(torch.float64)
        return rotation * torch.stack([torch.ones_like(flip), flip], -1)[:, None, :]


def get_group(name: str) -> Group:
    return Group(name)
