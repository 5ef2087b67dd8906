"""The audit engine: a model's symmetry over a data set, through any adapter.

For every sample the adapter evaluates the model on the orbit of a grid; per output
this gives the equivariance error A (pooled into an RMSE, per atom for extensive
outputs), the character spectrum of the direct response, the noise floor (the larger
of ``eps x RMS`` and the measured round-off) and, with labels, the oriented /
symmetrised / equivariance RMSE (``oriented^2 = symmetrised^2 + equivariance^2``).
Hidden layers get their spectra. A finer grid re-evaluates the first samples to check
convergence; without a grid, Lebedev grids are refined until the RMSE changes by less
than :data:`CONVERGENCE_RTOL`. Given ``shards`` (``torchrun``), every process audits a
contiguous block of the samples and the partial sums are merged in block order.
"""

from __future__ import annotations

import dataclasses
import time

from ..grids import Grid
from ..grids import grid as make_grid
from ..groups import sector_label
from ..metrics import refine
from ..shards import Shards
from ._estimate import (
    DEFAULT_ESTIMATE_BASE,
    EstimateStats,
    LayerEstimates,
    estimate_base,
    more_replicates,
    run_replicates,
)
from ._kinds import AuditOptionError
from ._noise import measured_roundoff
from ._stats import OutputStats

__all__ = [
    "CONVERGENCE_RTOL",
    "DEFAULT_ESTIMATE_MAX_LAMBDA",
    "DEFAULT_MAX_REPLICATES",
    "DEFAULT_PRECISION",
    "DEFAULT_REPLICATES",
    "run_audit",
]

DEFAULT_PRECISION = 0.1
"""Target half-width of the 95 % interval of A, relative to A, of the default audit."""
DEFAULT_REPLICATES = 3
"""Randomly oriented copies of the base grid per sample in the first round."""
DEFAULT_MAX_REPLICATES = 48
"""The most replicates a sample gets while the interval is too wide."""
DEFAULT_ESTIMATE_MAX_LAMBDA = 4
"""Spectra of the default audit go up to this lambda (the rest is above_max_lambda)."""

CONVERGENCE_RTOL = 0.01
"""A grid is converged when the equivariance RMSE changes by less than this
(relative) on the next finer grid."""


def _relative(a: float, b: float, floor: float = 0.0) -> float:
    scale = max(abs(a), abs(b), floor)
    return abs(a - b) / scale if scale > 0 else 0.0


def _index(sample, position: int) -> int:
    """The sample's index in its data file (an ``index`` attribute), else its position."""
    index = getattr(sample, "index", position)
    return index if isinstance(index, int) and not isinstance(index, bool) else position


def _described(adapter, indexed) -> dict:
    """``{index, formula, atoms}`` lists in sample order (``describe(sample)`` of the
    adapter gives the formula; the index in the data and the size otherwise)."""
    describe = getattr(adapter, "describe", None)
    return {
        "index": [index for index, _ in indexed],
        "formula": [describe(s) if describe else "" for _, s in indexed],
        "atoms": [adapter.size(s) for _, s in indexed],
    }


def _add_layer(layer_norms, layer_residual, path, sectors, residual, total) -> None:
    """Add one layer's sector norms and its norm above the largest lambda (of its
    ``total``) to the running sums."""
    norms = layer_norms.setdefault(path, {})
    for sector, value in sectors.items():
        norms[sector] = norms.get(sector, 0.0) + value
    sums = layer_residual.setdefault(path, [0.0, 0.0])
    sums[0] += residual
    sums[1] += total


def _run(adapter, samples, grid, outputs, layers, max_lambda, *, progress, roundoff=True):
    """Statistics of ``samples`` (with their global ``(index, sample)`` pairs)."""
    stats: dict[str, OutputStats] = {}
    layer_norms: dict[str, dict] = {}
    layer_residual: dict[str, list[float]] = {}
    iterator = samples
    if progress:
        from tqdm import tqdm

        noun = adapter.words.get("samples", "samples")
        iterator = tqdm(samples, desc=f"audit on {grid.name} ({grid.size})", unit=noun[:6])
    for index, sample in iterator:
        result = adapter.evaluate(
            sample, grid, outputs=outputs, layers=layers, max_lambda=max_lambda
        )
        size = adapter.size(sample)
        squared = measured_roundoff(adapter, sample, outputs, seed=index) if roundoff else {}
        for name, responses in result.responses.items():
            if name not in stats:
                stats[name] = OutputStats(result.kinds[name])
            stats[name].add_roundoff(squared.get(name, 0.0), size)
            reference = adapter.reference(sample, name)
            stats[name].add(responses, grid, max_lambda, size, reference)
        for path, spectrum in result.layers.items():
            residual, total = spectrum.residual, spectrum.total
            _add_layer(layer_norms, layer_residual, path, spectrum, residual, total)
    return stats, layer_norms, layer_residual


