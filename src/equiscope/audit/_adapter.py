"""The interface between the audit engine and a domain (atoms, calculators, jets).

An adapter turns a model and its samples into direct-frame responses on a grid; the
engine does everything else (statistics, noise floor, convergence, shards, report).
Adapters live in plugins and are found through the ``equiscope.adapters`` entry-point
group, so the core never imports a plugin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

import torch

from ..grids import Grid
from ._kinds import OrbitResult

__all__ = ["Adapter", "AuditPlugin", "adapter_plugins"]


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


@dataclasses.dataclass(frozen=True)
class AuditPlugin:
    """How ``equiscope audit MODEL DATA`` reaches an adapter: plugins register one in
    the ``equiscope.adapters`` entry-point group. The first plugin (lowest
    ``priority``) whose ``accepts(MODEL)`` is true runs ``command(args)`` (the parsed
    ``audit`` arguments; returns the exit code, raises ``equiscope.cli.BadInput`` for
    bad input)."""

    name: str
    priority: int
    accepts: Callable[[str], bool]
    command: Callable[[object], int]
    describes: str = ""


def _load(point, failures: list[str] | None):
    try:
        return point.load()
    except Exception as error:  # a broken plugin must not stop the others
        if failures is not None:
            first = (str(error).strip().splitlines() or [""])[0]
            failures.append(f"{point.name} ({point.value}): {type(error).__name__}: {first}")
        return None


def _points():
    return sorted(entry_points(group="equiscope.adapters"), key=lambda p: p.name)


def adapter_plugins(failures: list[str] | None = None) -> list[AuditPlugin]:
    """The installed audit plugins (``equiscope.adapters`` entry points), by priority.
    A plugin that fails to import is left out; ``failures`` (if given) receives one
    line per such plugin, naming it and the error."""
    plugins = [_load(point, failures) for point in _points()]
    return sorted((p for p in plugins if p is not None), key=lambda p: (p.priority, p.name))


def find_plugin(model: str, failures: list[str] | None = None) -> AuditPlugin | None:
    """The first plugin, in priority order, that accepts ``model`` (``None`` if none).
    Loading a plugin is cheap: plugins import their heavy dependencies (metatensor,
    metatomic) only when they run, so a ``MODULE:FACTORY`` calculator never loads them."""
    for plugin in adapter_plugins(failures):
        if plugin.accepts(model):
            return plugin
    return None
