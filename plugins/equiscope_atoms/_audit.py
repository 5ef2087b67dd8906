"""Post-hoc symmetry audit of a metatomic model over a data set.

:class:`MetatomicAdapter` plugs a :class:`~equiscope_atoms.models.LoadedModel` (an
exported ``.pt`` or a metatrain ``.ckpt``) into the core engine
(:func:`equiscope.audit.run_audit`): it evaluates each structure's orbit (see
:mod:`.orbit`), adds conservative forces and stress from the energy, finds the
labels, and checks the options against the model. :func:`audit` is the one-call API.
"""

from __future__ import annotations

from . import _guard  # noqa: F401  (first: one line on metatensor's import trap)

# isort: split

import sys
from typing import ClassVar

import torch
from metatomic.torch import System

import equiscope as eq
from equiscope.audit import AuditOptionError, run_audit
from equiscope.shards import Shards

from ._batching import BatchPlanner
from .data import Structure
from .models import LoadedModel
from .orbit import evaluate_orbit

__all__ = ["AuditOptionError", "MetatomicAdapter", "audit"]

_DERIVED = ("forces", "stress")


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


class MetatomicAdapter:
    """A metatomic model on the orbits of structures, for :func:`equiscope.audit.run_audit`.

    Outputs are the model's declared outputs plus ``forces`` and ``stress`` from the
    energy (one backward pass per model call); ``model.totals`` are audited as
    structure totals. Copies per call: ``batch_size``, or (``None``) the fastest size
    within ``max_memory`` bytes, measured once per structure size (see
    :func:`~equiscope_atoms.orbit.evaluate_orbit`)."""

    words: ClassVar[dict] = {"sample": "structure", "samples": "structures"}
    derived: ClassVar[dict] = {"forces": "energy", "stress": "energy"}
    symmetrizable = True  # `equiscope symmetrize` wraps this kind of model

    def __init__(
        self, model: LoadedModel, *, batch_size: int | None = None, max_memory: int | None = None
    ):
        try:
            self.planner = BatchPlanner(batch_size=batch_size, max_memory=max_memory)
        except ValueError as error:
            raise AuditOptionError(str(error)) from None
        self.model = model
        self.source = model.source
        self.dtype = model.dtype
        self.layers = model.layers

    def outputs(self, samples: list[Structure], requested: list[str] | None) -> list[str]:
        model = self.model
        available = model.auditable_outputs()
        has_energy = "energy" in available
        periodic = all(s.periodic for s in samples)
        derived = ["forces"] if has_energy else []
        derived += ["stress"] if has_energy and periodic else []
        if requested is None:
            requested = available + derived
        unknown = [n for n in requested if n not in available + derived]
        if unknown:
            why = ""
            if "stress" in unknown and has_energy and not periodic:
                why = " (stress needs every structure periodic with a cell)"
            raise AuditOptionError(
                f"unknown output(s) {', '.join(unknown)}{why}; this model offers: "
                + ", ".join(available + derived)
            )
        audited = [n for n in requested if n in available]
        unknown_totals = sorted(name for name in model.totals if name not in audited)
        if unknown_totals:
            raise AuditOptionError(
                f"totals asked for {', '.join(unknown_totals)}, which the audit does not "
                f"evaluate (model outputs audited: {', '.join(audited)})"
            )
        for name in sorted(model.totals):
            if name.split("/")[0] == "energy" or model.outputs[name].sample_kind == "system":
                raise AuditOptionError(f"totals asked for {name}, which is audited per structure")
        self._check_labels(samples, requested)
        return list(requested)

    def check_layers(self, layers: list[str]) -> None:
        model = self.model
        unknown = [p for p in layers if p not in model.layers and model.hook_target(p) is None]
        if unknown:
            offered = ", ".join(model.layers) or "none (exported models run in TorchScript)"
            raise AuditOptionError(f"unknown layer(s) {', '.join(unknown)}; offered: {offered}")

    def size(self, sample: Structure) -> int:
        return sample.n_atoms

    def evaluate(self, sample: Structure, grid, *, outputs, layers=(), max_lambda=None):
        return evaluate_orbit(
            self.model,
            sample.system,
            grid,
            outputs=[n for n in outputs if n not in _DERIVED],
            forces="forces" in outputs,
            stress="stress" in outputs,
            layers=layers,
            max_lambda=max_lambda,
            planner=self.planner,
        )

    def jittered(self, sample: Structure, eps: float, generator) -> Structure:
        system = sample.system
        positions, cell = system.positions.to(torch.float64), system.cell.to(torch.float64)
        scale = eps * positions.norm(dim=1, keepdim=True)
        positions = positions + scale * torch.randn(
            positions.shape, generator=generator, dtype=torch.float64
        )
        cell = cell + eps * cell.norm(dim=1, keepdim=True) * torch.randn(
            3, 3, generator=generator, dtype=torch.float64
        )
        moved = System(types=system.types, positions=positions, cell=cell, pbc=system.pbc)
        return Structure(system=moved, index=sample.index)

    def reference(self, sample: Structure, name: str):
        return _reference(sample, name)

    def unit(self, name: str) -> str:
        return self.model.output_unit(name)

    def describe(self, sample: Structure) -> str:
        """The chemical formula of the structure (e.g. ``"CH4O"``)."""
        from ase.data import chemical_symbols
        from ase.formula import Formula

        types = sample.system.types.tolist()
        if not all(0 < z < len(chemical_symbols) for z in types):
            return f"{len(types)} atoms"
        return Formula.from_list([chemical_symbols[z] for z in types]).format("hill")

    def _check_labels(self, structures, outputs) -> None:
        """Every label names an audited output and has as many values as the output has
        in its structure (per structure, or per atom times the atoms); the model runs
        once, on the first structure as it is, to tell. Before any sharding: every rank
        agrees."""
        labelled = sorted({name for structure in structures for name in structure.labels})
        if not labelled:
            return
        first = structures[0]
        result = self.evaluate(first, eq.Grid.identity(), outputs=outputs)
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