def _merge(parts: list[tuple[dict, dict, dict]]) -> tuple[dict, dict, dict]:
    """The results of ``_run`` on consecutive blocks of samples, as one run."""
    stats: dict[str, OutputStats] = {}
    layer_norms: dict[str, dict] = {}
    layer_residual: dict[str, list[float]] = {}
    for part_stats, part_norms, part_residual in parts:
        for name, st in part_stats.items():
            if name in stats:
                stats[name].merge(st)
            else:
                stats[name] = st
        for path, (residual, total) in part_residual.items():
            _add_layer(layer_norms, layer_residual, path, part_norms[path], residual, total)
    return stats, layer_norms, layer_residual


@dataclasses.dataclass
class _Failure:
    """An error on one rank, as every rank can raise it (a rank that stops alone
    leaves the others waiting in the next collective)."""

    rank: int
    option: bool
    message: str

    def throw(self):
        if self.option:
            raise AuditOptionError(self.message)
        raise RuntimeError(f"process {self.rank} of the audit failed: {self.message}")


def _attempt(shards: Shards, work):
    """``work()``; when sharded, its error is returned as a :class:`_Failure`."""
    try:
        return work()
    except Exception as error:
        if not shards.distributed:
            raise
        text = (str(error).strip().splitlines() or [""])[0]
        option = isinstance(error, AuditOptionError)
        return _Failure(shards.rank, option, text if option else f"{type(error).__name__}: {text}")


def _raise_failures(values: list) -> None:
    for value in values:
        if isinstance(value, _Failure):
            value.throw()


