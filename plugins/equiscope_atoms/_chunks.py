"""Chunked evaluation of a symmetrised head: the maths of combining chunks
(TorchScript-compatible free functions, called from :class:`~equiscope_atoms.heads.
OrbitAveraging`).

A head averages the back-transformed outputs ``z_i = rho(g_i)^T f(g_i x)`` of ``n``
copies with weights ``w_i`` (total ``W = sum_i w_i``, 1 for every grid):

    mean = sum_i w_i z_i / W,        A^2 = sum_i w_i |z_i - mean|^2 / W

(``|.|^2`` summed over the component axes). With ``atoms_per_call`` the copies are
evaluated ``c`` at a time (:func:`copies_per_call`), so that one inner call holds at
most about ``atoms_per_call`` atoms with their autograd graph.

**Moments.** Each chunk adds its weighted sums about one fixed reference ``K``, the
first copy's ``z`` (per sample and entry):

    S += sum_i w_i (z_i - K),        Q += sum_i w_i |z_i - K|^2

and at the end ``mean = K + S / W`` and ``A^2 = (Q - |S|^2 / W) / W``, accumulated in
float64 whatever the model's dtype. This is exact (the identity of the shifted
second moment) and independent of how the copies are split. It is stable: ``Q / W =
A^2 + |mean - K|^2`` and, with non-negative weights, ``A^2 >= w_1 |K - mean|^2``, so
the cancellation costs at most a factor ``1 + 1 / w_1`` (the number of copies for
uniform weights) on the round-off of ``A^2``, unlike ``E|z|^2 - |Ez|^2``, which
loses everything when ``|mean|^2 >> A^2``. Chan's pairwise merge of per-chunk means
would divide by partial sums of the weights, which for the Lebedev rules with
negative weights (degrees 12, 13, 24-27) come within 1e-5 of zero; here only the
total ``W`` divides.

**Gradients.** An engine that wants forces and stress takes the gradient of the
(per-system) energy with respect to positions and cell after the forward. Keeping
every chunk's graph until then is exactly the memory the chunks are meant to save,
so each chunk's share of the mean, ``sum_{i in chunk} w_i z_i / W``, is
differentiated at once with ``torch.autograd.grad`` with respect to every input
``x`` the copies are built from (:func:`gradient_inputs`: the systems' positions,
cells and neighbour-list pair vectors, which the engine registers as functions of
positions and cell). The copies are built from detached stand-ins of these inputs
(:func:`detached_proxies`), so each gradient is the partial derivative with respect
to its own input and no path is counted twice,
the gradients ``G`` are summed over chunks, and the chunk's graph is let go. The head
returns

    mean.detach() + sum_x ((x - x.detach()) * G_x).sum()

per system and entry (:func:`with_gradient`): the value is the mean, and the
engine's backward meets ``d mean / d x = G_x`` at every input and carries it on to
its own positions, cell and strain. What it does not carry: second derivatives
(``G`` is a constant: ``create_graph`` gives no Hessian), gradients to anything else
(model parameters), and the variance outputs' gradients.
"""

from typing import List, Tuple

import torch
from metatensor.torch import TensorBlock
from metatomic.torch import System


