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

import math
import time
import warnings

import numpy as np
import torch

import equiscope as eq
from equiscope.audit import CONVERGENCE_RTOL, OrbitResult, OutputKind, measured_roundoff

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

__all__ = ["DEFAULT_GROUPS", "JetAuditError", "audit_tagger", "evaluate_orbit"]

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


class _LogitAdapter:
    """The tagger's logit on a set of jets, as the engine's measured noise floor sees it
    (``equiscope.audit.measured_roundoff``): every momentum component moves by its own
    float32 rounding error."""

    dtype = torch.float32

    def __init__(self, model, batch_size: int):
        self.model, self.batch_size = model, batch_size

    def jittered(self, momenta, eps: float, generator: torch.Generator):
        noise = torch.randn(momenta.shape, generator=generator, dtype=torch.float64)
        return momenta + eps * momenta.abs() * noise

    def evaluate(self, momenta, grid, *, outputs, layers=(), max_lambda=None):
        logits = _run(self.model, momenta, False, self.batch_size)[0]
        return OrbitResult({"logit": logits[None, :, None]}, {"logit": _LOGIT})


_LOGIT = OutputKind("scalar", per_structure=False, extensive=False)


def _roundoff(model, momenta, batch_size) -> float:
    """Mean squared spread of the logit under float32-sized jitters of the momenta."""
    adapter = _LogitAdapter(model, batch_size)
    squared = measured_roundoff(adapter, momenta.to(torch.float64), ["logit"], seed=0)
    return squared["logit"] / len(momenta)


class _Sums:
    """Running per-sector squared norms and totals for one response."""

    def __init__(self):
        self.norms: dict = {}
        self.total = 0.0

    def add(self, responses, grid, max_lambda):
        accumulator = eq.SpectrumAccumulator(grid, max_lambda)
        accumulator.add(responses)
        flat = accumulator.norms().reshape(len(accumulator.sectors), -1).sum(1)
        for sector, value in zip(accumulator.sectors, flat.tolist(), strict=True):
            self.norms[sector] = self.norms.get(sector, 0.0) + value
        squared = responses.reshape(responses.shape[0], -1).square().sum(1)
        self.total += float(grid.weights @ squared)

    def fractions(self) -> dict:
        norm = sum(self.norms.values())
        return {k: (v / norm if norm > 0 else 0.0) for k, v in self.norms.items()}

    def above(self) -> float:
        return (self.total - sum(self.norms.values())) / self.total if self.total else 0.0


def _compact(model, momenta, labels, group, grid, max_lambda, layers, batch_size, conv_jets):
    per_jet = max(1, batch_size // grid.size)
    a2, logit_sums, layer_sums, symmetrized, direct = [], _Sums(), {}, [], []
    for start in range(0, len(momenta), per_jet):
        chunk = momenta[start : start + per_jet]
        logits, hidden = evaluate_orbit(
            model, chunk, group, grid, hidden=layers, batch_size=batch_size
        )
        a2.append(eq.equivariance_variance(logits, grid, "scalar"))
        symmetrized.append(eq.symmetrize(logits, grid, "scalar"))
        logit_sums.add(logits, grid, max_lambda)
        for name, value in hidden.items():
            layer_sums.setdefault(name, _Sums()).add(value, grid, max_lambda)
    a2 = torch.cat(a2)
    symmetrized = torch.cat(symmetrized)
    direct = _run(model, momenta, False, batch_size)[0]
    rms = float(direct.square().mean().sqrt())
    measured = math.sqrt(_roundoff(model, momenta, batch_size))
    trivial = eq.sector_label(grid.trivial_sector)
    fractions = {eq.sector_label(k): v for k, v in logit_sums.fractions().items()}
    breaking = sorted(((k, v) for k, v in fractions.items() if k != trivial), key=lambda kv: -kv[1])
    rmse = float(a2.mean().sqrt())
    probe = momenta[:conv_jets]
    finer = eq.refine(grid)
    fine_logits, _ = evaluate_orbit(model, probe, group, finer, batch_size=batch_size)
    coarse_rmse = float(a2[: len(probe)].mean().sqrt())
    fine_rmse = float(eq.equivariance_variance(fine_logits, finer, "scalar").mean().sqrt())
    floor = max(torch.finfo(torch.float32).eps * rms, measured)
    # below the noise floor both grids measure round-off: that counts as converged
    change = abs(coarse_rmse - fine_rmse) / max(coarse_rmse, fine_rmse, 10 * floor, 1e-300)
    out = {
        "irrep": "scalar",
        "per_atom": False,
        "equivariance_rmse": rmse,
        "relative_equivariance": rmse / rms if rms else 0.0,
        "noise_floor": floor,
        "roundoff_measured": measured,
        "rms_value": rms,
        "spectrum": fractions,
        "expected_sectors": [trivial],
        "breaking_sectors": dict(breaking[:3]),
        "per_structure_equivariance": a2.sqrt().tolist(),
        "converged": change <= CONVERGENCE_RTOL,
        "convergence": {
            "grids": [grid.to_dict(), finer.to_dict()],
            "equivariance_rmse": [coarse_rmse, fine_rmse],
            "relative_change": change,
            "structures": len(probe),
        },
    }
    if labels is not None and len(np.unique(labels)) == 2:
        out["tagging"] = {
            "auc_input_frame": roc_auc(direct.numpy(), labels),
            "auc_symmetrized": roc_auc(symmetrized.numpy(), labels),
        }
    report_layers = {
        name: {
            "spectrum": {eq.sector_label(k): v for k, v in sums.fractions().items()},
            "above_max_lambda": sums.above(),
        }
        for name, sums in layer_sums.items()
    }
    return {
        "description": group.description,
        "grid": grid.to_dict(),
        "max_lambda": max_lambda,
        "outputs": {"logit": out},
        "layers": report_layers,
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
