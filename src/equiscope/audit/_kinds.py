"""What an adapter hands the engine: responses on an orbit and how they transform."""

from __future__ import annotations

import dataclasses

import torch

from ..groups import Group

__all__ = ["AuditOptionError", "OrbitResult", "OutputKind", "expected_sectors"]


class AuditOptionError(ValueError):
    """An audit option does not fit the model or the data."""


@dataclasses.dataclass(frozen=True)
class OutputKind:
    """How an output transforms: ``irrep`` is ``"scalar"``, ``"vector"``,
    ``"rank2"`` or ``(lambda, sigma)``; ``per_structure`` outputs have one value per
    sample (energy, stress, a dipole), the others one per atom; ``extensive`` ones
    (energies) are reported per atom."""

    irrep: object
    per_structure: bool
    extensive: bool


@dataclasses.dataclass
class OrbitResult:
    """Direct-frame responses ``u(g_i) = f(g_i x)`` of one sample on a grid,
    ``{name: [n_grid, rows, properties, *components]}`` (float64, CPU), their kinds,
    and the spectra of hidden layers ``{path: equiscope.Spectrum}`` (for a randomly
    oriented replicate grid, ``grid.parameters["oriented"]``, their
    :class:`~equiscope.SpectrumAccumulator` instead, built with ``any_degree=True``)."""

    responses: dict[str, torch.Tensor]
    kinds: dict[str, OutputKind]
    layers: dict[str, object] = dataclasses.field(default_factory=dict)


def expected_sectors(irrep, group: Group) -> set:
    """Sectors ``(lambda, sigma)`` an exactly equivariant output occupies in the
    direct frame (``sigma = 0`` for groups without improper elements)."""
    parity = group.has_improper

    def sector(lam, sigma):
        return (lam, sigma if parity else 0)

    if irrep == "scalar":
        return {sector(0, 1)}
    if irrep == "vector":
        return {sector(1, 1)}
    if irrep == "rank2":
        return {sector(0, 1), sector(1, -1), sector(2, 1)}
    return {sector(*irrep)}
