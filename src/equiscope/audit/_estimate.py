"""The default audit: unbiased estimates with a confidence interval, to a precision.

Every sample is evaluated on ``K`` copies of a base grid (the octahedral rotation
group: 24 elements), each turned by its own Haar-random element
(:mod:`equiscope.metrics.replicates`; for O(3), inverted with probability 1/2). That
gives, per sample, unbiased estimates of ``A^2``, of every sector norm up to
``max_lambda`` and of the total squared norm, and the jackknife variance of ``A^2``.
Pooled over samples (per atom for extensive outputs) they give the equivariance RMSE
with a 95 % interval and a spectrum whose fractions are of the *total*, so
``above_max_lambda`` is what lies beyond. When the interval is wider than
``precision`` (relative, on A) for some output above its noise
floor, every sample gets more replicates of *that* output only (independent draws,
merged with the first), up to ``max_replicates``: an energy alone costs one forward
pass per copy, without the backward pass of forces and stress.

Why a random inversion per replicate instead of the base grid with inversion: both
are unbiased; the inverted half of an explicit ``G x {1, -1}`` only tells the
parity-odd part of the response, which most models have little of (metatrain's PET
energy has none), so it doubles the cost of a replicate for no gain in precision.
"""

from __future__ import annotations

import math

import torch

from ..grids import Grid
from ..grids import grid as make_grid
from ..groups import Group, sector_label
from ..metrics.replicates import (
    ReplicateEstimate,
    SampleEstimate,
    haar_elements,
    interval,
    oriented,
    t_quantile,
)
from ._kinds import OutputKind, expected_sectors
from ._noise import measured_roundoff
from ._stats import label_layout

__all__ = [
    "DEFAULT_ESTIMATE_BASE",
    "FEW_SAMPLES",
    "EstimateStats",
    "LayerEstimates",
    "estimate_base",
    "more_replicates",
    "relative_half_width",
    "run_replicates",
]

DEFAULT_ESTIMATE_BASE = "octahedral"
"""The rotation group whose random orientations the default audit evaluates when it
has :data:`FEW_SAMPLES` samples or more."""
FEW_SAMPLES = 3
ESTIMATE_BASES = ("tetrahedral", "octahedral", "icosahedral")
"""Below this many samples the default base is the icosahedral group instead."""

FLOOR_FACTOR = 10.0
"""An interval whose upper end is below this many noise floors needs no precision."""


def estimate_base(
    name: str = DEFAULT_ESTIMATE_BASE, *, inversion: bool = True, samples: int | None = None
) -> Grid:
    """The base grid of the default estimate: the rotation group ``name``
    (tetrahedral 12, octahedral 24, icosahedral 60 elements). With ``inversion`` it
    is an O(3) grid of proper elements only: each replicate is turned by a
    Haar-random element of O(3), so half the replicates are inverted as a whole.

    ``name="auto"`` picks by the number of ``samples``: with many, the 3 replicates
    every sample gets are the cost and pooling gives the precision, so the octahedral
    group; with fewer than :data:`FEW_SAMPLES`, the precision per copy is the cost,
    and the icosahedral group, which removes lambda = 1-5 from every replicate (the
    bulk of forces' and stresses' variance), needs fewer copies in all."""
    if name not in ("auto", *ESTIMATE_BASES):
        raise ValueError(
            f"estimate grid '{name}': expected auto, {', '.join(ESTIMATE_BASES)} or a Grid"
        )
    if name == "auto":
        if samples is None:
            raise ValueError("estimate_base('auto') needs the number of samples")
        name = "icosahedral" if samples < FEW_SAMPLES else DEFAULT_ESTIMATE_BASE
    proper = make_grid(name)
    if not inversion:
        return proper
    return Grid(
        name,
        Group("O(3)"),
        proper.rotations,
        proper.weights,
        check_degree=proper.check_degree,
        parameters={**proper.parameters, "inversion": "random per replicate"},
    )


def _generator(seed: int, index: int, round_index: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + index) * 101 + round_index)


