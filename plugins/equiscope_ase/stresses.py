"""Per-atom stress of a metatomic model: the strain derivative of each atom's energy.

With the homogeneous strain ``x -> x (1 + eps)`` applied to positions, cell and the
neighbour-list vectors (as metatomic-ase does for the total stress),

    sigma_i = (1/V) d e_i / d eps,          sum_i sigma_i = (1/V) dE/d eps = sigma,

where ``e_i`` are the model's per-atom energies. For a pair potential
(``e_i = 1/2 sum_j phi(r_ij)``) this is ``1/(2V) sum_j phi'(r_ij) r_hat_ij (x) r_ij``,
the convention of ase's ``LennardJones``; it works the same for models that rebuild
their pair vectors from the positions (PET) and for symmetrised heads. Voigt order
(xx, yy, zz, yz, xz, xy), eV/A^3. One forward pass, and one backward pass per atom
(batched when autograd allows).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from ase.stress import full_3x3_to_voigt_6_stress
from metatensor.torch import TensorBlock
from metatomic.torch import AtomisticModel, ModelEvaluationOptions, ModelOutput, System
from vesin.metatomic import neighbor_lists_for_model

__all__ = ["NotDecomposable", "per_atom_stresses"]


class NotDecomposable(ValueError):
    """The model's energy cannot be split over its atoms."""


def _strain_gradients(energies: torch.Tensor, strain: torch.Tensor) -> torch.Tensor:
    """``d e_i / d eps`` for every atom: ``[n_atoms, 3, 3]``."""
    n = energies.shape[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # vmap's "no batching rule" fallbacks
            (batched,) = torch.autograd.grad(
                energies,
                strain,
                grad_outputs=torch.eye(n, dtype=energies.dtype, device=energies.device),
                is_grads_batched=True,
                retain_graph=True,
            )
        return batched
    except RuntimeError:  # an operation autograd cannot batch: one pass per atom
        rows = []
        for index in range(n):
            (row,) = torch.autograd.grad(energies[index], strain, retain_graph=True)
            rows.append(row)
        return torch.stack(rows)


def per_atom_stresses(
    model: AtomisticModel,
    atoms,
    *,
    energy: str = "energy",
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Per-atom stresses of ``atoms``, shape ``(len(atoms), 6)``."""
    if atoms.cell.rank != 3:
        raise NotDecomposable(f"a 3D cell is needed; cell rank is {atoms.cell.rank}")
    declared = model.capabilities().outputs.get(energy)
    if declared is None or declared.sample_kind != "atom":
        raise NotDecomposable(f"it gives no per-atom '{energy}'")
    if len(model.requested_inputs(use_new_names=True)) > 0:
        names = ", ".join(model.requested_inputs(use_new_names=True))
        raise NotDecomposable(f"it needs extra inputs ({names}) this split does not provide")
    strain = torch.eye(3, dtype=dtype, device=device, requires_grad=True)
    positions = torch.tensor(atoms.positions, dtype=dtype, device=device) @ strain
    cell = torch.tensor(atoms.cell.array, dtype=dtype, device=device) @ strain
    types = torch.tensor(atoms.numbers, dtype=torch.int32, device=device)
    pbc = torch.tensor(atoms.pbc, dtype=torch.bool, device=device)
    plain = System(types, positions.detach(), cell.detach(), pbc)
    for calculator in neighbor_lists_for_model("angstrom", model):
        calculator.add_neighbor_list([plain])
    system = System(types, positions, cell, pbc)
    for options in plain.known_neighbor_lists():
        block = plain.get_neighbor_list(options)
        vectors = (block.values.detach()[..., 0] @ strain).unsqueeze(-1)  # r_p (1 + eps)
        system.add_neighbor_list(
            options, TensorBlock(vectors, block.samples, block.components, block.properties)
        )
    request = {energy: ModelOutput(unit="eV", sample_kind="atom")}
    options = ModelEvaluationOptions(length_unit="angstrom", outputs=request)
    block = model([system], options, check_consistency=False)[energy].block()
    energies = block.values.reshape(-1)
    if energies.grad_fn is None:
        raise NotDecomposable("the energy has no gradient")
    order = torch.argsort(block.samples.column("atom"))
    gradients = _strain_gradients(energies, strain)[order]
    stresses = (gradients / atoms.get_volume()).detach().cpu().numpy()
    return full_3x3_to_voigt_6_stress(stresses)
