"""TorchScript helper assembling transformed copies (System objects are TorchScript
classes: building hundreds of them from Python costs ~0.3 ms each, from TorchScript
a few microseconds)."""

from . import _guard  # noqa: F401  (first: one line on metatensor's import trap)

# isort: split

from typing import List

import torch
from metatensor.torch import Labels, TensorBlock
from metatomic.torch import NeighborListOptions, System


@torch.jit.script
def assemble_copies(
    types: torch.Tensor,
    positions: torch.Tensor,
    cells: torch.Tensor,
    pbc: torch.Tensor,
    improper: List[bool],
    options: List[NeighborListOptions],
    samples: List[Labels],
    negated_samples: List[Labels],
    components: List[List[Labels]],
    properties: List[Labels],
    vectors: List[torch.Tensor],
) -> List[System]:
    """One System per copy ``b`` (positions ``[B, n, 3]``, cells ``[B, 3, 3]``) with
    neighbour list ``k`` holding the pair vectors ``vectors[k][b]``; the copies with
    ``improper[b]`` (negated, right-handed cells) take the samples with negated cell
    shifts, ``negated_samples[k]``."""
    copies: List[System] = []
    for index in range(positions.shape[0]):
        copy = System(types=types, positions=positions[index], cell=cells[index], pbc=pbc)
        flipped = improper[index]
        for k in range(len(options)):
            block = TensorBlock(
                values=vectors[k][index],
                samples=negated_samples[k] if flipped else samples[k],
                components=components[k],
                properties=properties[k],
            )
            copy.add_neighbor_list(options[k], block)
        copies.append(copy)
    return copies
