"""Defaults of symmetrised heads, shared by every adapter (one place).

The octahedral group with inversion (48 evaluations per call) removes lambda = 1,
2, 3, 5 and every parity-odd sector exactly; ``equiscope symmetrize``,
``symmetrize_model`` and ``EquiscopeCalculator`` all default to it.

Heads evaluate their copies in chunks of at most ``DEFAULT_ATOMS_PER_CALL`` atoms per
inner call (at least one copy), which bounds the memory of a step with forces and
stress; 0 evaluates every copy in one call.
"""

__all__ = [
    "DEFAULT_ATOMS_PER_CALL",
    "DEFAULT_GRID",
    "DEFAULT_INVERSION",
    "DEFAULT_MAX_LAMBDA",
    "DEFAULT_MODE",
    "HEAD_MARKER",
    "HEAD_MODES",
]

HEAD_MODES = ("average", "random", "random-group", "diagnose")
DEFAULT_MODE = "average"
DEFAULT_GRID = "octahedral"
DEFAULT_INVERSION = True
DEFAULT_MAX_LAMBDA = 3
DEFAULT_ATOMS_PER_CALL = 128
# key of an exported model's ``metadata().extra`` that marks a symmetrised head
HEAD_MARKER = "equiscope::head"
