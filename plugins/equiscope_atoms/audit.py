"""Post-hoc symmetry audit of an atomistic model over a data set.

For every structure the model runs on the orbit of a grid (see :mod:`.orbit`); per
output this gives the equivariance error A (pooled into an RMSE, per atom for
energies), the character spectrum of the direct response, the noise floor of the
model's dtype and, when the data has labels, the oriented / symmetrised /
equivariance RMSE that satisfy ``oriented^2 = symmetrised^2 + equivariance^2``.
Hidden layers get their spectra. A finer grid re-evaluates the first structures to
check convergence. Under ``torchrun`` every process audits a contiguous block of the
structures and the partial sums are merged (:mod:`equiscope.shards`).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time

import torch
from metatomic.torch import System

import equiscope as eq
from equiscope.shards import Shards

from .data import Structure
from .models import LoadedModel
from .orbit import OutputKind, evaluate_orbit

__all__ = ["AuditOptionError", "audit", "expected_sectors"]

_CONVERGENCE_RTOL = 0.01


class AuditOptionError(ValueError):
    """An audit option does not fit the model or the data."""


def expected_sectors(irrep, group: eq.Group) -> set:
    """Sectors an exactly equivariant output occupies in the direct frame."""
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


def _choose_outputs(
    model: LoadedModel, requested, structures, quiet: bool = False
) -> tuple[list, bool, bool]:
    available = model.auditable_outputs()
    has_energy = "energy" in available
    periodic = all(s.periodic for s in structures)
    derived = (["forces"] if has_energy else []) + (["stress"] if has_energy and periodic else [])
    if requested is None:
        requested = available + derived
        if has_energy and not periodic and not quiet:
            first = next(s for s in structures if not s.periodic)
            print(
                f"equiscope: stress is not audited: structure {first.index} of the data is "
                "not periodic (stress needs every structure periodic with a cell)",
                file=sys.stderr,
            )
    unknown = [n for n in requested if n not in available + derived]
    if unknown:
        why = ""
        if "stress" in unknown and has_energy and not periodic:
            why = " (stress needs every structure periodic with a cell)"
        raise AuditOptionError(
            f"unknown output(s) {', '.join(unknown)}{why}; this model offers: "
            + ", ".join(available + derived)
        )
    outputs = [n for n in requested if n in available]
    return outputs, "forces" in requested, "stress" in requested


class _OutputStats:
    """Running sums for one output over the data set."""

    def __init__(self, kind: OutputKind):
        self.kind = kind
        self.per_structure: list[float] = []  # A per structure (RMS over entries)
        self.entries = 0
        self.structure_a2: list[float] = []
        self.structure_entries: list[int] = []
        self.sum_a2 = 0.0
        self.sum_value2 = 0.0
        self.value_entries = 0
        self.sector_norms: dict = {}
        self.roundoff = 0.0
        self.errors = {"oriented": 0.0, "symmetrized": 0.0, "equivariance": 0.0}
        self.error_entries = 0

    def add(self, responses, grid, max_lambda, n_atoms, reference=None):
        kind = self.kind
        errors = None
        if reference is not None:  # A^2 comes with the error decomposition
            reference = label_layout(reference, responses.shape[1:])
            errors = eq.error_decomposition(responses, reference, grid, kind.irrep)
            a2 = errors["equivariance"]
        else:
            a2 = eq.equivariance_variance(responses, grid, kind.irrep)  # [samples...]
        n_components = responses[0].numel() // max(a2.numel(), 1)
        scale = n_atoms**2 if kind.extensive else 1.0
        structure_a2 = float(a2.sum()) / scale
        entries = a2.numel() * n_components
        self.sum_a2 += structure_a2
        self.entries += entries
        self.structure_a2.append(structure_a2)
        self.structure_entries.append(entries)
        self.per_structure.append(math.sqrt(structure_a2 / entries))
        self.sum_value2 += float(responses.square().sum()) / scale / responses.shape[0]
        self.value_entries += entries
        sectors, norms = eq.sector_norms(responses, grid, max_lambda)
        for sector, value in zip(sectors, norms.reshape(len(sectors), -1).sum(1), strict=True):
            self.sector_norms[sector] = self.sector_norms.get(sector, 0.0) + float(value)
        if errors is not None:
            for key, value in errors.items():
                self.errors[key] += float(value.sum()) / scale
            self.error_entries += entries

    def merge(self, other: _OutputStats) -> None:
        """Add ``other``'s structures after this one's (their order is kept)."""
        self.per_structure += other.per_structure
        self.structure_a2 += other.structure_a2
        self.structure_entries += other.structure_entries
        self.entries += other.entries
        self.sum_a2 += other.sum_a2
        self.sum_value2 += other.sum_value2
        self.value_entries += other.value_entries
        self.roundoff += other.roundoff
        self.error_entries += other.error_entries
        for key, value in other.errors.items():
            self.errors[key] += value
        for sector, value in other.sector_norms.items():
            self.sector_norms[sector] = self.sector_norms.get(sector, 0.0) + value

    def add_roundoff(self, squared: float, n_atoms: int) -> None:
        self.roundoff += squared / (n_atoms**2 if self.kind.extensive else 1.0)

    @property
    def rmse(self) -> float:
        return math.sqrt(self.sum_a2 / self.entries)

    def probe_rmse(self, n: int) -> float:
        """The equivariance RMSE of the first ``n`` structures only."""
        return math.sqrt(sum(self.structure_a2[:n]) / sum(self.structure_entries[:n]))

    def summary(self, grid: eq.Grid, dtype: torch.dtype) -> dict:
        total = sum(self.sector_norms.values())
        fractions = {k: (v / total if total > 0 else 0.0) for k, v in self.sector_norms.items()}
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
            "spectrum": {eq.sector_label(k): v for k, v in fractions.items()},
            "expected_sectors": sorted(eq.sector_label(k) for k in expected),
            "breaking_sectors": {eq.sector_label(k): v for k, v in breaking[:3]},
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


_JITTERS = 3


def _input_roundoff(model, structure, outputs, forces, stress) -> dict:
    """Squared round-off per output, measured.

    Rotating a structure in finite precision moves every coordinate by about
    ``eps |x|``. The model is re-run on ``_JITTERS`` copies with such random
    displacements (positions and cell, at the model dtype's epsilon); the spread of
    its outputs is what rotations alone would produce in an exactly equivariant
    model. Returns the sum of squared deviations from the mean, per copy.
    """
    system = structure.system
    eps = torch.finfo(model.dtype).eps
    generator = torch.Generator().manual_seed(structure.index)
    identity = eq.Grid.identity()
    runs = []
    for jitter in range(_JITTERS + 1):
        positions, cell = system.positions.to(torch.float64), system.cell.to(torch.float64)
        if jitter:
            scale = eps * positions.norm(dim=1, keepdim=True)
            positions = positions + scale * torch.randn(
                positions.shape, generator=generator, dtype=torch.float64
            )
            cell = cell + eps * cell.norm(dim=1, keepdim=True) * torch.randn(
                3, 3, generator=generator, dtype=torch.float64
            )
        moved = System(types=system.types, positions=positions, cell=cell, pbc=system.pbc)
        result = evaluate_orbit(
            model, moved, identity, outputs=outputs, forces=forces, stress=stress
        )
        runs.append(result.responses)
    squared = {}
    for name in runs[0]:
        stacked = torch.stack([run[name][0] for run in runs])
        squared[name] = float((stacked - stacked.mean(0)).square().sum()) / (len(runs) - 1)
    return squared


def label_layout(reference: torch.Tensor, shape) -> torch.Tensor:
    """Reference values in metatensor's layout ``[rows, *components, properties]`` (or
    flat in that order) as responses are kept, ``shape = [rows, properties, *components]``."""
    rows, properties, components = shape[0], shape[1], list(shape[2:])
    return reference.reshape(rows, *components, properties).movedim(-1, 1)


def _reference(structure: Structure, name: str):
    """The structure's reference values of output ``name``, or ``None``."""
    if name in structure.labels:
        return structure.labels[name]
    if name == "energy" and structure.energy is not None:
        return torch.tensor([[structure.energy]], dtype=torch.float64)
    if name == "forces" and structure.forces is not None:
        return structure.forces.to(torch.float64)
    if name == "stress" and structure.stress is not None:
        return structure.stress.to(torch.float64)
    return None


