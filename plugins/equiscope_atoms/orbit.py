"""Evaluate a model on every transformed copy of a structure, in batches.

For each grid element ``g`` the copy ``g x`` has its positions and cell mapped by
``g``. Neighbour lists are computed once for ``x``: the pairs within the cutoff of
``g x`` are the same, so each copy keeps the pair list and recomputes the pair
vectors ``r_j - r_i + S cell`` from its own (differentiable) positions and cell.
Conservative forces and stress come from one backward pass through a strain
``eps``: ``F = -dE/dr``, ``sigma = (1/V) dE/d eps``.
"""

from __future__ import annotations

from . import _guard  # noqa: F401  (first: one line on metatensor's import trap)

# isort: split

import torch
from metatensor.torch import Labels
from metatomic.torch import ModelOutput, System

from equiscope import Grid, SpectrumAccumulator
from equiscope.audit import OrbitResult, OutputKind

from ._batching import BatchPlanner
from ._copies import assemble_copies
from .models import LoadedModel

__all__ = ["OrbitResult", "OutputKind", "evaluate_orbit", "transformed_system"]


def transformed_system(system: System, matrix: torch.Tensor) -> System:
    """``g x``: positions (row vectors) and cell rows mapped by the 3x3 ``matrix``; for
    an improper ``matrix`` (``det = -1``) the mapped cell rows are negated, which spans
    the same lattice with a right-handed cell."""
    matrix = matrix.to(dtype=system.positions.dtype, device=system.positions.device)
    cell = system.cell @ matrix.T
    if float(torch.linalg.det(matrix.to(torch.float64))) < 0:
        cell = -cell
    return System(
        types=system.types, positions=system.positions @ matrix.T, cell=cell, pbc=system.pbc
    )


def _neighbor_template(model: LoadedModel, system: System):
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

    requests = model.requested_neighbor_lists()
    if not requests:
        return []
    with_lists = get_system_with_neighbor_lists(system, requests)
    return [(options, with_lists.get_neighbor_list(options)) for options in requests]


def _negated_shifts(samples: Labels) -> Labels:
    """Pair samples ``(first_atom, second_atom, cell_shift_a/b/c)`` with negated shifts."""
    values = samples.values.clone()
    values[:, 2:5] = -values[:, 2:5]
    return Labels(samples.names, values)


def _batched_copies(system: System, template, matrices, *, forces: bool, stress: bool):
    """The copies ``g x`` for a batch of matrices, built with batched tensor operations:
    positions ``[B, n, 3]`` and cells ``[B, 3, 3]`` mapped by ``g`` (and by ``1 + eps``
    for the stress), pair vectors ``r_j - r_i + S cell`` of every copy at once. Returns
    the systems and the autograd leaves (positions, strains)."""
    dtype, device = system.positions.dtype, system.positions.device
    transposed = matrices.to(dtype=dtype, device=device).transpose(1, 2)
    positions = (system.positions @ transposed).detach().requires_grad_(forces)
    # improper copies get the right-handed cell -c R^T (the same lattice) and, so that
    # every pair vector r_j - r_i + S cell stays that of g x, the negated shifts -S
    signs = torch.linalg.det(matrices.to(torch.float64)).sign().to(dtype=dtype, device=device)
    improper = signs < 0
    cells = signs[:, None, None] * (system.cell @ transposed)
    strains = torch.zeros(len(matrices), 3, 3, dtype=dtype, device=device, requires_grad=stress)
    moved, moved_cells = positions, cells
    if stress:
        deformation = torch.eye(3, dtype=dtype, device=device) + strains
        moved, moved_cells = positions @ deformation, cells @ deformation
    pair_vectors = []
    for _, block in template:
        samples = block.samples.values
        first, second = samples[:, 0].long(), samples[:, 1].long()
        shifts = signs[:, None, None] * samples[:, 2:5].to(dtype)
        vectors = moved[:, second] - moved[:, first] + shifts @ moved_cells
        pair_vectors.append(vectors.unsqueeze(-1))
    copies = assemble_copies(
        system.types,
        moved,
        moved_cells,
        system.pbc,
        improper.tolist(),
        [options for options, _ in template],
        [block.samples for _, block in template],
        [_negated_shifts(block.samples) for _, block in template],
        [block.components for _, block in template],
        [block.properties for _, block in template],
        pair_vectors,
    )
    return copies, positions, strains


