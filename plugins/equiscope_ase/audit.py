"""Audit any ASE calculator: the adapter between ``Atoms`` + ``Calculator`` and the
core audit engine.

Every transformed copy ``g x`` (:func:`~equiscope_ase._transform.transformed_atoms`,
right-handed cells for improper elements) is one calculator call. Outputs: the
energy (reported per atom), forces, the stress (when every structure has a 3D
periodic cell) and array results the user declares with how they transform,
``{"dipole": "vector", "charges": "scalar"}``. Responses are kept in the direct
frame, ``u(g) = f(g x)``, rows first, then components:

- per structure: energy ``[n_grid, 1, 1]``, a vector ``[n_grid, 1, 3]``, the stress or
  another rank-2 tensor ``[n_grid, 1, 3, 3]``;
- per atom: forces ``[n_grid, n_atoms, 3]``, a scalar ``[n_grid, n_atoms, 1]``.

Pseudovectors (irrep ``(1, -1)``) are kept in metatensor's spherical order
``(y, z, x)``. Imports ASE, numpy, torch and equiscope's core only, never
metatensor or metatomic.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

import equiscope as eq
from equiscope.audit import AuditOptionError, OrbitResult, OutputKind

from ._transform import stress_matrix, transformed_atoms

__all__ = [
    "IRREPS",
    "AtomsSample",
    "CalculatorAdapter",
    "CalculatorError",
    "DataError",
    "FactoryError",
    "audit_calculator",
    "load_factory",
    "parse_outputs",
    "read_atoms",
]

# declared irrep -> (the engine's irrep, number of Cartesian components)
IRREPS = {
    "scalar": ("scalar", ()),
    "pseudoscalar": ((0, -1), ()),
    "vector": ("vector", (3,)),
    "pseudovector": ((1, -1), (3,)),
    "rank2": ("rank2", (3, 3)),
}
_BUILT_IN = ("energy", "forces", "stress")
_UNITS = {"energy": "eV", "forces": "eV/Å", "stress": "eV/Å^3"}
_YZX = [1, 2, 0]  # Cartesian (x, y, z) -> metatensor's spherical order for lambda = 1


class DataError(ValueError):
    """The data file is missing, unreadable, empty or holds invalid structures."""


class FactoryError(ValueError):
    """A ``MODULE:FACTORY`` spec does not give an ASE calculator."""


class CalculatorError(AuditOptionError):
    """The calculator failed on a transformed copy, or does not offer an output."""


@dataclasses.dataclass(frozen=True)
class AtomsSample:
    """One structure to audit: its position in the data, the ``Atoms`` (without a
    calculator) and the values stored with it (``info``, ``arrays`` and a file
    reader's results, the latter first), where reference labels are looked up."""

    index: int
    atoms: object
    labels: dict = dataclasses.field(default_factory=dict, compare=False)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {line[:200]}" if line else type(error).__name__


def _stored(atoms) -> dict:
    """Values stored with the structure: ``info``, ``arrays`` (but the positions and
    numbers) and the results of a file reader's ``SinglePointCalculator`` (never those
    of a live calculator), in increasing priority."""
    from ase.calculators.singlepoint import SinglePointCalculator

    stored = dict(atoms.info)
    stored.update({k: v for k, v in atoms.arrays.items() if k not in ("numbers", "positions")})
    if isinstance(atoms.calc, SinglePointCalculator):
        stored.update(atoms.calc.results)
    return stored


def _sample(index: int, atoms, where: str) -> AtomsSample:
    if len(atoms) == 0:
        raise DataError(f"{where} has no atoms")
    if not np.isfinite(atoms.positions).all():
        raise DataError(f"{where} has NaN or infinite positions")
    if not np.isfinite(atoms.cell.array).all():
        raise DataError(f"{where} has a NaN or infinite cell")
    copy = atoms.copy()
    copy.calc = None
    return AtomsSample(index, copy, _stored(atoms))


def read_atoms(
    path: str | Path, *, limit: int | None = None, sample: str = "first", seed: int = 0
) -> list[AtomsSample]:
    """The structures in ``path`` (any format ASE reads), streamed with
    ``ase.io.iread``: all, or ``limit`` of them, the first (nothing after them is read)
    or, with ``sample="random"``, drawn by seeded reservoir sampling over the whole file
    (at most ``limit`` held); raise :class:`DataError` naming the file on a missing
    file, a directory, an unreadable format or no structures."""
    import ase.io

    from equiscope.sampling import SAMPLE_MODES, choose

    path = Path(path)
    if path.is_dir():
        raise DataError(f"data file {path} is a directory")
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DataError(f"structure limit must be a positive integer, got {limit!r}")
    if sample not in SAMPLE_MODES:
        raise DataError(f"unknown sampling '{sample}'; expected one of {', '.join(SAMPLE_MODES)}")
    if path.stat().st_size == 0:
        raise DataError(f"data file {path} holds no structures (it is empty)")
    try:
        frames = list(choose(ase.io.iread(str(path), index=":"), limit, how=sample, seed=seed))
    except Exception as error:
        raise DataError(
            f"data file {path} could not be read by ASE ({_first_line(error)})"
        ) from None
    samples = [_sample(index, atoms, f"{path} frame {index}") for index, atoms in frames]
    if not samples:
        raise DataError(f"data file {path} holds no structures")
    return samples


def samples_from(structures) -> list[AtomsSample]:
    """Samples from a list of ``Atoms`` (or one), from samples, or from a data file."""
    import ase

    if isinstance(structures, (str, Path)):
        return read_atoms(structures)
    if isinstance(structures, ase.Atoms):
        structures = [structures]
    samples = []
    for index, item in enumerate(structures):
        if isinstance(item, AtomsSample):
            samples.append(item)
        elif isinstance(item, ase.Atoms):
            samples.append(_sample(index, item, f"structure {index}"))
        else:
            raise DataError(f"structure {index} is a {type(item).__name__}, not ase.Atoms")
    if not samples:
        raise DataError("no structures to audit")
    return samples


def parse_outputs(text: str | None) -> tuple[list[str] | None, dict[str, str]]:
    """``"energy,dipole:vector,charges:scalar"`` -> the outputs to audit (``None``
    when only declarations are given: then every available output) and the declared
    irreps ``{"dipole": "vector", "charges": "scalar"}``."""
    if text is None or not text.strip():
        return None, {}
    names, declared = [], {}
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            raise ValueError(f"--outputs {text!r} has an empty entry")
        name, _, irrep = entry.partition(":")
        name, irrep = name.strip(), irrep.strip()
        if not name:
            raise ValueError(f"--outputs entry {entry!r} has no output name")
        if name in names:
            raise ValueError(f"--outputs names '{name}' twice")
        if ":" in entry:
            if name in _BUILT_IN:
                raise ValueError(
                    f"--outputs: '{name}' is built in; give it without an irrep ('{name}')"
                )
            if irrep not in IRREPS:
                raise ValueError(
                    f"--outputs: unknown irrep '{irrep}' for '{name}'; expected one of "
                    + ", ".join(IRREPS)
                )
            declared[name] = irrep
        elif name not in _BUILT_IN:
            raise ValueError(
                f"--outputs: '{name}' needs an irrep, NAME:IRREP with IRREP one of "
                + ", ".join(IRREPS)
            )
        names.append(name)
    selected = names if any(name in _BUILT_IN for name in names) else None
    return selected, declared


def load_factory(spec: str):
    """The ASE calculator returned by the callable ``FACTORY`` of module ``MODULE``
    (``"MODULE:FACTORY"``, with the current directory importable, as ``uvicorn``
    does); raise :class:`FactoryError` with a one-line message otherwise."""
    from ase.calculators.calculator import BaseCalculator

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise FactoryError(f"model {spec!r} is not MODULE:FACTORY")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise FactoryError(
            f"{spec}: module '{module_name}' could not be imported ({_first_line(error)})"
        ) from None
    factory = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise FactoryError(f"{spec}: module '{module_name}' has no attribute '{attribute}'")
        factory = getattr(factory, part)
    if not callable(factory):
        raise FactoryError(f"{spec}: '{attribute}' is a {type(factory).__name__}, not callable")
    try:
        calculator = factory()
    except Exception as error:
        raise FactoryError(f"{spec}: calling {attribute}() raised {_first_line(error)}") from None
    if not isinstance(calculator, BaseCalculator):
        raise FactoryError(
            f"{spec}: {attribute}() returned a {type(calculator).__name__}, not an ASE "
            "calculator (ase.calculators.calculator.BaseCalculator)"
        )
    return calculator


def _periodic(atoms) -> bool:
    return bool(np.all(atoms.pbc)) and atoms.cell.rank == 3


class CalculatorAdapter:
    """The audit engine's view of an ASE calculator (see :mod:`equiscope.audit`).

    :param calculator: any ``ase.calculators.calculator.BaseCalculator``
    :param declared: array results to audit beside energy, forces and stress, with how
        they transform: ``{"dipole": "vector", "charges": "scalar"}`` (irreps
        ``scalar``, ``pseudoscalar``, ``vector``, ``pseudovector``, ``rank2``); one
        value per structure or per atom, told from the result's shape
    :param model_dtype: the calculator's working precision (default float64); the
        measured noise floor jitters the inputs at its machine epsilon
    :param labels: keys of the reference values of declared outputs in each
        structure's ``info``, ``arrays`` or stored results (default: their names)
    :param source: the model's name in the report
    """

    def __init__(
        self,
        calculator,
        *,
        declared: dict[str, str] | None = None,
        model_dtype: torch.dtype | str | None = None,
        labels: dict[str, str] | None = None,
        source: str | None = None,
    ):
        from ase.calculators.calculator import BaseCalculator

        if not isinstance(calculator, BaseCalculator):
            raise TypeError(
                f"expected an ASE calculator (ase.calculators.calculator.BaseCalculator), "
                f"got {type(calculator).__name__}"
            )
        self.calculator = calculator
        self.words = {"sample": "structure", "samples": "structures"}
        self.derived = {"forces": "energy", "stress": "energy"}
        self.symmetrizable = "calculator"  # EquiscopeCalculator averages any calculator
        self.layers: list[str] = []
        self.declared = dict(declared or {})
        for name, irrep in self.declared.items():
            if name in _BUILT_IN:
                raise ValueError(f"output '{name}' is built in and cannot be declared")
            if irrep not in IRREPS:
                raise ValueError(
                    f"unknown irrep '{irrep}' for output '{name}'; expected one of "
                    + ", ".join(IRREPS)
                )
        self.dtype = _dtype(model_dtype)
        self.label_keys = dict(labels or {})
        self.source = source or type(calculator).__name__
        self.notes: list[str] = []

    def describe(self, sample) -> str:
        """The chemical formula of the structure (e.g. ``"Cu8"``)."""
        return sample.atoms.get_chemical_formula(mode="hill")

    # -- what to audit ---------------------------------------------------------------
    def _implemented(self) -> list[str]:
        return list(getattr(self.calculator, "implemented_properties", []) or [])

    def outputs(self, samples: list, requested: list[str] | None) -> list[str]:
        """Energy, forces and stress (every structure periodic) where the calculator
        implements them, then the declared outputs; ``requested`` picks among them."""
        implemented = self._implemented()
        base = [name for name in ("energy", "forces") if name in implemented]
        aperiodic = [s.index for s in samples if not _periodic(s.atoms)]
        stress_note = ""
        if "stress" in implemented:
            if aperiodic and len(aperiodic) < len(samples):
                shown = ", ".join(map(str, aperiodic[:5])) + (" ..." if len(aperiodic) > 5 else "")
                stress_note = (
                    f"stress needs every structure periodic with a 3D cell; "
                    f"structure(s) {shown} are not"
                )
            elif not aperiodic:
                base.append("stress")
        missing = [name for name in self.declared if implemented and name not in implemented]
        if missing:
            raise CalculatorError(
                f"the calculator {self.source} does not implement {', '.join(missing)} "
                f"(it implements: {', '.join(implemented)})"
            )
        available = base + list(self.declared)
        if requested is None:
            if stress_note:
                self.notes.append(stress_note + ": the stress is left out")
                warnings.warn(stress_note + ": the stress is left out", stacklevel=2)
            return available
        unknown = [name for name in requested if name not in available]
        if unknown:
            why = f" ({stress_note})" if "stress" in unknown and stress_note else ""
            raise CalculatorError(
                f"unknown output(s) {', '.join(unknown)}{why}; the calculator offers: "
                + ", ".join(available)
            )
        return list(requested)

    def check_layers(self, layers: list[str]) -> None:
        """A calculator has no hidden layers to capture."""
        if layers:
            raise AuditOptionError(
                f"an ASE calculator offers no hidden layers (asked for {', '.join(layers)})"
            )

    def size(self, sample: AtomsSample) -> int:
        return len(sample.atoms)

    def unit(self, name: str) -> str:
        return _UNITS.get(name, "")

    # -- evaluation --------------------------------------------------------------------
    def _layout(self, name: str, value, n_atoms: int) -> tuple[OutputKind, torch.Tensor]:
        """One copy's result as a float64 tensor in the response layout, and its kind;
        a declared output is per structure or per atom by its shape."""
        value = np.array(value, dtype=np.float64)
        if name == "energy":
            return OutputKind("scalar", True, True), torch.tensor(
                [[float(value)]], dtype=torch.float64
            )
        if name == "forces":
            return OutputKind("vector", False, False), torch.from_numpy(value.reshape(n_atoms, 3))
        if name == "stress":
            return OutputKind("rank2", True, False), torch.from_numpy(stress_matrix(value))[None]
        declared = self.declared[name]
        irrep, components = IRREPS[declared]
        if declared == "rank2" and value.shape[-1:] == (6,):  # Voigt, as ASE's stresses
            voigt = value.reshape(-1, 6)
            value = np.stack([stress_matrix(v) for v in voigt]).reshape(*value.shape[:-1], 3, 3)
        if value.shape in (components, (1, *components)):
            kind, rows = OutputKind(irrep, True, False), 1
        elif value.shape == (n_atoms, *components) or value.shape == (n_atoms, *components, 1):
            kind, rows = OutputKind(irrep, False, False), n_atoms
        else:
            raise CalculatorError(
                f"output '{name}' (declared {declared}) has shape {tuple(value.shape)}: "
                f"neither one value per structure {components} nor one per atom "
                f"{(n_atoms, *components)}"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(value)).reshape(rows, *(components or (1,)))
        if declared == "pseudovector":
            tensor = tensor[..., _YZX]
        return kind, tensor

    def _call(self, atoms, outputs: list[str], where: str) -> dict:
        from ase.calculators.calculator import all_changes

        calculator = self.calculator
        try:
            if calculator.calculation_required(atoms, list(outputs)):
                # one call for every output, as ASE's get_property would make it
                calculator.calculate(atoms, list(outputs), all_changes)
            return {name: calculator.get_property(name, atoms) for name in outputs}
        except Exception as error:
            raise CalculatorError(
                f"the calculator {self.source} failed on {where} ({_first_line(error)})"
            ) from None

    def evaluate(
        self,
        sample: AtomsSample,
        grid: eq.Grid,
        *,
        outputs: list[str],
        layers: list[str] = (),
        max_lambda: int | None = None,
    ) -> OrbitResult:
        """The calculator on every copy ``g x`` of the grid, one call each."""
        self.check_layers(layers)
        n_atoms = len(sample.atoms)
        rotations = grid.rotations.to(torch.float64).numpy()
        collected: dict[str, list[torch.Tensor]] = {name: [] for name in outputs}
        kinds: dict[str, OutputKind] = {}
        for element, matrix in enumerate(rotations):
            copy = transformed_atoms(sample.atoms, matrix)
            where = f"structure {sample.index}, grid element {element}"
            results = self._call(copy, outputs, where)
            for name in outputs:
                kind, value = self._layout(name, results[name], n_atoms)
                kinds[name] = kind
                collected[name].append(value)
        responses = {name: torch.stack(values) for name, values in collected.items()}
        return OrbitResult(responses=responses, kinds=kinds, layers={})

    def jittered(self, sample: AtomsSample, eps: float, generator: torch.Generator):
        """The sample with every position and cell vector moved by ``eps |x| N(0, 1)``
        per coordinate (the rounding error of a rotation at that precision)."""
        atoms = sample.atoms.copy()
        positions = atoms.positions
        scale = eps * np.linalg.norm(positions, axis=1, keepdims=True)
        noise = torch.randn(positions.shape, generator=generator, dtype=torch.float64).numpy()
        atoms.positions = positions + scale * noise
        if atoms.cell.rank:
            cell = atoms.cell.array
            noise = torch.randn(3, 3, generator=generator, dtype=torch.float64).numpy()
            scale = eps * np.linalg.norm(cell, axis=1, keepdims=True)
            atoms.set_cell(cell + scale * noise, scale_atoms=False)
        return AtomsSample(sample.index, atoms, sample.labels)

    def reference(self, sample: AtomsSample, name: str) -> torch.Tensor | None:
        """The structure's reference values of ``name`` in the response layout, or
        ``None``: stored under its name (declared outputs: or under ``labels[name]``)."""
        key = self.label_keys.get(name, name)
        if key not in sample.labels:
            return None
        try:
            values = self._layout(name, sample.labels[key], len(sample.atoms))[1]
        except (TypeError, ValueError) as error:
            raise DataError(
                f"structure {sample.index}: label '{key}' of {name} does not fit "
                f"({_first_line(error)})"
            ) from None
        # the engine reads labels in metatensor's layout [rows, *components, properties]
        return values.movedim(1, -1) if values.dim() > 2 else values


def _dtype(value) -> torch.dtype:
    if value is None:
        return torch.float64
    if isinstance(value, torch.dtype):
        if not value.is_floating_point:
            raise ValueError(f"model dtype must be a floating-point type, got {value}")
        return value
    names = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16}
    names.update({"bfloat16": torch.bfloat16})
    if value not in names:
        raise ValueError(f"unknown model dtype '{value}'; expected one of {', '.join(names)}")
    return names[value]


def audit_calculator(
    calculator,
    structures,
    *,
    grid: eq.Grid | None = None,
    outputs: list[str] | None = None,
    declared: dict[str, str] | None = None,
    model_dtype: torch.dtype | str | None = None,
    labels: dict[str, str] | None = None,
    max_lambda: int | None = None,
    convergence_structures: int = 1,
    shards=None,
    progress: bool = False,
    **estimate,
) -> dict:
    """Audit an ASE calculator on ``structures`` (a list of ``Atoms`` or the path of a
    data file) and return the report dict of :func:`equiscope.audit.run_audit`
    (``grid=None``: the unbiased estimate with a 95 % interval; ``estimate`` takes
    its options). ``declared``, ``model_dtype`` and ``labels`` as for
    :class:`CalculatorAdapter`."""
    from equiscope.audit import run_audit

    adapter = CalculatorAdapter(
        calculator, declared=declared, model_dtype=model_dtype, labels=labels
    )
    return run_audit(
        adapter,
        samples_from(structures),
        grid=grid,
        max_lambda=max_lambda,
        outputs=outputs,
        convergence_structures=convergence_structures,
        shards=shards,
        progress=progress,
        **estimate,
    )
