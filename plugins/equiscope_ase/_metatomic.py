"""The metatomic side of ``EquiscopeCalculator``: metatomic-ase's calculator on a
symmetrised head.

The head (see :mod:`equiscope_atoms.heads`) is built once and runs inside
metatomic-ase's own ``MetatomicCalculator``, so energies, forces and stress come from
one backward pass exactly as for the raw model, and everything that works with it
(``ase.md``, ``ase.optimize`` with cell filters, ``ase.phonons``) works here.
Imported only when ``EquiscopeCalculator`` is given a metatomic model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import PropertyNotImplementedError
from metatomic.torch import AtomisticModel, load_atomistic_model
from metatomic_ase import MetatomicCalculator

import equiscope as eq
from equiscope.groups.frames import random_element
from equiscope.heads import (
    DEFAULT_ATOMS_PER_CALL,
    DEFAULT_GRID,
    DEFAULT_INVERSION,
    DEFAULT_MAX_LAMBDA,
    HEAD_MODES,
)
from equiscope_atoms._chunks import copies_per_call
from equiscope_atoms.heads import head_description, symmetrize_model

from ._averaging import orbit_average
from ._transform import transformed_atoms
from .stresses import NotDecomposable, per_atom_stresses

__all__ = ["HeadCalculator"]

# what autograd says when no gradient reaches the positions / strain: backward() on an
# energy without graph, or a None gradient that metatomic-ase then negates or divides
_NO_GRADIENT = ("does not require grad", "unary -: 'NoneType'", "for /: 'NoneType'")


def _load(model) -> AtomisticModel:
    if isinstance(model, AtomisticModel):
        loaded, label = model, f"model '{model.metadata().name}'"
    else:
        path = Path(model)
        if not path.is_file():
            raise ValueError(f"model file {path} does not exist")
        loaded, label = load_atomistic_model(str(path)), str(path)
    existing = head_description(loaded)
    if existing is not None:
        raise ValueError(
            f"{label} is already a symmetrised head ({existing}): load it with "
            "metatomic_ase.MetatomicCalculator, or give EquiscopeCalculator the raw model"
        )
    return loaded


def _auto(model, probe, tolerance, inversion):
    """Choose the grid of mode 'auto' from the energy spectrum on ``probe``."""
    from metatomic.torch import systems_to_torch

    from equiscope_atoms import wrap_model
    from equiscope_atoms.grid_choice import breaking_lambdas, cheapest_grid

    if probe is None:
        raise ValueError("mode 'auto' needs probe= (ASE Atoms to measure the model on)")
    probes = probe if isinstance(probe, list | tuple) else [probe]
    model = _load(model)
    dtype = getattr(torch, model.capabilities().dtype or "float64")
    systems = [systems_to_torch(atoms, dtype=dtype) for atoms in probes]
    degrees, odd = breaking_lambdas(wrap_model(model), systems, tolerance=tolerance)
    grid = cheapest_grid(degrees, inversion=inversion or odd)
    if grid is None:  # nothing to remove: evaluate once, in the input frame
        grid = eq.Grid.identity()
    return model, grid, inversion or odd, "average"


class HeadCalculator(MetatomicCalculator):
    """An ASE calculator for ``model`` (path to an exported ``.pt`` or an
    ``AtomisticModel``) behind a symmetrised head (``EquiscopeCalculator`` runs it).

    :param mode: ``"average"`` (deterministic grid average), ``"random"`` (one
        seeded Haar-random O(3) frame per call), ``"random-group"`` (the grid, a
        finite group, in a seeded random orientation per call) or ``"auto"``: probe
        the energy spectrum on ``probe`` (Atoms or a list of them) and average over the
        cheapest grid that removes every lambda above ``tolerance``
        (``self.head_options`` records the choice)
    :param grid: ``"octahedral"`` (24 rotations, removes lambda = 1, 2, 3, 5),
        ``"icosahedral"`` (60, removes 1-5, 7, 8, 9), ``"tetrahedral"`` or
        ``"lebedev"`` (with ``degree``, and ``n_inplane`` in-plane angles: ``degree + 1``
        by default; ``2 degree + 1`` is metatomic-ase's ``SymmetrizedCalculator`` grid),
        or an ``equiscope.Grid``
    :param inversion: include improper elements (O(3) instead of SO(3))
    :param seed: seed of the random frames; the same seed gives the same sequence
    :param max_lambda: largest lambda of spherical outputs the head back-rotates
    :param diagnostics: store ``<name>_rot_std`` for every property computed
        (:meth:`rotational_spread`; ``average`` and ``random-group`` modes)
    :param atoms_per_call: atoms per call of the raw model (at least one copy per
        call), which bounds the memory of a step; forces and stress are then taken
        chunk by chunk, without second derivatives. 0: every copy in one call
        (see :func:`equiscope_atoms.heads.symmetrize_model`)
    Other keyword arguments (``device``, ``non_conservative``, ...) go to
    ``MetatomicCalculator``.

    ``stresses`` (per-atom stress, Voigt, summing to ``stress``; metatomic-ase has
    none) is the strain derivative of each atom's energy over the volume
    (:mod:`equiscope_ase.stresses`; models with per-atom energies, PET included), from
    the same frame and call as the energy in the random modes.

    Asking for ``stress`` or ``stresses`` of a structure without a 3D cell, for
    ``stresses`` from a model without per-atom energies or with a direct
    (non-conservative) stress, or for conservative forces or stress from a
    model whose energy has no gradient raises ase's ``PropertyNotImplementedError``
    naming the model. (A ``non_conservative`` request for an output the model lacks is refused
    by ``MetatomicCalculator`` itself, at construction.)
    """

    def __init__(
        self,
        model: str | Path | AtomisticModel,
        *,
        mode: str = "average",
        grid: str = DEFAULT_GRID,
        degree: int | None = None,
        n_inplane: int | None = None,
        inversion: bool = DEFAULT_INVERSION,
        seed: int = 0,
        max_lambda: int = DEFAULT_MAX_LAMBDA,
        diagnostics: bool = False,
        probe=None,
        tolerance: float = 1e-6,
        atoms_per_call: int = DEFAULT_ATOMS_PER_CALL,
        **kwargs,
    ):
        if mode == "auto":
            model, grid, inversion, mode = _auto(model, probe, tolerance, inversion)
        if mode not in HEAD_MODES:
            raise ValueError(f"unknown mode '{mode}'; expected one of {', '.join(HEAD_MODES)}")
        self._label = f"'{model}'" if isinstance(model, str | Path) else None
        model = _load(model)
        if self._label is None:
            self._label = f"'{model.metadata().name}'"
        quadrature = None
        if n_inplane is not None and (isinstance(grid, eq.Grid) or mode == "random"):
            raise ValueError("n_inplane applies to a named 'lebedev' grid only")
        if isinstance(grid, eq.Grid):
            quadrature = grid
        elif mode != "random":
            quadrature = eq.grid(grid, degree=degree, n_inplane=n_inplane, inversion=inversion)
        self.head_options = {
            "mode": mode,
            "grid": None if quadrature is None else quadrature.to_dict(),
            "seed": seed,
            "inversion": inversion,
        }
        if diagnostics and mode == "random":
            raise ValueError("diagnostics need several copies per call: use 'average'")
        head = symmetrize_model(
            model,
            mode=mode,
            grid=quadrature,
            seed=seed,
            inversion=inversion,
            max_lambda=max_lambda,
            atoms_per_call=atoms_per_call,
        )
        self.atoms_per_call = atoms_per_call
        self.diagnostics = diagnostics
        self._raw = model
        self._raw_calculator = None
        self._quadrature = quadrature
        self._seed = seed
        self._inversion = inversion
        super().__init__(head, **kwargs)
        self._frame = None  # the random-frame counter before the last energy call

    def calculate(self, atoms=None, properties=None, system_changes=None):
        properties = ["energy"] if properties is None else properties
        atoms = self.atoms if atoms is None else atoms
        lattice = atoms is None or atoms.cell.rank == 3
        for wanted in ("stress", "stresses"):
            if wanted in properties and not lattice:
                raise PropertyNotImplementedError(
                    f"'{wanted}' requested from model {self._label} for a structure "
                    f"without a 3D cell (cell rank {atoms.cell.rank}): no lattice, no stress"
                )
        stresses = "stresses" in properties
        if stresses:
            properties = [p for p in properties if p != "stresses"]
            if self.parameters.get("non_conservative") in (True, "stress"):
                raise PropertyNotImplementedError(
                    f"'stresses' requested from model {self._label} with non_conservative "
                    "stress: a direct stress output has no per-atom split"
                )
        counter = getattr(self._model.module, "counter", None)
        # results of this very structure, just computed: per-atom stresses reuse them
        # (and, in the random modes, their frame) instead of drawing a new frame
        reuse = stresses and not properties and not system_changes and "energy" in self.results
        if not reuse:
            self._frame = None if counter is None else counter.clone()
            try:
                if system_changes is None:
                    super().calculate(atoms, properties or ["energy"])
                else:
                    super().calculate(atoms, properties or ["energy"], system_changes)
            except (RuntimeError, TypeError) as error:
                wanted = [p for p in ("stress", "forces") if p in properties]
                if wanted and any(text in str(error) for text in _NO_GRADIENT):
                    raise PropertyNotImplementedError(
                        f"'{wanted[0]}' requested from model {self._label}, whose energy "
                        "has no gradient with respect to the positions and cell; use a model "
                        "with a differentiable energy or non_conservative=True/'forces'/'stress'"
                    ) from error
                raise
        if stresses:
            self.results["stresses"] = self._per_atom_stresses(atoms, counter)
        if not lattice:  # computed for free with the forces, but meaningless here
            self.results.pop("stress", None)
        if self.diagnostics:
            self.results.update(self.rotational_spread(atoms))

    def _elements(self) -> tuple[np.ndarray, np.ndarray]:
        """The group elements and weights the head averaged over in the last call."""
        rotations = self._quadrature.rotations
        weights = self._quadrature.weights
        if self.head_options["mode"] == "random-group":
            frame = random_element(self._seed, int(self._frame), self._inversion)
            rotations = rotations @ frame
            weights = torch.full_like(weights, 1.0 / len(weights))
        return rotations.numpy(), weights.numpy()

    def rotational_spread(self, atoms) -> dict:
        """``<name>_rot_std`` of every property in ``results``: the raw model is
        evaluated on the head's copies (batched forward and backward passes through
        metatomic-ase in chunks of ``atoms_per_call`` atoms, about the cost of the
        head itself), and the spread of the back-transformed values is taken
        elementwise (per-atom stresses: one strain derivative per copy)."""
        if self._raw_calculator is None:
            nc = self.parameters.get("non_conservative", False)
            self._raw_calculator = MetatomicCalculator(
                self._raw, non_conservative=nc, device=self.parameters.get("device")
            )
        rotations, weights = self._elements()
        copies = [transformed_atoms(atoms, r) for r in rotations]
        gradients = "forces" in self.results or "stress" in self.results
        per_atom = "energies" in self.results
        per_call = copies_per_call(len(copies), len(atoms), self.atoms_per_call)
        per_copy: dict[str, list] = {}
        for start in range(0, len(copies), per_call):
            chunk = copies[start : start + per_call]
            raw = self._raw_calculator.compute_energy(chunk, gradients, per_atom=per_atom)
            for name in ("energy", "energies", "forces", "stress"):
                if name in raw and name in self.results:
                    per_copy.setdefault(name, []).extend(raw[name])
        if "stress" in per_copy:  # ASE's stress is the symmetric part (Voigt)
            per_copy["stress"] = [0.5 * (s + s.T) for s in per_copy["stress"]]
        if "stresses" in self.results:
            per_copy["stresses"] = [
                per_atom_stresses(
                    self._raw,
                    copy,
                    energy=self._energy_key,
                    dtype=self._dtype,
                    device=self._device,
                )
                for copy in copies
            ]
        averaged = orbit_average(per_copy, rotations, weights, spread=True)
        return {name: value for name, value in averaged.items() if name.endswith("_rot_std")}

    def _per_atom_stresses(self, atoms, counter) -> np.ndarray:
        """Per-atom stresses in the frame of the last energy call (random modes); the
        frame sequence continues as if this pass had not happened."""
        following = None if counter is None else counter.clone()
        if counter is not None and self._frame is not None:
            counter.copy_(self._frame)
        try:
            return per_atom_stresses(
                self._model,
                atoms,
                energy=self._energy_key,
                dtype=self._dtype,
                device=self._device,
            )
        except NotDecomposable as error:
            raise PropertyNotImplementedError(
                f"'stresses' requested from model {self._label}: {error}"
            ) from error
        finally:
            if following is not None:
                counter.copy_(following)