def _sample_kind(model: LoadedModel, name: str) -> str:
    """Energies and ``model.totals`` are audited per structure (a model declaring
    per-atom values can also give their totals); other outputs as declared."""
    if name.split("/")[0] == "energy" or name in model.totals:
        return "system"
    return model.outputs[name].sample_kind


def output_irrep(name: str, key, block) -> object:
    """How the block ``key`` of output ``name`` transforms: ``"scalar"``, ``"vector"``,
    ``"rank2"`` or ``(lambda, sigma)``, from its component names."""
    names = [c.names[0] for c in block.components]
    if names == []:
        return "scalar"
    if names == ["xyz"]:
        return "vector"
    if names == ["xyz_1", "xyz_2"]:
        return "rank2"
    if names == ["o3_mu"] and "o3_lambda" in key.names and "o3_sigma" in key.names:
        return (int(key["o3_lambda"]), int(key["o3_sigma"]))
    raise ValueError(
        f"cannot determine how output '{name}' transforms: block components {names} "
        "are neither Cartesian (xyz, xyz_1/xyz_2) nor spherical (o3_mu with "
        "o3_lambda/o3_sigma keys)"
    )


def _split_copies(values: torch.Tensor, samples, n_copies: int) -> torch.Tensor:
    """``[rows, ...]`` ordered by system -> ``[n_copies, rows / n_copies, ...]``."""
    systems = samples.column("system") if "system" in samples.names else None
    if systems is not None:
        order = torch.argsort(systems, stable=True)
        values = values[order]
    if values.shape[0] % n_copies:
        raise ValueError("model returned a different number of samples per copy")
    return values.reshape(n_copies, values.shape[0] // n_copies, *values.shape[1:])


def _parse_tensormap(name, tensor, n_copies, responses, kinds, per_structure):
    several = len(tensor.keys) > 1
    for key, block in tensor.items():
        label = name
        if several:
            label += "[" + ",".join(f"{n}={int(key[n])}" for n in key.names) + "]"
        irrep = output_irrep(name, key, block)
        values = _split_copies(block.values.detach(), block.samples, n_copies)
        # [copies, rows, *components, properties] -> [copies, rows, properties, *comps]
        values = values.movedim(-1, 2)
        responses.setdefault(label, []).append(values.to("cpu", torch.float64))
        kinds[label] = OutputKind(irrep, per_structure, per_structure)


class _Hooks:
    """Forward hooks storing the outputs of submodules during one model call."""

    def __init__(self, model: LoadedModel, paths: list[str]):
        self.captured: dict[str, torch.Tensor] = {}
        self.handles = []
        for path in paths:
            module, index = model.hook_target(path)
            self.handles.append(module.register_forward_hook(self._hook(path, index)))

    def _hook(self, path, index):
        def store(module, inputs, output):
            value = output if index is None else output[index]
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"layer '{path}' does not output a tensor")
            self.captured[path] = value.detach()

        return store

    def remove(self):
        for handle in self.handles:
            handle.remove()


