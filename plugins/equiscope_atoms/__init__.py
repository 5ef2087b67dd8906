"""Atomistic adapter: metatomic systems and models on equiscope grids.

Turns a structure into its group orbit (positions and cell transformed, pair
vectors recomputed) and a metatomic model (exported ``.pt`` or metatrain ``.ckpt``)
into responses on that orbit, so the group-generic metrics of :mod:`equiscope`
apply; :func:`audit` runs this over a data set and :func:`write_report` writes the
result for people to read. Names are imported on first use.
"""

_LAZY = {
    "AuditOptionError": "._audit",
    "DataError": ".data",
    "LoadedModel": ".models",
    "ModelLoadError": ".models",
    "OrbitResult": ".orbit",
    "OutputKind": ".orbit",
    "Structure": ".data",
    "MetatomicAdapter": "._audit",
    "audit": "._audit",
    "evaluate_orbit": ".orbit",
    "g2_molecules": ".molecules",
    "generate_xtb_molecules": ".molecules",
    "load_model": ".models",
    "read_structures": ".data",
    "tiny_pet": ".pet",
    "transformed_system": ".orbit",
    "wrap_model": ".models",
}


def __getattr__(name: str):
    """Import on first use (PEP 562): loading a command or entry point of this package
    imports metatensor only when something needs it."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(_LAZY[name], __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "AuditOptionError",
    "DataError",
    "LoadedModel",
    "MetatomicAdapter",
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