def _check_labels(model, structures, outputs, forces, stress) -> None:
    """Every label names an audited output and has as many values as the output has in
    its structure (per structure, or per atom times the atoms); the model runs once,
    on the first structure as it is, to tell. Before any sharding: every rank agrees."""
    labelled = sorted({name for structure in structures for name in structure.labels})
    if not labelled:
        return
    first = structures[0]
    result = evaluate_orbit(
        model, first.system, eq.Grid.identity(), outputs=outputs, forces=forces, stress=stress
    )
    unknown = [name for name in labelled if name not in result.responses]
    if unknown:  # (multi-block outputs are named name[o3_lambda=...,o3_sigma=...])
        raise AuditOptionError(
            f"labels given for {', '.join(unknown)}, which the audit does not evaluate "
            f"(it evaluates: {', '.join(result.responses)})"
        )
    for name in labelled:
        kind = result.kinds[name]
        values = result.responses[name][0].numel()
        per_atom = values // first.n_atoms
        for structure in structures:
            label = structure.labels.get(name)
            expected = values if kind.per_structure else per_atom * structure.n_atoms
            if label is not None and label.numel() != expected:
                hint = ""
                if name in outputs and not kind.per_structure and label.numel() == per_atom:
                    hint = f" (per atom; totals of {name} match: --totals {name})"
                key = structure.label_keys.get(name, name)
                raise AuditOptionError(
                    f"label '{key}' of {name} in structure {structure.index} has "
                    f"{label.numel()} values; the model gives {expected} there{hint}"
                )