def _copies_first(values: torch.Tensor, n_copies: int, path: str) -> torch.Tensor:
    """A hooked tensor ``[rows, ...]`` with the copies' rows one after the other ->
    ``[n_copies, rows / n_copies, features]``."""
    if values.shape[0] % n_copies:
        raise ValueError(
            f"layer '{path}': first dimension {values.shape[0]} is not a multiple of the "
            f"{n_copies} copies in the batch, so its rows are not per atom or per pair"
        )
    return values.reshape(n_copies, values.shape[0] // n_copies, -1)


def evaluate_orbit(
    model: LoadedModel,
    system: System,
    grid: Grid,
    *,
    outputs: list[str],
    forces: bool = False,
    stress: bool = False,
    layers: list[str] = (),
    max_lambda: int | None = None,
    batch_size: int | None = None,
    max_memory: int | None = None,
    planner: BatchPlanner | None = None,
) -> OrbitResult:
    """Responses of ``outputs`` (model output names), conservative ``forces`` and
    ``stress`` (from ``energy``), and spectra of hidden ``layers`` on the orbit:
    ``mtt::feature::<path>`` outputs for ``model.layers``, forward hooks otherwise.

    Copies per model call: ``batch_size`` when given; otherwise the fastest size that
    fits in ``max_memory`` bytes (default: half the available RAM, or of the free
    GPU memory), found by measurement (:class:`~equiscope_atoms._batching.BatchPlanner`;
    pass one ``planner`` to reuse its choice over structures). On an out-of-memory
    error a call is retried with half the copies."""
    dtype, device = model.dtype, model.device
    model.check_types(system.types)
    system = System(
        types=system.types,
        positions=system.positions.to(dtype),
        cell=system.cell.to(dtype),
        pbc=system.pbc,
    )
    template = [  # pair lists are found on the CPU, then travel with the copies
        (options, block.to(device)) for options, block in _neighbor_template(model, system)
    ]
    system = system.to(device=device)
    gradients = forces or stress
    requested = set(outputs) | ({"energy"} if gradients else set())
    model_outputs = {name: ModelOutput(sample_kind=_sample_kind(model, name)) for name in requested}
    featured = [path for path in layers if path in model.layers]
    hooked = [path for path in layers if path not in model.layers]
    for path in featured:
        model_outputs[f"mtt::feature::{path}"] = ModelOutput(sample_kind="atom")
    oriented = bool(grid.parameters.get("oriented", False))
    accumulators = {
        path: SpectrumAccumulator(
            grid, grid.exact_degree if max_lambda is None else max_lambda, any_degree=oriented
        )
        for path in layers
    }
    responses: dict[str, list[torch.Tensor]] = {}
    kinds: dict[str, OutputKind] = {}
    volume = abs(float(torch.det(system.cell.to(torch.float64))))

    def evaluate_chunk(start: int, stop: int) -> None:
        matrices = grid.rotations[start:stop]
        hooks = _Hooks(model, hooked)
        try:
            with torch.set_grad_enabled(gradients):
                copies, positions, strains = _batched_copies(
                    system, template, matrices, forces=forces, stress=stress
                )
                result = model.evaluate(copies, model_outputs)
            if gradients:
                energy = result["energy"].block().values.sum()
                inputs = ([positions] if forces else []) + ([strains] if stress else [])
                grads = torch.autograd.grad(energy, inputs)
        finally:
            hooks.remove()
        n = len(copies)
        for name in outputs:
            per_structure = _sample_kind(model, name) == "system"
            _parse_tensormap(name, result[name], n, responses, kinds, per_structure)
        if forces:
            values = -grads[0].detach().to("cpu", torch.float64)
            responses.setdefault("forces", []).append(values)
            kinds["forces"] = OutputKind("vector", False, False)
        if stress:
            values = grads[-1].detach().to("cpu", torch.float64) / volume
            responses.setdefault("stress", []).append(values)
            kinds["stress"] = OutputKind("rank2", True, False)
        for path in featured:
            block = result[f"mtt::feature::{path}"].block()
            values = _split_copies(block.values.detach(), block.samples, n)
            accumulators[path].add(values.cpu(), start)
        for path in hooked:
            values = _copies_first(hooks.captured[path], n, path)
            accumulators[path].add(values.cpu().to(torch.float64), start)

    if planner is None:
        planner = BatchPlanner(batch_size=batch_size, max_memory=max_memory)
    n_atoms = len(system)
    key = (
        max(n_atoms - 1, 0).bit_length(),  # size bucket: atoms up to the next power of 2
        tuple(sorted(requested)),
        forces,
        stress,
        tuple(layers),
    )
    planner.run(key, grid.size, n_atoms, device, evaluate_chunk)
    return OrbitResult(
        responses={name: torch.cat(parts) for name, parts in responses.items()},
        kinds=kinds,
        # an oriented replicate hands its accumulators over: the estimate needs their
        # coefficients (unbiased only in products of independent replicates)
        layers={
            path: acc if oriented else acc.spectrum(completeness_rtol=1.0)
            for path, acc in accumulators.items()
        },
    )
