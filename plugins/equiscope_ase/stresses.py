"""Per-atom stress of a metatomic model from the gradient of its energy with respect
to the neighbour-list vectors.

For an energy that depends on the structure only through the pair vectors
``r_p = x_j - x_i + S_p h`` handed to it in its neighbour lists, the strain derivative
splits over pairs, and half of each pair's term goes to each of its atoms:

    sigma_i = 1/(2V) sum_{p : i in p} dE/dr_p (x) r_p,      sum_i sigma_i = sigma,

the convention of ase's ``LennardJones`` (Voigt order, eV/A^3, summing to the total
stress). A model that also reads the positions or the cell directly (a long-range
term, say) has no such split: it is refused, never silently half-counted.
"""

from __future__ import annotations

import numpy as np
import torch
from ase.stress import full_3x3_to_voigt_6_stress
from metatensor.torch import TensorBlock
from metatomic.torch import AtomisticModel, ModelEvaluationOptions, ModelOutput, System
from vesin.metatomic import neighbor_lists_for_model

__all__ = ["per_atom_stresses"]


class NotPairDecomposable(ValueError):
    """The energy depends on more than the neighbour-list vectors."""


def per_atom_stresses(
    model: AtomisticModel,
    atoms,
    *,
    energy: str = "energy",
    dtype: torch.dtype = torch.float64,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Per-atom stresses, shape ``(len(atoms), 6)`` in Voigt order (xx, yy, zz, yz, xz,
    xy), from one forward and one backward pass of ``model``."""
    if atoms.cell.rank != 3:
        raise ValueError(f"per-atom stress needs a 3D cell; cell rank is {atoms.cell.rank}")
    positions = torch.tensor(atoms.positions, dtype=dtype, device=device, requires_grad=True)
    cell = torch.tensor(atoms.cell.array, dtype=dtype, device=device, requires_grad=True)
    system = System(
        types=torch.tensor(atoms.numbers, dtype=torch.int32, device=device),
        positions=positions,
        cell=cell,
        pbc=torch.tensor(atoms.pbc, dtype=torch.bool, device=device),
    )
    # vectors computed from detached copies: the gradient stops at the pair vectors
    plain = System(system.types, positions.detach(), cell.detach(), system.pbc)
    for calculator in neighbor_lists_for_model("angstrom", model):
        calculator.add_neighbor_list([plain])
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    for options in plain.known_neighbor_lists():
        block = plain.get_neighbor_list(options)
        vectors = block.values.detach().clone().requires_grad_(True)
        system.add_neighbor_list(
            options,
            TensorBlock(vectors, block.samples, block.components, block.properties),
        )
        pairs.append((vectors, block.samples.values))
    options = ModelEvaluationOptions(
        length_unit="angstrom", outputs={energy: ModelOutput(unit="eV", sample_kind="system")}
    )
    total = model([system], options, check_consistency=False)[energy].block().values.sum()
    if total.grad_fn is None:
        raise NotPairDecomposable("the energy has no gradient")
    grads = torch.autograd.grad(total, [positions, cell] + [v for v, _ in pairs], allow_unused=True)
    for name, grad in zip(("positions", "cell"), grads[:2], strict=True):
        if grad is not None and bool(grad.abs().max() > 0):
            raise NotPairDecomposable(f"the energy depends on the {name} directly")
    virial = torch.zeros(len(atoms), 3, 3, dtype=dtype, device=device)
    for (vectors, samples), grad in zip(pairs, grads[2:], strict=True):
        if grad is None:
            continue
        # half of g_p (x) r_p to each atom of the pair
        term = 0.5 * grad.reshape(-1, 3, 1) * vectors.detach().reshape(-1, 1, 3)
        virial.index_add_(0, samples[:, 0].long(), term)
        virial.index_add_(0, samples[:, 1].long(), term)
    stresses = (virial / atoms.get_volume()).cpu().numpy()
    return full_3x3_to_voigt_6_stress(stresses)
