"""Symmetry audit of a jet tagger, per subgroup, with the foundation engine's metrics.

Compact subgroups (:data:`~.actions.GROUPS`): every jet x is evaluated on the orbit
{g_i x} of a grid (SO(3)/O(3): Lebedev; SO(2)/O(2): equispaced angles; groups about the
jet axis conjugated into each jet's frame). The logit is an invariant (scalar) output:

    A^2(x) = sum_i w_i (f(g_i x) - Pi f(x))^2,  Pi f(x) = sum_i w_i f(g_i x),

pooled over jets into the equivariance RMSE, next to the noise floor (the larger of
eps(float32) x RMS logit and the measured spread of the logit when the momenta move by
their float32 rounding error). The character spectrum B of the logit and of every hidden
layer (per-constituent features, summed over constituents and channels; the pooled jet
features) comes from :class:`equiscope.SpectrumAccumulator`; an invariant logit has all
its weight in the trivial sector ("0" for SO(2)/SO(3), "0,1" with reflections/parity).
Each grid is checked against :func:`equiscope.refine` on the first jets.

Boosts are not compact: no Haar average. For a stated, bounded set of rapidities y
(default 9 equispaced in [-1, 1]) the audit reports the invariance error
RMS_x (f(Lambda_y x) - f(x)) against y, and relative to the RMS logit.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import ClassVar

import numpy as np
import torch

import equiscope as eq
from equiscope.audit import OrbitResult, OutputKind, run_audit

from .actions import (
    BOOSTS,
    JetGroup,
    boost,
    boost_direction,
    get_group,
    group_elements,
    rotate,
)
from .metrics import roc_auc

__all__ = ["DEFAULT_GROUPS", "JetAdapter", "JetAuditError", "audit_tagger", "evaluate_orbit"]

DEFAULT_GROUPS = ("so2-axis", "o2-axis", "so2-beam", "so3", "o3", "boost-axis", "boost-beam")


class JetAuditError(ValueError):
    """An audit option does not fit the model or the jets."""


@torch.no_grad()
def _run(model, momenta, hidden: bool, batch_size: int):
    """Logits [n] (float64) and hidden layers of ``momenta`` [n, C, 4] in batches."""
    logits, layers = [], {}
    for start in range(0, len(momenta), batch_size):
        out = model(momenta[start : start + batch_size], hidden=hidden)
        if hidden:
            out, captured = out
            for name, value in captured.items():
                layers.setdefault(name, []).append(value.double())
        logits.append(out.double())
    return torch.cat(logits), {k: torch.cat(v) for k, v in layers.items()}


def evaluate_orbit(model, momenta, group: JetGroup, grid: eq.Grid, *, hidden=False, batch_size=512):
    """Responses on the orbit: logits [n_grid, jets] and hidden layers [n_grid, jets, ...]."""
    elements = group_elements(group, grid.rotations, momenta)  # [jets, n, 3, 3]
    jets, n = elements.shape[:2]
    copies = momenta.to(torch.float64)[:, None].expand(jets, n, *momenta.shape[1:])
    transformed = rotate(copies.reshape(jets * n, *momenta.shape[1:]), elements.reshape(-1, 3, 3))
    logits, layers = _run(model, transformed, hidden, batch_size)
    logits = logits.reshape(jets, n).T
    layers = {k: v.reshape(jets, n, *v.shape[1:]).transpose(0, 1) for k, v in layers.items()}
    return logits, layers


@dataclasses.dataclass(frozen=True)
class _Jet:
    """One jet for the audit engine: its index and momenta ``[C, 4]`` (float64)."""

    index: int
    momenta: torch.Tensor


_LOGIT = OutputKind("scalar", per_structure=True, extensive=False)


class JetAdapter:
    """A tagger on the orbits of jets under one compact subgroup, for
    :func:`equiscope.audit.run_audit`: the logit (an invariant) and the hidden layers.
    The logits symmetrised on ``grid`` are kept for the tagging metrics."""

    dtype = torch.float32
    words: ClassVar[dict] = {"sample": "jet", "samples": "jets"}

    def __init__(self, model, group: JetGroup, grid: eq.Grid, *, layers: list, batch_size: int):
        self.model, self.group, self.grid = model, group, grid
        self.layers, self.batch_size = list(layers), batch_size
        self.source = getattr(model, "kind", type(model).__name__)
        self.symmetrized: dict[int, float] = {}

    def outputs(self, samples, requested):
        return ["logit"]

    def check_layers(self, layers):
        unknown = [name for name in layers if name not in self.layers]
        if unknown:
            raise JetAuditError(f"unknown layer(s) {', '.join(unknown)}")

    def size(self, sample) -> int:
        return 1

    def evaluate(self, sample: _Jet, grid, *, outputs, layers=(), max_lambda=None):
        logits, hidden = evaluate_orbit(
            self.model,
            sample.momenta[None],
            self.group,
            grid,
            hidden=bool(layers),
            batch_size=self.batch_size,
        )
        if grid is self.grid:
            self.symmetrized[sample.index] = float(eq.symmetrize(logits, grid, "scalar")[0])
        spectra = {}
        for name in layers:
            accumulator = eq.SpectrumAccumulator(grid, max_lambda)
            accumulator.add(hidden[name])
            spectra[name] = accumulator.spectrum(completeness_rtol=1.0)
        return OrbitResult({"logit": logits[:, :, None]}, {"logit": _LOGIT}, spectra)

    def jittered(self, sample: _Jet, eps: float, generator: torch.Generator) -> _Jet:
        noise = torch.randn(sample.momenta.shape, generator=generator, dtype=torch.float64)
        return _Jet(sample.index, sample.momenta + eps * sample.momenta.abs() * noise)

    def reference(self, sample, name):
        return None

    def unit(self, name: str) -> str:
        return ""


def _layer_names(model, momenta) -> list[str]:
    return list(_run(model, momenta[:1], True, 1)[1])


def _compact(model, momenta, labels, group, grid, max_lambda, layers, batch_size, conv_jets):
    """One compact subgroup through the core engine (:func:`equiscope.audit.run_audit`)."""
    names = _layer_names(model, momenta) if layers else []
    adapter = JetAdapter(model, group, grid, layers=names, batch_size=batch_size)
    jets = [_Jet(i, jet) for i, jet in enumerate(momenta.to(torch.float64))]
    report = run_audit(
        adapter,
        jets,
        grid=grid,
        max_lambda=max_lambda,
        convergence_structures=conv_jets,
        progress=False,
    )
    out = report["outputs"]["logit"]
    out["relative_equivariance"] = (
        out["equivariance_rmse"] / out["rms_value"] if out["rms_value"] else 0.0
    )
    if labels is not None and len(np.unique(labels)) == 2:
        direct = _run(model, momenta, False, batch_size)[0]
        symmetrized = np.array([adapter.symmetrized[jet.index] for jet in jets])
        out["tagging"] = {
            "auc_input_frame": roc_auc(direct.numpy(), labels),
            "auc_symmetrized": roc_auc(symmetrized, labels),
        }
    return {
        "description": group.description,
        "grid": report["grid"],
        "max_lambda": report["max_lambda"],
        "outputs": {"logit": out},
        "layers": report["layers"],
    }


def _boost(model, momenta, name, rapidities, batch_size) -> dict:
    direction = boost_direction(name, momenta)
    reference = _run(model, momenta, False, batch_size)[0]
    rms = float(reference.square().mean().sqrt())
    errors = []
    for y in rapidities:
        boosted = boost(momenta, float(y), direction)
        logits = _run(model, boosted, False, batch_size)[0]
        errors.append(float((logits - reference).square().mean().sqrt()))
    return {
        "description": BOOSTS[name],
        "non_compact": True,
        "rapidity": [float(y) for y in rapidities],
        "distribution": f"{len(rapidities)} equispaced rapidities in "
        f"[{rapidities[0]:g}, {rapidities[-1]:g}] (bounded, stated; no Haar average)",
        "invariance_rmse": errors,
        "relative": [e / rms if rms else 0.0 for e in errors],
        "rms_value": rms,
        "max_relative": max(e / rms if rms else 0.0 for e in errors),
    }


def audit_tagger(
    model: torch.nn.Module,
    momenta: torch.Tensor,
    *,
    labels=None,
    groups=DEFAULT_GROUPS,
    grids: dict | None = None,
    max_lambda: int | None = None,
    layers: bool = True,
    batch_size: int = 512,
    rapidity_max: float = 1.0,
    rapidity_steps: int = 9,
    convergence_jets: int = 2,
    source: str = "",
) -> dict:
    """Audit ``model`` (``momenta [jets, C, 4] -> logit``) on ``momenta`` per subgroup.

    ``grids`` maps compact group names to :class:`equiscope.Grid` (default:
    :meth:`~.actions.JetGroup.default_grid`); ``max_lambda`` defaults to what each grid
    resolves. Returns the report (see module doc and docs/jets.md)."""
    start = time.perf_counter()
    groups = list(groups)
    if not groups:
        raise JetAuditError("no groups to audit")
    try:
        kinds = [get_group(name) for name in groups]
    except ValueError as error:
        raise JetAuditError(str(error)) from None
    momenta = torch.as_tensor(momenta)
    if momenta.ndim != 3 or momenta.shape[-1] != 4 or len(momenta) == 0:
        raise JetAuditError(f"momenta must be [jets, constituents, 4], got {tuple(momenta.shape)}")
    if not bool(torch.isfinite(momenta).all()):
        raise JetAuditError("momenta contain NaN or infinite values")
    if not bool((momenta[..., 0] > 0).any(-1).all()):
        raise JetAuditError("a jet has no constituents")
    if batch_size < 1:
        raise JetAuditError(f"batch size must be at least 1, got {batch_size}")
    if rapidity_max <= 0 or rapidity_steps < 2:
        raise JetAuditError("boosts need a positive rapidity range and at least 2 steps")
    model.eval()
    report_groups, boosts = {}, {}
    rapidities = np.linspace(-rapidity_max, rapidity_max, rapidity_steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", eq.SpectrumIncompleteWarning)
        for name, kind in zip(groups, kinds, strict=True):
            if isinstance(kind, str):
                boosts[name] = _boost(model, momenta, name, rapidities, batch_size)
                continue
            grid = (grids or {}).get(name) or kind.default_grid()
            if grid.group.name != kind.engine:
                raise JetAuditError(
                    f"group {name} acts as {kind.engine}; grid '{grid.name}' is on "
                    f"{grid.group.name}"
                )
            lam = grid.exact_degree if max_lambda is None else max_lambda
            if lam > grid.exact_degree or lam < 0:
                raise JetAuditError(
                    f"max lambda {lam} is beyond what grid '{grid.name}' resolves for {name} "
                    f"(exact_degree {grid.exact_degree})"
                )
            report_groups[name] = _compact(
                model, momenta, labels, kind, grid, lam, layers, batch_size, convergence_jets
            )
    n_constituents = int((momenta[..., 0] > 0).sum())
    report = {
        "model": source,
        "model_kind": getattr(model, "kind", type(model).__name__),
        "model_dtype": "float32",
        "jets": len(momenta),
        "constituents": n_constituents,
        "structures": len(momenta),
        "atoms": n_constituents,
        "groups": report_groups,
        "boosts": boosts,
    }
    if report_groups:  # the contract's top-level keys: the first compact group
        primary = next(iter(report_groups))
        report.update(
            primary_group=primary,
            grid=report_groups[primary]["grid"],
            max_lambda=report_groups[primary]["max_lambda"],
            outputs=report_groups[primary]["outputs"],
            layers=report_groups[primary]["layers"],
        )
    report["seconds"] = time.perf_counter() - start
    return report