class EstimateStats:
    """One output's per-sample estimates over the data set (in sample order)."""

    def __init__(self, kind: OutputKind):
        self.kind = kind
        self.records: list[SampleEstimate] = []
        self.scales: list[float] = []
        self.entries: list[int] = []
        self.roundoff = 0.0

    def add(self, estimate: SampleEstimate, size: int, entries: int) -> None:
        self.records.append(estimate)
        self.scales.append(float(size) ** 2 if self.kind.extensive else 1.0)
        self.entries.append(entries)

    def add_roundoff(self, squared: float, size: int) -> None:
        self.roundoff += squared / (size**2 if self.kind.extensive else 1.0)

    def merge(self, other: EstimateStats) -> None:
        """Append ``other``'s samples (the next block of the data)."""
        self.records += other.records
        self.scales += other.scales
        self.entries += other.entries
        self.roundoff += other.roundoff

    def absorb(self, other: EstimateStats) -> None:
        """Combine with more replicates of the same samples, in the same order."""
        self.records = [a.combined(b) for a, b in zip(self.records, other.records, strict=True)]

    @property
    def total_entries(self) -> int:
        return sum(self.entries)

    def pooled(self) -> tuple[float, float, int]:
        """``(A^2, its variance, degrees of freedom)`` pooled over samples (per entry)."""
        n = self.total_entries
        a2 = sum(r.a2 / s for r, s in zip(self.records, self.scales, strict=True)) / n
        variance = sum(
            r.a2_variance / s**2 for r, s in zip(self.records, self.scales, strict=True)
        ) / (n * n)
        return a2, variance, sum(r.df for r in self.records)

    def rms(self) -> float:
        value = sum(r.total / s for r, s in zip(self.records, self.scales, strict=True))
        return math.sqrt(max(value, 0.0) / max(self.total_entries, 1))

    def noise_floor(self, dtype: torch.dtype) -> float:
        measured = math.sqrt(self.roundoff / max(self.total_entries, 1))
        return max(torch.finfo(dtype).eps * self.rms(), measured)

    def summary_precision(self, dtype: torch.dtype) -> float | None:
        """The interval's relative half-width, or ``None`` when its upper end is below
        ``FLOOR_FACTOR`` noise floors (then no more precision is needed)."""
        a2, variance, df = self.pooled()
        low, high = interval(a2, variance, df)
        if high <= FLOOR_FACTOR * self.noise_floor(dtype):
            return None
        return relative_half_width(math.sqrt(max(a2, 0.0)), low, high)

    def summary(self, group, dtype: torch.dtype, precision: float) -> dict:
        """The output's entry of ``report.json``."""
        a2, variance, df = self.pooled()
        low, high = interval(a2, variance, df)
        rmse = math.sqrt(max(a2, 0.0))
        total = sum(r.total for r in self.records)
        sectors: dict = {}
        variances: dict = {}
        for record in self.records:
            for sector, value in record.sectors.items():
                sectors[sector] = sectors.get(sector, 0.0) + value
                variances[sector] = variances.get(sector, 0.0) + record.sector_variances.get(
                    sector, 0.0
                )
        scale = total if total > 0 else 1.0
        raw = {k: v / scale for k, v in sectors.items()}
        noise = {k: t_quantile(df) * math.sqrt(max(v, 0.0)) / scale for k, v in variances.items()}
        # a sector is reported when its 95 % interval excludes zero; the estimates are
        # unbiased, so the others scatter around zero (negative ones included)
        fractions = {k: (v if v > noise[k] else 0.0) for k, v in raw.items()}
        rest = 1.0 - sum(raw.values())
        rest_noise = math.sqrt(sum(n * n for n in noise.values()))
        expected = expected_sectors(self.kind.irrep, group)
        breaking = sorted(
            ((k, v) for k, v in fractions.items() if k not in expected), key=lambda kv: -kv[1]
        )
        floor = self.noise_floor(dtype)
        measured = math.sqrt(self.roundoff / max(self.total_entries, 1))
        width = relative_half_width(rmse, low, high)
        out = {
            "irrep": self.kind.irrep if isinstance(self.kind.irrep, str) else list(self.kind.irrep),
            "per_atom": self.kind.extensive,
            "equivariance_rmse": rmse,
            "equivariance_rmse_ci95": [low, high],
            "noise_floor": floor,
            "roundoff_measured": measured,
            "rms_value": self.rms(),
            "spectrum": {sector_label(k): v for k, v in fractions.items()},
            "spectrum_ci95_half_width": {sector_label(k): v for k, v in noise.items()},
            "above_max_lambda": rest if total > 0 and rest > rest_noise else 0.0,
            "expected_sectors": sorted(sector_label(k) for k in expected),
            "breaking_sectors": {sector_label(k): v for k, v in breaking[:3]},
            "per_structure_equivariance": [
                math.sqrt(max(r.a2, 0.0) / s / e)
                for r, s, e in zip(self.records, self.scales, self.entries, strict=True)
            ],
            "converged": bool(width <= precision or high <= FLOOR_FACTOR * floor),
            "estimate": {
                "relative_half_width": width,
                "target": precision,
                "replicates": [min(r.k for r in self.records), max(r.k for r in self.records)],
                "degrees_of_freedom": df,
            },
        }
        errors = [r.errors for r in self.records]
        if all(e is not None for e in errors):
            n = self.total_entries
            rmse_of = {
                key: math.sqrt(
                    max(sum(e[key] / s for e, s in zip(errors, self.scales, strict=True)), 0.0) / n
                )
                for key in ("oriented", "symmetrized", "equivariance")
            }
            out["accuracy"] = {
                "oriented_rmse": rmse_of["oriented"],
                "symmetrized_rmse": rmse_of["symmetrized"],
                "equivariance_rmse": rmse_of["equivariance"],
                "identity_residual": abs(
                    rmse_of["oriented"] ** 2
                    - rmse_of["symmetrized"] ** 2
                    - rmse_of["equivariance"] ** 2
                )
                / max(rmse_of["oriented"] ** 2, 1e-300),
            }
        return out


