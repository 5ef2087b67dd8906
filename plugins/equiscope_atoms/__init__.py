"""Atomistic adapter: metatomic systems and models on equiscope grids.

Turns a structure into its group orbit (positions and cell transformed, pair
vectors recomputed) and a metatomic model (exported ``.pt`` or metatrain ``.ckpt``)
into responses on that orbit, so the group-generic metrics of :mod:`equiscope`
apply; :func:`audit` runs this over a data set and :func:`write_report` writes the
result for people to read.
"""

from .audit import AuditOptionError, audit
from .data import DataError, Structure, read_structures
from .models import LoadedModel, ModelLoadError, load_model, wrap_model
from .molecules import g2_molecules, generate_xtb_molecules
from .orbit import OrbitResult, OutputKind, evaluate_orbit, transformed_system
from .pet import tiny_pet

__all__ = [
    "AuditOptionError",
    "DataError",
    "LoadedModel",
    "ModelLoadError",
    "OrbitResult",
    "OutputKind",
    "Structure",
    "audit",
    "evaluate_orbit",
    "g2_molecules",
    "generate_xtb_molecules",
    "load_model",
    "read_structures",
    "tiny_pet",
    "transformed_system",
    "wrap_model",
]
