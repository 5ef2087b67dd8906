"""Load a model to audit: an exported metatomic ``.pt`` or a metatrain ``.ckpt``.

Both become a :class:`LoadedModel` with one calling convention, the declared
outputs, the atomic types, the dtype, and (for checkpoints evaluated in Python)
the hidden layers whose features can be captured.
"""

from __future__ import annotations

from . import _guard  # noqa: F401  (first: one line on metatensor's import trap)

# isort: split

import dataclasses
import re
import warnings
from pathlib import Path

import torch
from metatomic.torch import ModelEvaluationOptions, ModelOutput

__all__ = ["LoadedModel", "ModelLoadError", "load_model", "pretty_unit", "type_names", "wrap_model"]

_SKIPPED_PREFIXES = ("mtt::aux::", "mtt::feature::", "feature", "o3::")  # "feature(s)"


class ModelLoadError(ValueError):
    """The model file is missing, unreadable or not a metatomic/metatrain model."""


_ANGSTROM = re.compile(r"(?<![A-Za-z])(?:[Aa]ngstroms?|ANGSTROMS?|A)(?![A-Za-z])")


def pretty_unit(unit: str) -> str:
    """``unit`` as a person reads it: angstrom (``"Angstrom"``, ``"A"``) as ``Å``."""
    return _ANGSTROM.sub("Å", unit or "").strip()


def type_names(types) -> str:
    """Atomic types as element symbols with their numbers, e.g. ``"Zn (30), Cu (29)"``
    (a number that is no element stays a number)."""
    from ase.data import chemical_symbols

    return ", ".join(
        f"{chemical_symbols[z]} ({z})" if 0 < z < len(chemical_symbols) else str(z)
        for z in (int(t) for t in types)
    )


@dataclasses.dataclass
class LoadedModel:
    """A model with a uniform ``evaluate(systems, outputs)``.

    ``totals``: outputs the model declares per atom that are audited as structure
    totals, the sum of their per-atom contributions (a molecule's dipole, a direct
    stress: the per-atom split of such targets is not observable). Energies always are.
    """

    module: torch.nn.Module
    exported: bool
    outputs: dict[str, ModelOutput]
    atomic_types: list[int]
    dtype: torch.dtype
    length_unit: str
    source: str
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    totals: set[str] = dataclasses.field(default_factory=set)

    def to(self, device: str | torch.device) -> LoadedModel:
        """Move the model to ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...)."""
        try:
            device = torch.device(device)
            if device.type == "cuda" and not torch.cuda.is_available():
                raise RuntimeError("CUDA is not available on this machine")
            self.module = self.module.to(device)
        except RuntimeError as error:
            message = str(error).strip().splitlines()[0]
            raise ModelLoadError(f"device '{device}' cannot be used: {message}") from None
        self.device = device
        return self

    def output_unit(self, name: str) -> str:
        """The declared unit of output ``name`` (``""`` when the model declares none);
        ``forces`` and ``stress``, derived from the energy, in energy / length and
        energy / length^3."""
        if name in ("forces", "stress"):
            energy = self.outputs.get("energy")
            unit = pretty_unit(energy.unit if energy is not None else "")
            if not unit:
                return ""
            unit = f"({unit})" if "/" in unit else unit
            length = pretty_unit(self.length_unit) or "Å"
            return f"{unit}/{length}" if name == "forces" else f"{unit}/{length}^3"
        declared = self.outputs.get(name.split("[")[0])
        return pretty_unit(declared.unit) if declared is not None else ""

    def requested_neighbor_lists(self):
        return self.module.requested_neighbor_lists()

    @property
    def layers(self) -> list[str]:
        """Hidden layers captured by default: PET's node and edge tokens of every GNN
        layer (``mtt::feature::<path>`` outputs). Any submodule of a model evaluated in
        Python can also be captured by a forward hook, see :meth:`hook_target`."""
        if self.exported:
            return []
        backend = getattr(self.module, "backend", None)
        layers = getattr(backend, "gnn_layers", None)
        if layers is None:
            return []
        return [f"gnn_layers.{i}_{kind}" for i in range(len(layers)) for kind in ("node", "edge")]

    def hook_target(self, path: str) -> tuple[torch.nn.Module, int | None] | None:
        """The submodule and tuple index of a forward-hook layer ``"<module path>"`` or
        ``"<module path>[i]"`` (the i-th tensor of a tuple output); ``None`` if there is
        no such submodule (or the model runs in TorchScript, where hooks cannot be added)."""
        if self.exported:
            return None
        name, index = path, None
        if path.endswith("]") and "[" in path:
            name, _, rest = path[:-1].rpartition("[")
            if not rest.isdigit():
                return None
            index = int(rest)
        module = dict(self.module.named_modules()).get(name)
        if module is None or name == "":
            return None
        return module, index

    def evaluate(self, systems, outputs: dict[str, ModelOutput]):
        """The model's outputs on ``systems`` (given in the model's length unit).

        An exported model whose outputs are asked by the names it declares and that
        needs no extra inputs is called through its inner module: the
        ``AtomisticModel`` wrapper would only rebuild every system to multiply it by a
        unit factor of 1 (half a millisecond per copy on a CPU, three kernel launches
        per copy on a GPU) and rename nothing. Atomic types are checked once per
        structure by :meth:`check_types` instead of on every copy."""
        if self.exported:
            if self._direct(outputs):
                return self.module.module(systems, outputs, None)
            options = ModelEvaluationOptions(length_unit=self.length_unit, outputs=outputs)
            return self.module(systems, options, check_consistency=False)
        return self.module(systems, outputs)

    def _direct(self, outputs: dict[str, ModelOutput]) -> bool:
        declared = getattr(self.module, "_model_capabilities_outputs_names", None)
        inputs = getattr(self.module, "_requested_inputs", None)
        if declared is None or inputs is None or len(inputs) > 0:
            return False
        return all(name in declared for name in outputs)

    def check_types(self, types: torch.Tensor) -> None:
        """Refuse atomic types the model does not know, naming them."""
        known = torch.tensor(self.atomic_types, dtype=types.dtype, device=types.device)
        unknown = torch.unique(types[~torch.isin(types, known)])
        if len(unknown) > 0:
            raise ValueError(
                f"atomic types {type_names(unknown.tolist())} are not known to the model "
                f"(it knows {type_names(sorted(self.atomic_types))})"
            )

    def auditable_outputs(self) -> list[str]:
        """Declared outputs, without diagnostics/features and without the
        deprecated aliases metatomic adds (e.g. ``non_conservative_forces``)."""
        names = []
        for name in self.outputs:
            current = current_quantity_name(name)
            if name.startswith(_SKIPPED_PREFIXES) or (current != name and current in self.outputs):
                continue
            names.append(name)
        return names