def more_replicates(
    stats: dict[str, EstimateStats],
    ks: dict[str, int],
    precision: float,
    dtype: torch.dtype,
    max_replicates: int,
) -> dict[str, int]:
    """Replicates to add to every sample, per output, so that its interval reaches
    ``precision`` (0 when it does, sits below its floor or has no room left).

    The variance of the pooled ``A^2`` falls as ``1 / K``; the interval's t quantile
    is taken at the degrees of freedom one more round would give (each round of ``r``
    replicates adds ``N (r - 1)``), not at the current ones: from 3 replicates of one
    sample (t = 4.3) the current quantile would ask for about 4 times too many. A
    round adds at least 3 (its own jackknife)."""
    extra: dict[str, int] = {}
    for name, st in stats.items():
        k = ks[name]
        width = st.summary_precision(dtype)
        room = max_replicates - k
        if width is None or width <= precision or room < 3:
            extra[name] = 0
            continue
        a2, variance, df = st.pooled()
        n = len(st.records)
        rmse = math.sqrt(max(a2, 0.0))
        target = max_replicates
        for total in range(k + 3, max_replicates + 1):
            # one more round of (total - k) replicates per sample
            low, high = interval(a2, variance * k / total, df + n * (total - k - 1))
            if relative_half_width(rmse, low, high) <= precision:
                target = total
                break
        extra[name] = target - k
    return extra


def relative_half_width(value: float, low: float, high: float) -> float:
    """Half the interval's width relative to the estimate (inf for a zero estimate
    with a non-zero interval)."""
    half = (high - low) / 2
    if value > 0:
        return half / value
    return 0.0 if half == 0 else math.inf