def _run(
    model,
    structures,
    grid,
    outputs,
    forces,
    stress,
    layers,
    max_lambda,
    batch_size,
    progress,
    measure_roundoff=True,
):
    stats: dict[str, _OutputStats] = {}
    layer_norms: dict[str, dict] = {}
    layer_residual: dict[str, list[float]] = {}
    iterator = structures
    if progress:
        from tqdm import tqdm

        iterator = tqdm(structures, desc=f"audit on {grid.name} ({grid.size})", unit="struct")
    for structure in iterator:
        result = evaluate_orbit(
            model,
            structure.system,
            grid,
            outputs=outputs,
            forces=forces,
            stress=stress,
            layers=layers,
            max_lambda=max_lambda,
            batch_size=batch_size,
        )
        roundoff = {}
        if measure_roundoff:
            roundoff = _input_roundoff(model, structure, outputs, forces, stress)
        for name, responses in result.responses.items():
            if name not in stats:
                stats[name] = _OutputStats(result.kinds[name])
            stats[name].add_roundoff(roundoff.get(name, 0.0), structure.n_atoms)
            stats[name].add(
                responses,
                grid,
                max_lambda,
                structure.n_atoms,
                _reference(structure, name),
            )
        for path, spectrum in result.layers.items():
            residual, total = spectrum.residual, spectrum.total
            _add_layer(layer_norms, layer_residual, path, spectrum, residual, total)
    return stats, layer_norms, layer_residual


def _add_layer(layer_norms, layer_residual, path, sectors, residual, total) -> None:
    """Add one layer's sector norms and its norm above the largest lambda (of its
    ``total``) to the running sums."""
    norms = layer_norms.setdefault(path, {})
    for sector, value in sectors.items():
        norms[sector] = norms.get(sector, 0.0) + value
    sums = layer_residual.setdefault(path, [0.0, 0.0])
    sums[0] += residual
    sums[1] += total


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


def _merge(parts: list[tuple[dict, dict, dict]]) -> tuple[dict, dict, dict]:
    """The results of ``_run`` on consecutive blocks of structures, as one run."""
    stats: dict[str, _OutputStats] = {}
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


