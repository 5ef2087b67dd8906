"""Running sums of one output's symmetry statistics over a data set.

Per sample, from the direct-frame responses ``u(g_i)`` on a grid: the equivariance
variance ``A^2`` (pooled into an RMSE; extensive outputs per atom, so divided by
``N^2``), the squared norm per sector (the character spectrum), the squared values
(the output's RMS), and with reference values the error decomposition
``oriented^2 = symmetrised^2 + equivariance^2``. Sums from consecutive blocks of
samples merge into the sums of one run.
"""

from __future__ import annotations

import math

import torch

from .. import metrics
from ..grids import Grid
from ..groups import sector_label
from ._kinds import OutputKind, expected_sectors

__all__ = ["OutputStats", "label_layout"]


def label_layout(reference: torch.Tensor, shape) -> torch.Tensor:
    """Reference values in metatensor's layout ``[rows, *components, properties]`` (or
    flat in that order) as responses are kept, ``shape = [rows, properties, *components]``."""
    rows, properties, components = shape[0], shape[1], list(shape[2:])
    return reference.reshape(rows, *components, properties).movedim(-1, 1)


class OutputStats:
    """Running sums for one output over the data set."""

    def __init__(self, kind: OutputKind):
        self.kind = kind
        self.per_structure: list[float] = []  # A per sample (RMS over entries)
        self.entries = 0
        self.structure_a2: list[float] = []
        self.structure_entries: list[int] = []
        self.sum_a2 = 0.0
        self.sum_value2 = 0.0
        self.value_entries = 0
        self.sector_norms: dict = {}
        self.sum_total = 0.0  # sum_i w_i |u_i|^2, the norm the sectors are fractions of
        self.roundoff = 0.0
        self.errors = {"oriented": 0.0, "symmetrized": 0.0, "equivariance": 0.0}
        self.error_entries = 0

    def add(self, responses, grid: Grid, max_lambda: int, size: int, reference=None) -> None:
        """Add one sample's responses ``[n_grid, rows, ...]`` (``size`` atoms)."""
        kind = self.kind
        errors = None
        if reference is not None:  # A^2 comes with the error decomposition
            reference = label_layout(reference, responses.shape[1:])
            errors = metrics.error_decomposition(responses, reference, grid, kind.irrep)
            a2 = errors["equivariance"]
        else:
            a2 = metrics.equivariance_variance(responses, grid, kind.irrep)  # [samples...]
        n_components = responses[0].numel() // max(a2.numel(), 1)
        scale = size**2 if kind.extensive else 1.0
        structure_a2 = float(a2.sum()) / scale
        entries = a2.numel() * n_components
        self.sum_a2 += structure_a2
        self.entries += entries
        self.structure_a2.append(structure_a2)
        self.structure_entries.append(entries)
        self.per_structure.append(math.sqrt(structure_a2 / entries))
        self.sum_value2 += float(responses.square().sum()) / scale / responses.shape[0]
        self.value_entries += entries
        flat = responses.reshape(responses.shape[0], -1).to(torch.float64)
        self.sum_total += float(grid.weights @ flat.square().sum(1))
        sectors, norms = metrics.sector_norms(responses, grid, max_lambda)
        for sector, value in zip(sectors, norms.reshape(len(sectors), -1).sum(1), strict=True):
            self.sector_norms[sector] = self.sector_norms.get(sector, 0.0) + float(value)
        if errors is not None:
            for key, value in errors.items():
                self.errors[key] += float(value.sum()) / scale
            self.error_entries += entries

    def merge(self, other: OutputStats) -> None:
        """Add ``other``'s samples after this one's (their order is kept)."""
        self.per_structure += other.per_structure
        self.structure_a2 += other.structure_a2
        self.structure_entries += other.structure_entries
        self.entries += other.entries
        self.sum_a2 += other.sum_a2
        self.sum_value2 += other.sum_value2
        self.value_entries += other.value_entries
        self.roundoff += other.roundoff
        self.sum_total += other.sum_total
        self.error_entries += other.error_entries
        for key, value in other.errors.items():
            self.errors[key] += value
        for sector, value in other.sector_norms.items():
            self.sector_norms[sector] = self.sector_norms.get(sector, 0.0) + value

    def add_roundoff(self, squared: float, size: int) -> None:
        """Add one sample's measured squared round-off (see :func:`measured_roundoff`)."""
        self.roundoff += squared / (size**2 if self.kind.extensive else 1.0)

    @property
    def rmse(self) -> float:
        return math.sqrt(self.sum_a2 / self.entries)

    def probe_rmse(self, n: int) -> float:
        """The equivariance RMSE of the first ``n`` samples only."""
        return math.sqrt(sum(self.structure_a2[:n]) / sum(self.structure_entries[:n]))

    def summary(self, grid: Grid, dtype: torch.dtype) -> dict:
        """The output's entry of ``report.json``."""
        total = self.sum_total
        fractions = {k: (v / total if total > 0 else 0.0) for k, v in self.sector_norms.items()}
        above = max(0.0, 1.0 - sum(fractions.values())) if total > 0 else 0.0
        expected = expected_sectors(self.kind.irrep, grid.group)
        breaking = sorted(
            ((k, v) for k, v in fractions.items() if k not in expected),
            key=lambda kv: -kv[1],
        )
        rms = math.sqrt(self.sum_value2 / max(self.value_entries, 1))
        measured = math.sqrt(self.roundoff / max(self.entries, 1))
        out = {
            "irrep": self.kind.irrep if isinstance(self.kind.irrep, str) else list(self.kind.irrep),
            "per_atom": self.kind.extensive,
            "equivariance_rmse": self.rmse,
            "noise_floor": max(torch.finfo(dtype).eps * rms, measured),
            "roundoff_measured": measured,
            "rms_value": rms,
            "spectrum": {sector_label(k): v for k, v in fractions.items()},
            "above_max_lambda": above,
            "expected_sectors": sorted(sector_label(k) for k in expected),
            "breaking_sectors": {sector_label(k): v for k, v in breaking[:3]},
            "per_structure_equivariance": self.per_structure,
        }
        if self.error_entries:
            rmse = {k: math.sqrt(v / self.error_entries) for k, v in self.errors.items()}
            out["accuracy"] = {
                "oriented_rmse": rmse["oriented"],
                "symmetrized_rmse": rmse["symmetrized"],
                "equivariance_rmse": rmse["equivariance"],
                "identity_residual": abs(
                    rmse["oriented"] ** 2 - rmse["symmetrized"] ** 2 - rmse["equivariance"] ** 2
                )
                / max(rmse["oriented"] ** 2, 1e-300),
            }
        return out