def run_audit(
    adapter,
    samples: list,
    *,
    grid: Grid | str | None = None,
    max_lambda: int | None = None,
    outputs: list[str] | None = None,
    layers: list[str] | None = None,
    convergence_structures: int = 1,
    progress: bool = True,
    shards: Shards | None = None,
    precision: float = DEFAULT_PRECISION,
    replicates: int = DEFAULT_REPLICATES,
    max_replicates: int = DEFAULT_MAX_REPLICATES,
    estimate_grid: Grid | str | None = "auto",
    inversion: bool = True,
    seed: int = 0,
) -> dict:
    """Audit ``adapter``'s model on ``samples``; returns the report as a dict.

    ``grid=None`` (or ``"estimate"``), the default, estimates every output's A and
    spectrum without bias from ``replicates`` randomly oriented copies of
    ``estimate_grid`` per sample (a :class:`Grid`, or a name for :func:`estimate_base`:
    by default, or with ``None``, ``"auto"``, the octahedral rotations, or the
    icosahedral ones for fewer than 3 samples; O(3) with ``inversion``: each replicate
    inverted with probability 1/2), adding replicates to each
    output until its 95 % interval of A is within ``precision`` (relative) or below 10
    noise floors, up to ``max_replicates`` (see :mod:`._estimate`); ``seed`` makes the orientations
    reproducible. A :class:`Grid` is used as it is (deterministic; it sees nothing of
    the sectors it leaves invariant, which the report says). ``"auto"`` refines
    Lebedev grids until the equivariance RMSE changes by less than 1 % on the first
    ``convergence_structures`` samples. ``layers=None`` captures every layer the adapter
    offers. ``shards``: each process
    audits one contiguous block of ``samples`` of about equal atom counts and every
    process returns the merged report, the one a single process gives; the
    convergence probe runs on rank 0 and its result is broadcast; an error on one
    rank is raised on all. Default: this process audits everything alone.
    """
    start = time.perf_counter()
    shards = shards or Shards()
    if not samples:
        raise AuditOptionError(f"no {adapter.words.get('samples', 'samples')} to audit")
    outputs = adapter.outputs(samples, outputs)
    if layers is None:
        layers = list(adapter.layers)
    check_layers = getattr(adapter, "check_layers", None)
    if check_layers is not None:
        check_layers(layers)
    elif layers:
        raise AuditOptionError(f"no hidden layers can be captured from {adapter.source}")
    indexed = [(_index(s, i), s) for i, s in enumerate(samples)]
    if grid is None or (isinstance(grid, str) and grid == "estimate"):
        if replicates < 3 or max_replicates < replicates:
            raise AuditOptionError(
                f"replicates must be at least 3 and at most max_replicates, got {replicates} "
                f"and {max_replicates}"
            )
        if not precision > 0:
            raise AuditOptionError(f"precision must be positive, got {precision}")
        base, refinement = _estimate_grids(estimate_grid, inversion, len(samples))
        report = _estimate_audit(
            adapter,
            indexed,
            outputs,
            layers,
            base,
            refinement,
            DEFAULT_ESTIMATE_MAX_LAMBDA if max_lambda is None else max_lambda,
            shards,
            progress=progress,
            precision=precision,
            replicates=replicates,
            max_replicates=max_replicates,
            seed=seed,
        )
        report["seconds"] = time.perf_counter() - start
        return report
    if isinstance(grid, str) and grid != "auto":
        raise AuditOptionError(f"grid '{grid}': expected a Grid, 'estimate' or 'auto'")
    probe = indexed[: max(1, convergence_structures)]

    def rmse_on(g):
        def work():
            s, _, _ = _run(adapter, probe, g, outputs, [], 0, progress=False, roundoff=False)
            return {name: st.rmse for name, st in s.items()}

        values = shards.broadcast(_attempt(shards, work) if shards.leader else None)
        _raise_failures([values])
        return values

    history = []
    if isinstance(grid, str):  # "auto"
        degree = max(4, 2 * (max_lambda or 2))
        grid = make_grid("lebedev", degree=degree, inversion=True)
        coarse = rmse_on(grid)
        for _ in range(3):
            finer = refine(grid)
            fine = rmse_on(finer)
            history.append((grid, finer, coarse, fine))
            if all(_relative(coarse[k], fine[k]) <= CONVERGENCE_RTOL for k in fine):
                break
            grid, coarse = finer, fine
        grid = history[-1][1]
    if max_lambda is None:
        max_lambda = grid.exact_degree
    if max_lambda > grid.exact_degree:
        raise AuditOptionError(
            f"max lambda {max_lambda} is beyond what grid '{grid.name}' resolves "
            f"(exact_degree {grid.exact_degree})"
        )
    block = shards.block(indexed, [adapter.size(s) for _, s in indexed])
    show = progress and shards.leader
    part = _attempt(
        shards, lambda: _run(adapter, block, grid, outputs, layers, max_lambda, progress=show)
    )
    parts = shards.all_gather(part)
    _raise_failures(parts)
    stats, layer_norms, layer_residual = _merge(parts)
    if not history and convergence_structures > 0:
        finer = refine(grid)
        on_grid = {k: st.probe_rmse(len(probe)) for k, st in stats.items()}
        history.append((grid, finer, on_grid, rmse_on(finer)))
    report_outputs = {}
    for name, st in stats.items():
        summary = st.summary(grid, adapter.dtype)
        _annotate(adapter, name, summary)
        summary["equivariance_rmse_ci95"] = None  # a deterministic grid the user chose
        summary["converged"] = None
        if history:
            grid_a, grid_b, values_a, values_b = history[-1]
            # below the noise floor both grids measure round-off: that counts as converged
            change = _relative(values_a[name], values_b[name], 10 * summary["noise_floor"])
            summary["converged"] = change <= CONVERGENCE_RTOL
            summary["convergence"] = {
                "grids": [grid_a.to_dict(), grid_b.to_dict()],
                "equivariance_rmse": [values_a[name], values_b[name]],
                "relative_change": change,
                "structures": len(probe),
            }
        report_outputs[name] = summary
    report_layers = {}
    for path, norms in layer_norms.items():
        residual, full = layer_residual[path]
        report_layers[path] = {
            "spectrum": {sector_label(k): (v / full if full else 0.0) for k, v in norms.items()},
            "above_max_lambda": max(residual / full, 0.0) if full else 0.0,
        }
    return {
        **_header(adapter, indexed, grid.to_dict(), max_lambda, shards),
        "outputs": report_outputs,
        "layers": report_layers,
        "auto_grid": [
            {
                "grid": a.to_dict(),
                "finer": b.to_dict(),
                "relative_change": {k: _relative(ca[k], cb[k]) for k in cb},
            }
            for a, b, ca, cb in history
        ],
        "seconds": time.perf_counter() - start,
    }


def _annotate(adapter, name: str, summary: dict) -> None:
    """The unit (per atom for extensive outputs) and what the output derives from."""
    unit = adapter.unit(name)
    summary["unit"] = f"{unit}/atom" if unit and summary["per_atom"] else unit
    if name in getattr(adapter, "derived", {}):
        summary["derived_from"] = adapter.derived[name]


def _header(adapter, indexed, grid: dict, max_lambda: int, shards: Shards) -> dict:
    return {
        "model": adapter.source,
        "model_dtype": str(adapter.dtype).replace("torch.", ""),
        "structures": len(indexed),
        "sample_noun": adapter.words.get("samples", "samples"),
        "atoms": sum(adapter.size(s) for _, s in indexed),
        "per_structure": _described(adapter, indexed),
        "symmetrizable": getattr(adapter, "symmetrizable", False),  # True, "calculator"
        "grid": grid,
        "max_lambda": max_lambda,
        "processes": shards.size,
    }