# metatomic's deprecated base quantity names and their current names: metatomic adds the
# old names as aliases to a model's capabilities, and keeps this table privately, so it
# is repeated here (tests/test_no_private_imports.py checks it against the installed one)
DEPRECATED_QUANTITIES = {
    "features": "feature",
    "non_conservative_forces": "non_conservative_force",
    "positions": "position",
    "momenta": "momentum",
    "masses": "mass",
    "velocities": "velocity",
    "charges": "charge",
}


def current_quantity_name(name: str) -> str:
    """``name`` with a deprecated base quantity (before any ``/``) replaced by its
    current name, as metatomic maps them."""
    base = name.split("/")[0]
    if base in DEPRECATED_QUANTITIES:
        return name.replace(base, DEPRECATED_QUANTITIES[base], 1)
    return name


def wrap_model(module, *, source: str = "<in memory>") -> LoadedModel:
    """A :class:`LoadedModel` from an ``AtomisticModel`` or a metatrain model object."""
    from metatomic.torch import AtomisticModel

    if isinstance(module, AtomisticModel) or hasattr(module, "capabilities"):
        capabilities = module.capabilities()
        return LoadedModel(
            module=module,
            exported=True,
            outputs=dict(capabilities.outputs),
            atomic_types=list(capabilities.atomic_types),
            dtype=getattr(torch, capabilities.dtype or "float64"),
            length_unit=capabilities.length_unit or "angstrom",
            source=source,
        )
    outputs = getattr(module, "outputs", None)
    info = getattr(module, "dataset_info", None)
    if outputs is None or info is None:
        raise ModelLoadError(f"{source}: not a metatomic or metatrain model")
    parameter = next(module.parameters(), None)
    return LoadedModel(
        module=module.eval(),
        exported=False,
        outputs=dict(outputs),
        atomic_types=list(info.atomic_types),
        dtype=parameter.dtype if parameter is not None else torch.float64,
        length_unit=info.length_unit or "angstrom",
        source=source,
    )


def load_model(path: str | Path) -> LoadedModel:
    """Load ``path`` (``.pt`` exported model or ``.ckpt`` metatrain checkpoint)."""
    path = Path(path)
    if path.is_dir():
        raise ModelLoadError(
            f"model {path} is a directory; give the model file (.pt or .ckpt) inside it"
        )
    if not path.is_file():
        raise ModelLoadError(f"model file {path} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from metatrain.utils.io import load_model as metatrain_load

            module = metatrain_load(str(path))
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ModelLoadError(
            f"model file {path} could not be loaded as a metatomic .pt or metatrain "
            f".ckpt ({type(error).__name__}: {first_line[:160]})"
        ) from None
    return wrap_model(module, source=str(path))
