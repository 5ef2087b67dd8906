"""The audit engine: symmetry statistics of any model over a data set.

A domain plugs in through an :class:`Adapter` (load a model, evaluate one sample's
orbit on a grid, jitter its inputs, find its labels); :func:`run_audit` does the rest
and returns the report (see :mod:`equiscope.report` to write it).
"""

from ._adapter import Adapter, AuditPlugin, adapter_plugins, find_plugin
from ._engine import CONVERGENCE_RTOL, run_audit
from ._estimate import DEFAULT_ESTIMATE_BASE, estimate_base
from ._kinds import AuditOptionError, OrbitResult, OutputKind, expected_sectors
from ._noise import JITTERS, measured_roundoff
from ._stats import OutputStats, label_layout

__all__ = [
    "CONVERGENCE_RTOL",
    "DEFAULT_ESTIMATE_BASE",
    "JITTERS",
    "Adapter",
    "AuditOptionError",
    "AuditPlugin",
    "OrbitResult",
    "OutputKind",
    "OutputStats",
    "adapter_plugins",
    "estimate_base",
    "expected_sectors",
    "find_plugin",
    "label_layout",
    "measured_roundoff",
    "run_audit",
]
