"""A quadrature grid on a group: elements, weights, and its *computed* exactness."""

from __future__ import annotations

import functools

import torch

from ..groups.group import Group, Sector
from ..groups.wigner import wigner_d

__all__ = ["Grid"]

_EXACT_TOLERANCE = 1e-10


class Grid:
    """Group elements ``g_i`` (as 3x3 matrices) with weights ``w_i`` summing to 1.

    ``sum_i w_i f(g_i)`` approximates the Haar integral of ``f``. The grid's exactness
    is computed from the representation matrices, never assumed: a non-trivial
    sector ``rho`` is *averaged out* when ``|sum_i w_i rho(g_i)|_F < 1e-10``.

    - :attr:`averaged_sectors`: the non-trivial sectors averaged out, up to
      :attr:`check_degree`;
    - :attr:`mean_exact_degree`: the mean of any response with content up to this
      degree is exact;
    - :attr:`exact_degree`: products of two representations up to this degree (the
      variance A^2 and the spectrum B of responses band-limited to it) are exact,
      i.e. every sector of degree ``<= 2 * exact_degree`` is averaged out.
    """

    def __init__(
        self,
        name: str,
        group: Group,
        rotations: torch.Tensor,
        weights: torch.Tensor,
        *,
        check_degree: int,
        parameters: dict | None = None,
    ):
        rotations = torch.as_tensor(rotations, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if rotations.ndim != 3 or rotations.shape[1:] != (3, 3):
            raise ValueError(f"rotations must be [n, 3, 3], got {tuple(rotations.shape)}")
        if weights.shape != rotations.shape[:1]:
            raise ValueError(f"weights must be [{rotations.shape[0]}], got {tuple(weights.shape)}")
        if abs(float(weights.sum()) - 1.0) > 1e-12:
            raise ValueError(f"weights must sum to 1, got {float(weights.sum())}")
        self.name = name
        self.group = group
        self.rotations = rotations
        self.weights = weights
        self.check_degree = check_degree
        self.parameters = dict(parameters or {})
        self._representations: dict[Sector, torch.Tensor] = {}
        self._wigner: dict[int, torch.Tensor] = {}
        self._det = torch.linalg.det(rotations).round()
        if not torch.allclose(
            rotations @ rotations.transpose(1, 2),
            torch.eye(3, dtype=torch.float64).expand_as(rotations),
            atol=1e-10,
        ):
            raise ValueError("grid elements must be orthogonal 3x3 matrices")
        if group.spherical and not group.has_improper and bool((self._det < 0).any()):
            raise ValueError(f"a {group.name} grid cannot hold improper elements")

    def __len__(self) -> int:
        return self.rotations.shape[0]

    @property
    def size(self) -> int:
        return len(self)

    def __repr__(self) -> str:
        return (
            f"Grid({self.name!r}, group={self.group.name}, size={self.size}, "
            f"exact_degree={self.exact_degree})"
        )

    def representation(self, sector: Sector) -> torch.Tensor:
        """``rho_sector(g_i)`` for every element, float64 ``[n, d, d]`` (cached)."""
        sector = self.group.check_sector(sector)
        if sector not in self._representations:
            if self.group.spherical:
                self._representations[sector] = self._spherical_representation(sector)
            else:
                self._representations[sector] = self.group.representation(sector, self.rotations)
        return self._representations[sector]

    def _spherical_representation(self, sector: Sector) -> torch.Tensor:
        # rho_(l, sigma)(g) = [sigma (-1)^l]^((1 - det g) / 2) D^l(det(g) g): one Wigner
        # D evaluation per degree, shared by both parities
        degree, sigma = sector
        if degree not in self._wigner:
            self._wigner[degree] = wigner_d(degree, self._det[:, None, None] * self.rotations)
        parity = float(sigma * (-1) ** degree) if sigma else 1.0
        sign = torch.where(self._det < 0, parity, 1.0).to(torch.float64)
        return self._wigner[degree] * sign[:, None, None]

    @property
    def trivial_sector(self) -> Sector:
        return self.group.sectors(0)[0]

    def leakage(self, sector: Sector) -> float:
        """``|| sum_i w_i rho(g_i) ||_F``: how much of a sector survives the grid
        average. 0 where the grid averages the sector out exactly; ``sqrt(k)`` for a
        group with ``k`` invariant directions in the sector (the average is then the
        projector onto them); in between for a grid that only damps it (e.g. a Lebedev
        product grid with more in-plane angles than its exactness needs)."""
        mean = torch.einsum("n,nab->ab", self.weights, self.representation(sector))
        return float(torch.linalg.norm(mean))

    @functools.cached_property
    def averaged_sectors(self) -> tuple[Sector, ...]:
        return tuple(
            sector
            for sector in self.group.sectors(self.check_degree)
            if sector != self.trivial_sector and self.leakage(sector) < _EXACT_TOLERANCE
        )

    @functools.cached_property
    def averages_out(self) -> tuple[int, ...]:
        """Degrees ``>= 1`` whose every sector this grid averages out exactly."""
        averaged = set(self.averaged_sectors)
        return tuple(
            degree
            for degree in range(1, self.check_degree + 1)
            if all(s in averaged for s in self.group.sectors(degree) if s[0] == degree)
        )

    def _exact_up_to(self, degree: int) -> bool:
        averaged = set(self.averaged_sectors)
        return all(s in averaged for s in self.group.sectors(degree) if s != self.trivial_sector)

    @functools.cached_property
    def mean_exact_degree(self) -> int:
        degree = 0
        while degree < self.check_degree and self._exact_up_to(degree + 1):
            degree += 1
        return degree

    @functools.cached_property
    def exact_degree(self) -> int:
        return self.mean_exact_degree // 2

    @classmethod
    def identity(cls) -> Grid:
        """The one-element grid ``{E}``: evaluates a model once, in the input frame."""
        eye = torch.eye(3, dtype=torch.float64)[None]
        return cls(
            "identity", Group("SO(3)"), eye, torch.ones(1, dtype=torch.float64), check_degree=0
        )

    def rotated(self, rotation: torch.Tensor) -> Grid:
        """The grid ``{g_i Q}``: a right translation keeps weights and exactness."""
        rotation = torch.as_tensor(rotation, dtype=torch.float64)
        grid = Grid(
            self.name,
            self.group,
            self.rotations @ rotation,
            self.weights,
            check_degree=self.check_degree,
            parameters=self.parameters,
        )
        for key in ("averaged_sectors", "averages_out", "mean_exact_degree"):
            if key in self.__dict__:
                grid.__dict__[key] = self.__dict__[key]
        return grid

    def to_dict(self) -> dict:
        """Summary for reports: ``{name, group, size, exact_degree, ...}``."""
        return {
            "name": self.name,
            "group": self.group.name,
            "size": self.size,
            "exact_degree": self.exact_degree,
            "mean_exact_degree": self.mean_exact_degree,
            "averages_out": list(self.averages_out),
            **self.parameters,
        }
