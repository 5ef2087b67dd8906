"""``assert_equivariant``: one call in a test suite, as e3nn's, for atomistic models.

The model is evaluated through the ASE calculator interface on copies ``g x`` of the
structure for every element of a grid (right-handed cells for improper elements, see
:mod:`equiscope._copies`), the results are brought back to the input frame (energies
unchanged, forces ``F R``, stress ``R^T S R``) and compared with the results on
``x``. On failure the message names the output, its largest deviation (absolute and
relative to the output's RMS) and the dominant breaking sector ``lambda,sigma`` of
the direct responses ``f(g x)``, measured on a Lebedev grid that resolves
``max_lambda`` (only then: ``140`` more evaluations for ``max_lambda=2``).

The core imports neither ASE nor metatomic: a calculator is used through its
methods, and a metatomic model (a ``.pt`` path or an ``AtomisticModel``) is wrapped
in ``metatomic_ase.MetatomicCalculator``, imported here only for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._copies import back_transform_stress, stress_matrix, transformed_atoms
from ..audit import expected_sectors
from ..grids import Grid
from ..grids import grid as make_grid
from ..groups import sector_label
from ..metrics import sector_norms

__all__ = ["assert_equivariant"]

_KINDS = {
    "energy": "scalar",
    "free_energy": "scalar",
    "energies": "scalar",
    "forces": "vector",
    "stress": "rank2",
    "stresses": "rank2",
}


def _calculator(model_or_calculator):
    if callable(getattr(model_or_calculator, "get_property", None)):
        return model_or_calculator
    if isinstance(model_or_calculator, str | Path) or hasattr(model_or_calculator, "capabilities"):
        try:
            from metatomic_ase import MetatomicCalculator
        except ImportError as error:
            raise ImportError(
                "assert_equivariant on a metatomic model needs metatomic-ase "
                "(pip install metatomic-ase), or pass an ASE calculator"
            ) from error
        return MetatomicCalculator(model_or_calculator)
    raise TypeError(
        "assert_equivariant needs an ASE calculator, a metatomic model file or an "
        f"AtomisticModel, got {type(model_or_calculator).__name__}"
    )


def _value(calculator, name: str, atoms) -> np.ndarray:
    value = np.asarray(calculator.get_property(name, atoms), dtype=np.float64)
    if name == "stress":
        return stress_matrix(value)
    if name == "stresses":
        return np.stack([stress_matrix(s) for s in value])
    return value


def _back(name: str, value: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    kind = _KINDS[name]
    if kind == "vector":
        return value @ rotation
    if name == "stress":
        return back_transform_stress(value, rotation)
    if kind == "rank2":
        return np.stack([back_transform_stress(s, rotation) for s in value])
    return value


def _breaking_sectors(
    calculator, structure, names: list[str], inversion: bool, max_lambda: int
) -> dict[str, str]:
    """The dominant sector outside the equivariant ones of each output, from the
    direct responses on a grid that resolves ``max_lambda`` (one pass)."""
    spectral = make_grid("lebedev", degree=2 * max_lambda, inversion=inversion)
    responses = {name: [] for name in names}
    for rotation in spectral.rotations.numpy():
        copy = transformed_atoms(structure, rotation)
        for name in names:
            responses[name].append(_value(calculator, name, copy))
    weights = spectral.weights.numpy()
    found = {}
    for name in names:
        values = np.stack(responses[name])
        sectors, norms = sector_norms(values, spectral, max_lambda)
        totals = norms.reshape(len(sectors), -1).sum(1).numpy()
        total = float((weights[:, None] * values.reshape(len(values), -1) ** 2).sum())
        expected = expected_sectors(_KINDS[name], spectral.group)
        breaking = sorted(
            ((float(v), k) for k, v in zip(sectors, totals, strict=True) if k not in expected),
            reverse=True,
        )
        above = max(total - float(totals.sum()), 0.0)
        outside = sum(v for v, _ in breaking) + above
        if outside <= 1e-12 * total:
            found[name] = "none: the deviation lies inside the equivariant sector(s)"
        elif not breaking or above > breaking[0][0]:
            found[name] = (
                f"above lambda={max_lambda} ({above / outside:.0%} of the content outside "
                "the equivariant sectors; raise max_lambda to resolve it)"
            )
        else:
            value, sector = breaking[0]
            found[name] = (
                f"{sector_label(sector)} ({value / outside:.0%} of the content outside "
                "the equivariant sectors)"
            )
    return found


def assert_equivariant(
    model_or_calculator,
    structure,
    *,
    grid: str | Grid = "octahedral",
    inversion: bool = True,
    atol: float = 1e-10,
    rtol: float = 1e-6,
    outputs: list[str] | None = None,
    max_lambda: int = 2,
) -> dict[str, float]:
    """Assert that the model's outputs on ``structure`` (ASE ``Atoms``) transform as
    they should under every element of ``grid``; raise ``AssertionError`` otherwise.

    :param model_or_calculator: an ASE calculator, a metatomic model file or an
        ``AtomisticModel`` (run in metatomic-ase's ``MetatomicCalculator``)
    :param grid: a grid name (``"octahedral"``: 24 rotations, 48 with inversion) or an
        ``equiscope.Grid``
    :param inversion: include improper elements (parity-odd content fails)
    :param atol, rtol: an output passes when its largest deviation is at most
        ``atol + rtol * RMS(output)``; the defaults suit float64 models (use e.g.
        ``rtol=1e-4`` for float32 ones)
    :param outputs: among ``energy``, ``energies``, ``forces``, ``stress``,
        ``stresses``; default energy, forces and (3D periodic cells) stress
    :param max_lambda: resolution of the breaking-sector analysis on failure
    :return: the largest deviation of each output, relative to its RMS
    """
    calculator = _calculator(model_or_calculator)
    if outputs is None:
        outputs = ["energy", "forces"]
        if structure.cell.rank == 3 and all(structure.pbc):
            outputs.append("stress")
    unknown = [name for name in outputs if name not in _KINDS]
    if unknown:
        raise ValueError(f"unknown output '{unknown[0]}'; expected one of {', '.join(_KINDS)}")
    elements = grid if isinstance(grid, Grid) else make_grid(grid, inversion=inversion)
    reference = {name: _value(calculator, name, structure) for name in outputs}
    worst = {name: (0.0, 0) for name in outputs}
    for index, rotation in enumerate(elements.rotations.numpy()):
        copy = transformed_atoms(structure, rotation)
        for name in outputs:
            back = _back(name, _value(calculator, name, copy), rotation)
            deviation = float(np.abs(back - reference[name]).max())
            if deviation > worst[name][0]:
                worst[name] = (deviation, index)
    relative = {}
    failing = []
    for name in outputs:
        rms = float(np.sqrt(np.mean(reference[name] ** 2)))
        deviation, index = worst[name]
        relative[name] = deviation / rms if rms > 0 else (float("inf") if deviation else 0.0)
        if deviation > atol + rtol * rms:
            failing.append((name, deviation, index, rms))
    sectors = {}
    if failing:
        names = [name for name, *_ in failing]
        sectors = _breaking_sectors(
            calculator, structure, names, elements.group.has_improper, max_lambda
        )
    failures = []
    for name, deviation, index, rms in failing:
        improper = bool(elements.rotations[index].det() < 0)
        failures.append(
            f"'{name}' is not equivariant: largest deviation {deviation:.3e} "
            f"({relative[name]:.3e} of its RMS {rms:.3e}; allowed {atol:g} + {rtol:g} RMS) "
            f"at grid element {index} ({'improper' if improper else 'proper'}) of "
            f"'{elements.name}'; dominant breaking sector {sectors[name]}"
        )
    if failures:
        raise AssertionError("\n".join(failures))
    return relative