def copies_per_call(n_copies: int, n_atoms: int, atoms_per_call: int) -> int:
    """Copies of every system per inner call: ``max(1, atoms_per_call // n_atoms)``
    (``n_atoms``: the atoms of all systems of the forward), at most ``n_copies``;
    ``atoms_per_call <= 0`` is all of them in one call."""
    if atoms_per_call <= 0:
        return n_copies
    return min(n_copies, max(1, atoms_per_call // max(1, n_atoms)))


def _component_sum(values: torch.Tensor, first: int, n_components: int) -> torch.Tensor:
    """Sum over the ``n_components`` axes starting at axis ``first``."""
    if n_components == 0:
        return values
    return values.flatten(first, first + n_components - 1).sum(first)


def chunk_moments(
    z: torch.Tensor, weights: torch.Tensor, reference: torch.Tensor, n_components: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``S`` and ``Q`` of one chunk about ``reference``: ``z`` is ``[systems, copies,
    rows, *components, properties]``, ``weights`` ``[copies]``, ``reference`` like
    ``z`` without the copy axis; float64 sums, ``Q`` summed over the components."""
    d = z.to(torch.float64) - reference.to(torch.float64).unsqueeze(1)
    w = weights.to(torch.float64)
    first = torch.einsum("i,sir...->sr...", w, d)
    second = torch.einsum("i,sir...->sr...", w, _component_sum(d.square(), 3, n_components))
    return first, second


def finish_moments(
    reference: torch.Tensor,
    first: torch.Tensor,
    second: torch.Tensor,
    total: torch.Tensor,
    n_components: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``mean = K + S / W`` and ``A^2 = (Q - |S|^2 / W) / W`` (float64; round-off
    below zero, where the copies agree to the last bit, is clamped to zero)."""
    mean = reference.to(torch.float64) + first / total
    shift = _component_sum(first.square(), 2, n_components)
    return mean, ((second - shift / total) / total).clamp(min=0.0)


def gradient_inputs(systems: List[System]) -> Tuple[List[torch.Tensor], List[int]]:
    """Everything of ``systems`` a head's copies are built from that requires a
    gradient (positions, cells, neighbour-list pair vectors), and its system's index."""
    inputs: List[torch.Tensor] = []
    owners: List[int] = []
    for index, system in enumerate(systems):
        if system.positions.requires_grad:
            inputs.append(system.positions)
            owners.append(index)
        if system.cell.requires_grad:
            inputs.append(system.cell)
            owners.append(index)
        for options in system.known_neighbor_lists():
            vectors = system.get_neighbor_list(options).values
            if vectors.requires_grad:
                inputs.append(vectors)
                owners.append(index)
    return inputs, owners


def detached_proxies(systems: List[System]) -> List[System]:
    """``systems`` rebuilt from detached leaves (positions, cell, neighbour-list pair
    vectors; each requiring a gradient where the original does). Gradients taken with
    respect to the proxies are partial derivatives, one per input, even when the
    engine's pair vectors are themselves functions of its positions and cell: the
    engine's backward through :func:`with_gradient` then adds each path once."""
    proxies: List[System] = []
    for system in systems:
        positions = system.positions.detach().requires_grad_(system.positions.requires_grad)
        cell = system.cell.detach().requires_grad_(system.cell.requires_grad)
        proxy = System(types=system.types, positions=positions, cell=cell, pbc=system.pbc)
        for options in system.known_neighbor_lists():
            neighbors = system.get_neighbor_list(options)
            values = neighbors.values.detach().requires_grad_(neighbors.values.requires_grad)
            proxy.add_neighbor_list(
                options,
                TensorBlock(
                    values=values,
                    samples=neighbors.samples,
                    components=neighbors.components,
                    properties=neighbors.properties,
                ),
            )
        proxies.append(proxy)
    return proxies


def zero_gradients(size: int, inputs: List[torch.Tensor]) -> List[torch.Tensor]:
    """Zero sums ``[size, *x.shape]`` of the gradients of ``size`` entries per input."""
    sums: List[torch.Tensor] = []
    for x in inputs:
        shape = [size]
        for dimension in x.shape:
            shape.append(dimension)
        sums.append(torch.zeros(shape, dtype=x.dtype, device=x.device))
    return sums


def accumulate_gradients(
    shares: List[torch.Tensor],
    sums: List[List[torch.Tensor]],
    inputs: List[torch.Tensor],
) -> None:
    """Add ``d shares[k][j] / d inputs[m]`` to ``sums[k][m][j]`` for every share
    ``[J]`` of one chunk (summed over systems: systems do not interact); the graph is
    kept only until the last of them."""
    last = -1
    for k in range(len(shares)):
        if shares[k].requires_grad:
            last = k
    for k in range(last + 1):
        share = shares[k]
        if not share.requires_grad:
            continue
        for j in range(share.shape[0]):
            retain = k < last or j < share.shape[0] - 1
            gradients = torch.autograd.grad(
                [share[j]], inputs, retain_graph=retain, allow_unused=True
            )
            for m in range(len(inputs)):
                gradient = gradients[m]
                if gradient is not None:
                    sums[k][m][j].add_(gradient)


def with_gradient(
    mean: torch.Tensor,
    inputs: List[torch.Tensor],
    owners: List[int],
    sums: List[torch.Tensor],
) -> torch.Tensor:
    """``mean`` (``[systems, ...]``, one row per system) detached, plus per system
    and entry ``sum_m ((x_m - x_m.detach()) * G_m).sum()`` over its inputs ``x_m``:
    the same value, and the gradient ``G`` for the engine's backward."""
    n_systems = mean.shape[0]
    flat = mean.detach().reshape(n_systems, -1)
    size = flat.shape[1]
    rows: List[torch.Tensor] = []
    for s in range(n_systems):
        row = torch.zeros(size, dtype=flat.dtype, device=flat.device)
        for m in range(len(inputs)):
            if owners[m] == s:
                x = inputs[m]
                moved = (x - x.detach()).unsqueeze(0) * sums[m]
                row = row + moved.reshape(size, -1).sum(1).to(flat.dtype)
        rows.append(row)
    return (flat + torch.stack(rows)).reshape(mean.shape)
