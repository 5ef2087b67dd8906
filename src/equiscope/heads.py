"""Defaults of symmetrised heads, shared by every adapter (one place).

The octahedral group with inversion (48 evaluations per call) removes lambda = 1,
2, 3, 5 and every parity-odd sector exactly; ``equiscope symmetrize``,
``symmetrize_model`` and ``EquiscopeCalculator`` all default to it.
"""

__all__ = [
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
# key of an exported model's ``metadata().extra`` that marks a symmetrised head
HEAD_MARKER = "equiscope::head"