def audit(
    model: LoadedModel,
    structures: list[Structure],
    *,
    grid: eq.Grid | None = None,
    max_lambda: int | None = None,
    outputs: list[str] | None = None,
    layers: list[str] | None = None,
    batch_size: int = 32,
    convergence_structures: int = 1,
    progress: bool = True,
    shards: Shards | None = None,
) -> dict:
    """Audit ``model`` on ``structures``; returns the report as a dict.

    ``grid=None`` chooses automatically: Lebedev grids of increasing degree until
    the equivariance RMSE of every output changes by less than 1 % on the first
    structures. ``layers=None`` captures every layer the model exposes.

    ``shards`` (e.g. ``Shards.current()`` inside a ``torchrun`` process group): each
    process audits one contiguous block of ``structures``, of about equal atom counts,
    and every process returns the merged report, the one a single process gives. The
    grid-convergence probe runs on rank 0 and its result is broadcast; an error on one
    rank is raised on all. Default: this process audits everything alone.
    """
    start = time.perf_counter()
    shards = shards or Shards()
    if not structures:
        raise AuditOptionError("no structures to audit")
    if batch_size < 1:
        raise AuditOptionError(f"batch size must be at least 1, got {batch_size}")
    outputs, forces, stress = _choose_outputs(model, outputs, structures, not shards.leader)
    unknown_totals = sorted(name for name in model.totals if name not in outputs)
    if unknown_totals:
        raise AuditOptionError(
            f"totals asked for {', '.join(unknown_totals)}, which the audit does not evaluate "
            f"(model outputs audited: {', '.join(outputs)})"
        )
    for name in sorted(model.totals):
        if name.split("/")[0] == "energy" or model.outputs[name].sample_kind == "system":
            raise AuditOptionError(f"totals asked for {name}, which is audited per structure")
    _check_labels(model, structures, outputs, forces, stress)
    if layers is None:
        layers = model.layers
    unknown_layers = [p for p in layers if p not in model.layers and model.hook_target(p) is None]
    if unknown_layers:
        offered = ", ".join(model.layers) or "none (exported models run in TorchScript)"
        raise AuditOptionError(f"unknown layer(s) {', '.join(unknown_layers)}; offered: {offered}")
    probe = structures[: max(1, convergence_structures)]

    def rmse_on(g):
        def work():
            s, _, _ = _run(
                model, probe, g, outputs, forces, stress, [], 0, batch_size, False, False
            )
            return {name: st.rmse for name, st in s.items()}

        values = shards.broadcast(_attempt(shards, work) if shards.leader else None)
        _raise_failures([values])
        return values

    history = []
    if grid is None:
        degree = max(4, 2 * (max_lambda or 2))
        grid = eq.grid("lebedev", degree=degree, inversion=True)
        coarse = rmse_on(grid)
        for _ in range(3):
            finer = eq.refine(grid)
            fine = rmse_on(finer)
            history.append((grid, finer, coarse, fine))
            if all(_relative(coarse[k], fine[k]) <= _CONVERGENCE_RTOL for k in fine):
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
    block = shards.block(structures, [s.n_atoms for s in structures])
    part = _attempt(
        shards,
        lambda: _run(
            model,
            block,
            grid,
            outputs,
            forces,
            stress,
            layers,
            max_lambda,
            batch_size,
            progress and shards.leader,
        ),
    )
    parts = shards.all_gather(part)
    _raise_failures(parts)
    stats, layer_norms, layer_residual = _merge(parts)
    if not history and convergence_structures > 0:
        finer = eq.refine(grid)
        on_grid = {k: st.probe_rmse(len(probe)) for k, st in stats.items()}
        history.append((grid, finer, on_grid, rmse_on(finer)))
    report_outputs = {}
    for name, st in stats.items():
        summary = st.summary(grid, model.dtype)
        unit = model.output_unit(name)
        summary["unit"] = f"{unit}/atom" if unit and summary["per_atom"] else unit
        if name in ("forces", "stress"):
            summary["derived_from"] = "energy"
        summary["converged"] = None
        if history:
            grid_a, grid_b, values_a, values_b = history[-1]
            # below the noise floor both grids measure round-off: that counts as converged
            change = _relative(values_a[name], values_b[name], 10 * summary["noise_floor"])
            summary["converged"] = change <= _CONVERGENCE_RTOL
            summary["convergence"] = {
                "grids": [grid_a.to_dict(), grid_b.to_dict()],
                "equivariance_rmse": [values_a[name], values_b[name]],
                "relative_change": change,
                "structures": len(probe),
            }
        report_outputs[name] = summary
    report_layers = {}
    for path, norms in layer_norms.items():
        total = sum(norms.values())
        residual, full = layer_residual[path]
        report_layers[path] = {
            "spectrum": {eq.sector_label(k): v / total for k, v in norms.items()},
            "above_max_lambda": residual / full if full else 0.0,
        }
    return {
        "model": model.source,
        "model_dtype": str(model.dtype).replace("torch.", ""),
        "structures": len(structures),
        "sample_noun": "structures",
        "atoms": sum(s.n_atoms for s in structures),
        "per_structure": {  # in the order of per_structure_equivariance
            "index": [s.index for s in structures],
            "formula": [_formula(s) for s in structures],
            "atoms": [s.n_atoms for s in structures],
        },
        "symmetrizable": True,  # `equiscope symmetrize` wraps this kind of model
        "grid": grid.to_dict(),
        "max_lambda": max_lambda,
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
        "processes": shards.size,
    }


def _formula(structure: Structure) -> str:
    """The chemical formula of ``structure`` (e.g. ``"CH4O"``)."""
    from ase.data import chemical_symbols
    from ase.formula import Formula

    types = structure.system.types.tolist()
    if not all(0 < z < len(chemical_symbols) for z in types):
        return f"{len(types)} atoms"
    return Formula.from_list([chemical_symbols[z] for z in types]).format("hill")


def _relative(a: float, b: float, floor: float = 0.0) -> float:
    scale = max(abs(a), abs(b), floor)
    return abs(a - b) / scale if scale > 0 else 0.0
