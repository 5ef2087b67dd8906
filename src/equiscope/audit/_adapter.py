"""The interface between the audit engine and a domain (atoms, calculators, jets).

An adapter turns a model and its samples into direct-frame responses on a grid; the
engine does everything else (statistics, noise floor, convergence, shards, report).
Adapters live in plugins and are found through the ``equiscope.adapters`` entry-point
group, so the core never imports a plugin.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

import torch

from ..grids import Grid
from ._kinds import OrbitResult

__all__ = ["Adapter", "adapter_plugins"]


@runtime_checkable
class Adapter(Protocol):
    """A model evaluated on transformed copies of its samples.

    ``words`` names the samples for reports (``{"sample": "structure", "samples":
    "structures"}``); ``layers`` lists the hidden layers offered by default;
    ``dtype`` is the model's working precision (it sets the input jitter of the
    measured noise floor)."""

    source: str
    dtype: torch.dtype
    words: dict
    layers: list[str]

    def outputs(self, samples: list, requested: list[str] | None) -> list[str]:
        """The outputs to audit (all by default); ``AuditOptionError`` for unknown ones."""

    def size(self, sample) -> int:
        """Atoms in ``sample`` (extensive outputs are reported per atom)."""

    def evaluate(
        self,
        sample,
        grid: Grid,
        *,
        outputs: list[str],
        layers: list[str] = (),
        max_lambda: int | None = None,
    ) -> OrbitResult:
        """Responses of ``outputs`` on the orbit ``{g_i x}`` of ``grid``."""

    def jittered(self, sample, eps: float, generator: torch.Generator):
        """``sample`` with every input coordinate moved by ``eps |x|`` times a normal
        deviate: what rotating it in finite precision does."""

    def reference(self, sample, name: str) -> torch.Tensor | None:
        """Reference values (labels) of output ``name`` for ``sample``, or ``None``."""

    def unit(self, name: str) -> str:
        """The unit of output ``name`` (``""`` when unknown)."""


def adapter_plugins() -> dict:
    """The installed adapter plugins, ``{name: loaded entry point}``, from the
    ``equiscope.adapters`` entry-point group, in name order."""
    found = entry_points(group="equiscope.adapters")
    return {point.name: point for point in sorted(found, key=lambda p: p.name)}