class LayerEstimates:
    """Unbiased sector norms of hidden layers, per sample, from replicate coefficients."""

    def __init__(self):
        self.records: dict[str, list[tuple[int, dict, float]]] = {}

    def add_sample(self, accumulators: dict[str, list]) -> None:
        """``{path: [accumulator of replicate a, ...]}`` of one sample."""
        for path, replicas in accumulators.items():
            k = len(replicas)
            sums, squares = None, None
            for accumulator in replicas:
                coefficients = accumulator.coefficients()
                if sums is None:
                    sums = [c.clone() for c in coefficients]
                    squares = [float(c.square().sum()) for c in coefficients]
                else:
                    for index, c in enumerate(coefficients):
                        sums[index] += c
                        squares[index] += float(c.square().sum())
            sectors = {
                sector: (float(s.square().sum()) - q) / (k * (k - 1))
                for sector, s, q in zip(replicas[0].sectors, sums, squares, strict=True)
            }
            total = sum(a.total for a in replicas) / k
            self.records.setdefault(path, []).append((k, sectors, total))

    def merge(self, other: LayerEstimates) -> None:
        for path, records in other.records.items():
            self.records.setdefault(path, []).extend(records)

    def absorb(self, other: LayerEstimates) -> None:
        for path, records in other.records.items():
            mine = self.records[path]
            combined = []
            for (ka, sa, ta), (kb, sb, tb) in zip(mine, records, strict=True):
                k = ka + kb
                combined.append(
                    (
                        k,
                        {s: (ka * v + kb * sb[s]) / k for s, v in sa.items()},
                        (ka * ta + kb * tb) / k,
                    )
                )
            self.records[path] = combined

    def report(self) -> dict:
        out = {}
        for path, records in self.records.items():
            total = sum(t for _, _, t in records)
            sectors: dict = {}
            for _, values, _ in records:
                for sector, value in values.items():
                    sectors[sector] = sectors.get(sector, 0.0) + value
            raw = {k: (v / total if total > 0 else 0.0) for k, v in sectors.items()}
            out[path] = {
                "spectrum": {sector_label(k): max(v, 0.0) for k, v in raw.items()},
                "above_max_lambda": max(0.0, 1.0 - sum(raw.values())) if total > 0 else 0.0,
            }
        return out


def run_replicates(
    adapter,
    indexed: list,
    base: Grid,
    outputs: list[str],
    layers: list[str],
    max_lambda: int,
    replicates: int,
    *,
    seed: int,
    round_index: int,
    roundoff: bool,
    progress,
) -> tuple[dict, LayerEstimates, int]:
    """One round: ``replicates`` randomly oriented copies of ``base`` for every sample
    of ``indexed`` (``(index, sample)`` pairs). Returns the output statistics, the
    layer estimates and the number of copies evaluated."""
    stats: dict[str, EstimateStats] = {}
    layer_estimates = LayerEstimates()
    copies = 0
    improper = base.group.has_improper
    for index, sample in indexed:
        generator = _generator(seed, index, round_index)
        estimates: dict[str, ReplicateEstimate] = {}
        kinds: dict[str, OutputKind] = {}
        accumulators: dict[str, list] = {}
        shapes: dict[str, torch.Size] = {}
        for element in haar_elements(replicates, generator, improper=improper):
            grid = oriented(base, element)
            result = adapter.evaluate(
                sample, grid, outputs=outputs, layers=layers, max_lambda=max_lambda
            )
            copies += grid.size
            if progress is not None:
                progress.update(grid.size)
            for name, responses in result.responses.items():
                if name not in estimates:
                    estimates[name] = ReplicateEstimate(result.kinds[name].irrep, max_lambda)
                    kinds[name] = result.kinds[name]
                    shapes[name] = responses.shape[1:]
                estimates[name].add(responses, grid)
            for path, accumulator in result.layers.items():
                accumulators.setdefault(path, []).append(accumulator)
        size = adapter.size(sample)
        squared = measured_roundoff(adapter, sample, outputs, seed=index) if roundoff else {}
        for name, estimate in estimates.items():
            reference = adapter.reference(sample, name)
            if reference is not None:
                reference = label_layout(reference.to(torch.float64), shapes[name])
            if name not in stats:
                stats[name] = EstimateStats(kinds[name])
            stats[name].add(estimate.estimate(reference), size, math.prod(shapes[name]))
            stats[name].add_roundoff(squared.get(name, 0.0), size)
        if accumulators:
            layer_estimates.add_sample(accumulators)
    return stats, layer_estimates, copies