def audit(
    model: LoadedModel,
    structures: list[Structure],
    *,
    grid: eq.Grid | str | None = None,
    max_lambda: int | None = None,
    outputs: list[str] | None = None,
    layers: list[str] | None = None,
    batch_size: int | None = None,
    max_memory: int | None = None,
    convergence_structures: int = 1,
    progress: bool = True,
    shards: Shards | None = None,
    **estimate,
) -> dict:
    """Audit ``model`` on ``structures``; returns the report as a dict.

    ``grid=None`` (the default) estimates each output's equivariance RMSE with a 95 %
    interval and its spectrum, without bias, from randomly oriented octahedral grids
    (``estimate``: ``precision``, ``replicates``, ``max_replicates``,
    ``estimate_grid``, ``seed``; see :func:`equiscope.audit.run_audit`); a
    :class:`~equiscope.Grid` is used as it is; ``"auto"`` refines Lebedev grids until
    the RMSE changes by less than 1 % on the first structures. ``layers=None``
    captures every layer the model exposes. ``batch_size`` copies go into one model
    call; by default (``None``) the fastest size within ``max_memory`` bytes (default:
    half the available memory), found by measurement.

    ``shards`` (e.g. ``Shards.current()`` inside a ``torchrun`` process group): each
    process audits one contiguous block of ``structures``, of about equal atom counts,
    and every process returns the merged report, the one a single process gives. The
    grid-convergence probe runs on rank 0 and its result is broadcast; an error on one
    rank is raised on all. Default: this process audits everything alone.
    """
    if not structures:
        raise AuditOptionError("no structures to audit")
    leader = shards is None or shards.leader
    if outputs is None and leader and "energy" in model.auditable_outputs():
        first = next((s for s in structures if not s.periodic), None)
        if first is not None:
            print(
                f"equiscope: stress is not audited: structure {first.index} of the data is "
                "not periodic (stress needs every structure periodic with a cell)",
                file=sys.stderr,
            )
    return run_audit(
        MetatomicAdapter(model, batch_size=batch_size, max_memory=max_memory),
        structures,
        grid=grid,
        max_lambda=max_lambda,
        outputs=outputs,
        layers=layers,
        convergence_structures=convergence_structures,
        progress=progress,
        shards=shards,
        **estimate,
    )
