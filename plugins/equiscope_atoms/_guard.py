"""Import metatensor with a one-line error for the one known import-order trap.

``torch_geometric`` replaces ``torch.index_select`` with a Python function whose
``dim`` may be a string; metatensor-operations compiles its functions with
TorchScript when ``metatensor.torch`` loads, and that compilation then fails deep
inside TorchScript. Imported first by every module of this package that needs
metatensor, so the failure reads as one line naming the cause and the fix.
"""

import sys

try:
    import metatensor.torch  # noqa: F401
    import metatomic.torch  # noqa: F401  (loads metatensor-operations, which scripts)
except RuntimeError:
    if "torch_geometric" not in sys.modules:
        raise
    raise ImportError(
        "metatensor cannot load after torch_geometric (it replaces torch.index_select, "
        "which metatensor's TorchScript functions then fail to compile): import "
        "equiscope_atoms, metatensor or metatomic before torch_geometric; the ASE "
        "calculator path (equiscope_ase, equiscope audit MODULE:FACTORY) needs neither"
    ) from None