def _estimate_grids(estimate_grid, inversion: bool, samples: int) -> tuple[Grid, Grid]:
    """The default estimate's base grids, of the first round and of the later ones:
    ``estimate_grid`` itself or by name for both, except ``"auto"`` for fewer than
    :data:`~._estimate.FEW_SAMPLES` samples: the icosahedral group first (forces and
    stress are precise from its 3 copies), then the octahedral group for what is still
    short of precision (mostly energies, whose cost per precision it halves)."""
    if isinstance(estimate_grid, Grid):
        return estimate_grid, estimate_grid
    try:
        base = estimate_base(estimate_grid or "auto", inversion=inversion, samples=samples)
    except ValueError as error:
        raise AuditOptionError(str(error)) from None
    if (estimate_grid or "auto") == "auto" and base.name != DEFAULT_ESTIMATE_BASE:
        return base, estimate_base(DEFAULT_ESTIMATE_BASE, inversion=inversion)
    return base, base


def _parent(label: str, outputs: list[str]) -> str | None:
    """The requested output a response label comes from: itself, or ``name[...]`` for
    a block of a multi-block output (``None`` when unknown: then all are evaluated)."""
    if label in outputs:
        return label
    for name in outputs:
        if label.startswith(name + "["):
            return name
    return None


def _merge_estimates(parts):
    stats: dict[str, EstimateStats] = {}
    layers = LayerEstimates()
    copies = 0
    for part_stats, part_layers, part_copies in parts:
        for name, st in part_stats.items():
            if name in stats:
                stats[name].merge(st)
            else:
                stats[name] = st
        layers.merge(part_layers)
        copies += part_copies
    return stats, layers, copies


def _estimate_audit(
    adapter,
    indexed,
    outputs,
    layers,
    base: Grid,
    refinement: Grid,
    max_lambda: int,
    shards: Shards,
    *,
    progress: bool,
    precision: float,
    replicates: int,
    max_replicates: int,
    seed: int,
) -> dict:
    """The default audit (see :func:`run_audit`): rounds of replicates until precise."""
    block = shards.block(indexed, [adapter.size(s) for _, s in indexed])
    show = progress and shards.leader
    bar = None
    if show:
        from tqdm import tqdm

        noun = adapter.words.get("samples", "samples")
        bar = tqdm(
            total=len(block) * replicates * base.size,
            desc=f"audit of {len(indexed)} {noun}",
            unit="copy",
        )
    stats, layer_estimates, copies = None, None, 0
    ks: dict[str, int] = {}
    parents: dict[str, str | None] = {}
    round_index = 0
    try:
        while True:
            if stats is None:
                active, evaluated, extra = list(outputs), list(outputs), replicates
            else:
                needed = more_replicates(stats, ks, precision, adapter.dtype, max_replicates)
                active = [name for name, n in needed.items() if n > 0]
                if not active:
                    break
                # the outputs short of precision, together, by the fewest replicates
                # any of them needs (the others go on in the next round): none gets
                # more than it asks for, however much another one needs
                extra = min(needed[n] for n in active)
                wanted = {parents[n] for n in active}
                evaluated = outputs if None in wanted else [o for o in outputs if o in wanted]
                if bar is not None:
                    bar.total += len(block) * extra * refinement.size
                    bar.refresh()

            def work(extra=extra, round_index=round_index, evaluated=evaluated):
                return run_replicates(
                    adapter,
                    block,
                    base if round_index == 0 else refinement,
                    evaluated,
                    layers if round_index == 0 else [],
                    max_lambda,
                    extra,
                    seed=seed,
                    round_index=round_index,
                    roundoff=round_index == 0,
                    progress=bar,
                )

            parts = shards.all_gather(_attempt(shards, work))
            _raise_failures(parts)
            new_stats, new_layers, new_copies = _merge_estimates(parts)
            copies += new_copies
            if stats is None:
                stats, layer_estimates = new_stats, new_layers
                ks = dict.fromkeys(stats, extra)
                parents = {label: _parent(label, outputs) for label in stats}
            else:
                for name in active:
                    stats[name].absorb(new_stats[name])
                    ks[name] += extra
            round_index += 1
    finally:
        if bar is not None:
            bar.close()
    report_outputs = {}
    for name, st in stats.items():
        summary = st.summary(base.group, adapter.dtype, precision)
        _annotate(adapter, name, summary)
        report_outputs[name] = summary
    grid = {
        **base.to_dict(),
        "randomly_oriented": True,
        "replicates": max(ks.values(), default=0),
        "copies": copies,
        "precision_target": precision,
    }
    if refinement is not base and round_index > 1:  # later rounds ran on it
        grid["refinement"] = {"name": refinement.name, "size": refinement.size}
    return {
        **_header(adapter, indexed, grid, max_lambda, shards),
        "outputs": report_outputs,
        "layers": layer_estimates.report(),
        "auto_grid": [],
    }
