"""``EquiscopeCalculator``: a symmetrised ASE calculator around a metatomic model or
around any ASE calculator.

- **Any ASE calculator** (EMT, MACE, Orb, a metatomic-ase calculator, ...): every
  call evaluates the base calculator on the transformed copies ``g_i x`` (one call
  per copy; a calculator has no batch, right-handed cells for improper elements)
  and averages energy, forces, stress (and per-atom ``energies`` / ``stresses`` when
  asked and the base provides them) after back-transforming them: energies are
  invariant, forces come back as ``F R``, stress as ``R^T S R``. This path imports
  ASE, numpy and torch only, never metatensor or metatomic.
- **A metatomic model** (an exported ``.pt`` path or an ``AtomisticModel``): the
  model runs behind a symmetrised head inside metatomic-ase's ``MetatomicCalculator``
  (one batched forward and backward per call; see :mod:`equiscope_ase._metatomic`,
  imported only then).

Both paths give the same diagnostics (``<name>_rot_std``) and the same optional
averaging over the structure's own space group (``space_group=True``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from ase.calculators.calculator import (
    BaseCalculator,
    Calculator,
    PropertyNotImplementedError,
    all_changes,
)

import equiscope as eq
from equiscope.groups.frames import random_element
from equiscope.heads import (
    DEFAULT_ATOMS_PER_CALL,
    DEFAULT_GRID,
    DEFAULT_INVERSION,
    DEFAULT_MAX_LAMBDA,
    DEFAULT_MODE,
)

from ._averaging import orbit_average
from ._spacegroup import SpaceGroupError, space_group_average, space_group_operations
from ._transform import transformed_atoms

__all__ = ["EquiscopeCalculator"]

_ASE_MODES = ("average", "random", "random-group")
_AVERAGED = ("energy", "free_energy", "energies", "forces", "stress", "stresses")


def _is_ase_calculator(base) -> bool:
    if isinstance(base, str | Path):
        return False
    if isinstance(base, BaseCalculator):
        return True
    return callable(getattr(base, "get_property", None)) and hasattr(base, "results")


class EquiscopeCalculator(Calculator):
    """A symmetrised ASE calculator for ``base``: a metatomic model (path to an
    exported ``.pt`` or an ``AtomisticModel``) or any ASE calculator object.

    :param mode: ``"average"`` (deterministic grid average), ``"random"`` (one
        seeded Haar-random O(3) frame per call), ``"random-group"`` (the grid, a
        finite group, in a seeded random orientation per call); for metatomic models
        also ``"auto"`` (probe the energy spectrum on ``probe`` and average over the
        cheapest grid that removes every lambda above ``tolerance``) and
        ``"diagnose"``
    :param grid: ``"octahedral"`` (default; 24 rotations, 48 with inversion, removes
        lambda = 1, 2, 3, 5), ``"icosahedral"`` (60, removes 1-5, 7, 8, 9),
        ``"tetrahedral"`` or ``"lebedev"`` (with ``degree``, and ``n_inplane``), an
        ``equiscope.Grid``, or ``None`` (no rotational average: with
        ``space_group=True``, the space-group average alone)
    :param inversion: include improper elements (O(3) instead of SO(3); default
        ``True``)
    :param seed: seed of the random frames; the same seed gives the same sequence
    :param diagnostics: store ``<name>_rot_std`` for every property computed
        (``energy_rot_std``, ``energies_rot_std``, ``forces_rot_std``,
        ``stress_rot_std`` (3x3), ``stresses_rot_std`` (N, 3, 3)): the elementwise
        standard deviation of the back-transformed copies over the grid, as
        metatomic-ase's ``SymmetrizedCalculator`` stores them (``average`` and
        ``random-group`` modes)
    :param space_group: also average the results over the structure's own
        space-group operations (spglib, tolerance ``symprec`` in Angstrom): forces
        and stress get the crystal's symmetry exactly; structures that are not 3D
        periodic are left as they are, with a warning
    :param atoms_per_call: metatomic models only: atoms per call of the raw model
        (default 128, at least one copy per call), which bounds the memory of a step
        with forces and stress; 0 evaluates every copy in one call (needed for
        second derivatives through autograd)
    :param max_lambda, probe, tolerance, kwargs: metatomic models only (see
        ``equiscope_ase._metatomic.HeadCalculator``; ``device``,
        ``non_conservative``, ``additional_outputs``, ... go to metatomic-ase)

    Asking for ``stress`` of a structure without a 3D cell, or for a property the
    base calculator does not provide, raises ase's ``PropertyNotImplementedError``.
    """

    def __init__(
        self,
        base,
        *,
        mode: str = DEFAULT_MODE,
        grid: str | eq.Grid | None = DEFAULT_GRID,
        degree: int | None = None,
        n_inplane: int | None = None,
        inversion: bool = DEFAULT_INVERSION,
        seed: int = 0,
        max_lambda: int = DEFAULT_MAX_LAMBDA,
        diagnostics: bool = False,
        space_group: bool = False,
        symprec: float = 1e-5,
        probe=None,
        tolerance: float = 1e-6,
        atoms_per_call: int = DEFAULT_ATOMS_PER_CALL,
        **kwargs,
    ):
        super().__init__()
        self.space_group = space_group
        self.symprec = symprec
        self.diagnostics = diagnostics
        if _is_ase_calculator(base):
            self._inner = None
            # an ASE calculator has no batch: one copy per call anyway
            self._setup_ase(base, mode, grid, degree, n_inplane, inversion, seed, kwargs)
        else:
            from ._metatomic import HeadCalculator

            if grid is None:
                grid = eq.Grid.identity()
            self._inner = HeadCalculator(
                base,
                mode=mode,
                grid=grid,
                degree=degree,
                n_inplane=n_inplane,
                inversion=inversion,
                seed=seed,
                max_lambda=max_lambda,
                diagnostics=diagnostics,
                probe=probe,
                tolerance=tolerance,
                atoms_per_call=atoms_per_call,
                **kwargs,
            )
            self.head_options = self._inner.head_options
            self.implemented_properties = list(self._inner.implemented_properties)
        self.parameters = dict(self.head_options, space_group=space_group, symprec=symprec)

    def _setup_ase(self, base, mode, grid, degree, n_inplane, inversion, seed, kwargs):
        if kwargs:
            names = ", ".join(sorted(kwargs))
            raise TypeError(f"options for metatomic models only, given an ASE calculator: {names}")
        if mode not in _ASE_MODES:
            raise ValueError(
                f"unknown mode '{mode}' for an ASE calculator; expected one of "
                + ", ".join(_ASE_MODES)
            )
        if mode == "random":
            if n_inplane is not None:
                raise ValueError("n_inplane applies to a named 'lebedev' grid only")
            if self.diagnostics:
                raise ValueError("diagnostics need several copies per call: use 'average'")
            quadrature = None
        elif grid is None:
            quadrature = eq.Grid.identity()
        elif isinstance(grid, eq.Grid):
            if n_inplane is not None:
                raise ValueError("n_inplane applies to a named 'lebedev' grid only")
            quadrature = grid
        else:
            quadrature = eq.grid(grid, degree=degree, n_inplane=n_inplane, inversion=inversion)
        if quadrature is not None and quadrature.group.name not in ("O(3)", "SO(3)"):
            raise ValueError(f"needs an SO(3) or O(3) grid, got {quadrature.group.name}")
        self.base = base
        self._quadrature = quadrature
        self._seed = int(seed)
        self._inversion = inversion
        self._counter = 0  # frames drawn so far (random modes)
        self._frame = None  # the frame of the last call
        self._computed: list[str] = []
        provided = getattr(base, "implemented_properties", None) or list(_AVERAGED)
        self.implemented_properties = [p for p in _AVERAGED if p in provided]
        self.head_options = {
            "mode": mode,
            "grid": None if quadrature is None else quadrature.to_dict(),
            "seed": seed,
            "inversion": inversion,
        }

    def __getattr__(self, name):
        # metatomic models: metatomic-ase's attributes (run_model, additional_outputs,
        # model(), metadata(), ...) come from the inner calculator
        inner = self.__dict__.get("_inner")
        if inner is None:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        return getattr(inner, name)

    def check_state(self, atoms, tol: float = 1e-15) -> list[str]:
        if self._inner is not None:  # metatomic-ase also watches atoms.info inputs
            return self._inner.check_state(atoms, tol=tol)
        return super().check_state(atoms, tol=tol)

    def calculate(self, atoms=None, properties=None, system_changes=all_changes):
        properties = ["energy"] if properties is None else list(properties)
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if self._inner is not None:
            self._inner.calculate(atoms, properties, system_changes)
            self.results = dict(self._inner.results)
        else:
            self._calculate_ase(atoms, properties, system_changes)
        if self.space_group:
            self._average_space_group(atoms)

    def _calculate_ase(self, atoms, properties, system_changes):
        lattice = atoms.cell.rank == 3
        for wanted in ("stress", "stresses"):
            if wanted in properties and not lattice:
                raise PropertyNotImplementedError(
                    f"'{wanted}' requested from {self._base_label()} for a structure "
                    f"without a 3D cell (cell rank {atoms.cell.rank}): no lattice, no stress"
                )
        # energy, forces and stress at every call (as metatomic-ase does), so that
        # ASE's successive requests of one step are served from one evaluation
        wanted = [p for p in properties if p in _AVERAGED] + ["energy", "forces"]
        if lattice and all(atoms.pbc):
            wanted.append("stress")
        if system_changes:
            self._frame = self._counter
            self._counter += 1
        else:  # same structure, more properties: same frame, previous ones kept
            wanted += self._computed
        wanted = [p for p in _AVERAGED if p in wanted and p in self.implemented_properties]
        missing = [p for p in properties if p not in wanted]
        if missing or not wanted:
            name = missing[0] if missing else "energy"
            raise PropertyNotImplementedError(
                f"'{name}' requested from {self._base_label()}, which does not provide it"
            )
        rotations, weights = self._elements()
        per_copy: dict[str, list] = {name: [] for name in wanted}
        for rotation in rotations:
            copy = transformed_atoms(atoms, rotation)
            # one calculation per copy: the first property runs the base calculator,
            # which usually computes the others with it (read from its results)
            per_copy[wanted[0]].append(self.base.get_property(wanted[0], copy))
            for name in wanted[1:]:
                value = self.base.results.get(name)
                if value is None:
                    value = self.base.get_property(name, copy)
                per_copy[name].append(np.array(value, dtype=np.float64, copy=True))
        self.results = orbit_average(per_copy, rotations, weights, spread=self.diagnostics)
        self._computed = wanted

    def _elements(self) -> tuple[np.ndarray, np.ndarray]:
        """The elements and weights of the current call."""
        mode = self.head_options["mode"]
        if mode == "average":
            return self._quadrature.rotations.numpy(), self._quadrature.weights.numpy()
        frame = random_element(self._seed, self._frame, self._inversion)
        if mode == "random":
            return frame.numpy()[None], np.ones(1)
        rotations = (self._quadrature.rotations @ frame).numpy()
        return rotations, np.full(len(rotations), 1.0 / len(rotations))

    def _base_label(self) -> str:
        return f"calculator {type(self.base).__name__}"

    def _average_space_group(self, atoms) -> None:
        try:
            rotations, maps = space_group_operations(atoms, self.symprec)
        except SpaceGroupError as error:
            warnings.warn(f"no space-group average: {error}", stacklevel=3)
            return
        self.results = space_group_average(self.results, rotations, maps)
