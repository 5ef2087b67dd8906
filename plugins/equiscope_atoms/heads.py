"""Symmetrised output heads: a metatomic model wrapped so its outputs are averaged
over (or randomised by) rotations, itself exportable and usable in any engine.

Modes, for an inner model ``f`` and group elements ``g_i`` with weights ``w_i``:

- ``average``: ``sum_i w_i rho(g_i)^T f(g_i x)``. Exactly removes every sector the
  grid averages out (O: lambda = 1, 2, 3, 5; I: 1-5, 7, 8, 9; Lebedev degree d:
  1..d) from every output; forces and stress, taken by the engine through autograd of
  the averaged energy, inherit this. Deterministic, so NVE stays time-reversible.
- ``random``: one Haar-random element of O(3) (SO(3) without inversion) per call,
  drawn from a counter-based generator: the same ``seed`` gives the same sequence.
  Turns a systematic orientation bias into noise of zero mean; a new frame every
  step breaks the exact time reversibility of NVE.
- ``random-group``: the grid (a finite group) in a random orientation per call:
  the low sectors it removes are gone exactly, the rest becomes zero-mean noise.
- ``diagnose``: the raw model's outputs unchanged, plus ``equiscope::variance::<name>``
  computed on the grid: an exportable diagnostic wrapper that lets any engine log the
  equivariance error along a run.

Memory: the copies are evaluated in chunks of at most ``atoms_per_call`` atoms (at
least one copy per call; default 128, 0 = all in one call). With forces and stress
each chunk's gradient is taken during the forward and its graph freed, so a step
needs the memory of one chunk, not of every copy; that path gives no second
derivatives (see :func:`symmetrize_model` and :mod:`equiscope_atoms._chunks`).

Outputs are back-transformed by how their blocks are labelled: no components
(invariant), ``xyz`` (vector), ``xyz_1, xyz_2`` (rank 2), ``o3_mu`` with
``o3_lambda, o3_sigma`` keys (spherical, real Wigner D precomputed as buffers).
"""

from . import _guard  # noqa: F401  (first: one line on metatensor's import trap)

# isort: split

from typing import Dict, List, Optional, Tuple

import torch
from metatensor.torch import Labels, LabelsEntry, TensorBlock, TensorMap
from metatomic.torch import (
    AtomisticModel,
    ModelCapabilities,
    ModelMetadata,
    ModelOutput,
    NeighborListOptions,
    System,
)

import equiscope as eq
from equiscope.groups.frames import random_element
from equiscope.groups.harmonics import SphericalHarmonics
from equiscope.heads import (
    DEFAULT_ATOMS_PER_CALL,
    DEFAULT_GRID,
    DEFAULT_INVERSION,
    DEFAULT_MAX_LAMBDA,
    DEFAULT_MODE,
    HEAD_MARKER,
    HEAD_MODES,
)

from ._chunks import (
    accumulate_gradients,
    chunk_moments,
    copies_per_call,
    detached_proxies,
    finish_moments,
    gradient_inputs,
    with_gradient,
    zero_gradients,
)

__all__ = [
    "DEFAULT_ATOMS_PER_CALL",
    "DEFAULT_GRID",
    "DEFAULT_INVERSION",
    "DEFAULT_MAX_LAMBDA",
    "DEFAULT_MODE",
    "HEAD_MARKER",
    "HEAD_MODES",
    "OrbitAveraging",
    "SymmetrizedHead",
    "head_description",
    "symmetrize_model",
]


class OrbitAveraging:
    """The head's logic, as a mixin for a ``torch.nn.Module`` that defines
    ``_evaluate(systems, outputs, selected_atoms)`` (the raw model): ``_symmetrized``
    evaluates it on the transformed copies and averages (or randomises) them.
    :class:`SymmetrizedHead` wraps an exported model with it; the metatrain
    architecture ``experimental.equiscope`` mixes it into its own model."""

    def _setup_head(
        self,
        grid: Optional[eq.Grid],
        *,
        mode: str,
        seed: int,
        inversion: bool,
        max_lambda: int,
        dtype: torch.dtype,
        atoms_per_call: int = DEFAULT_ATOMS_PER_CALL,
    ) -> None:
        """``atoms_per_call``: atoms (summed over the copies of all systems) per call
        of the raw model, at least one copy per call; 0 evaluates all copies in one
        call (the metatrain architecture passes 0: it trains with double backward)."""
        if mode not in HEAD_MODES:
            raise ValueError(f"unknown head mode '{mode}'; expected one of {HEAD_MODES}")
        if mode != "random" and grid is None:
            raise ValueError(f"head mode '{mode}' needs a grid")
        if atoms_per_call < 0:
            raise ValueError(
                f"atoms_per_call must be 0 (no chunks) or positive, got {atoms_per_call}"
            )
        self.mode = mode
        self.atoms_per_call = int(atoms_per_call)
        # outer -> inner output names; the "" entry only lets TorchScript infer the type
        self.inner_names: Dict[str, str] = {"": ""}
        self.seed = int(seed)
        self.inversion = inversion
        self.max_lambda = max_lambda
        if grid is None:
            grid = eq.grid("random", n=1, seed=0)
        self.register_buffer("rotations", grid.rotations.to(dtype))
        self.register_buffer("weights", grid.weights.to(dtype))
        self.register_buffer("counter", torch.zeros(1, dtype=torch.int64))
        # Wigner D of the grid elements (average mode) per lambda, proper parts
        proper = grid.rotations * torch.linalg.det(grid.rotations).round()[:, None, None]
        self.wigner: List[torch.Tensor] = [
            eq.wigner_d(lam, proper).to(dtype) for lam in range(max_lambda + 1)
        ]
        # for random frames: D(R) from harmonics at fixed points, D = S Y(R U)^T P S
        # with P = pinv(Y(U)^T) and S = diag((-1)^m) (see equiscope.groups.harmonics)
        self.harmonics = SphericalHarmonics(max_lambda)
        generator = torch.Generator().manual_seed(0)
        points = torch.randn(4 * max_lambda + 8, 3, generator=generator, dtype=torch.float64)
        points = points / points.norm(dim=-1, keepdim=True)
        self.register_buffer("probe_points", points, persistent=False)
        values = self.harmonics(points)
        self.projectors: List[torch.Tensor] = []
        self.signs: List[torch.Tensor] = []
        for lam in range(max_lambda + 1):
            block = values[:, lam * lam : (lam + 1) ** 2]
            self.projectors.append(torch.linalg.pinv(block.T))
            m = torch.arange(-lam, lam + 1)
            self.signs.append(torch.where(m % 2 != 0, -1.0, 1.0).to(torch.float64))

    def _inner_name(self, name: str) -> str:
        """The name the wrapped module knows an output by (a model trained with a
        deprecated name, e.g. ``non_conservative_forces``, is asked for it by the
        engine under the current one)."""
        if name in self.inner_names:
            return self.inner_names[name]
        return name

    def _outer_name(self, inner_name: str, outputs: Dict[str, ModelOutput]) -> str:
        for outer, inner in self.inner_names.items():
            if inner == inner_name and (
                outer in outputs or "equiscope::variance::" + outer in outputs
            ):
                return outer
        return inner_name

    def _elements(self) -> torch.Tensor:
        if self.mode == "average" or self.mode == "diagnose":
            return self.rotations
        counter = int(self.counter.item())
        self.counter += 1
        rotation = random_element(self.seed, counter, self.inversion).to(self.rotations.dtype)
        if self.mode == "random":
            return rotation.unsqueeze(0)
        return self.rotations @ rotation.to(self.rotations.device)

    def _wigner_for(self, lam: int, elements: torch.Tensor) -> torch.Tensor:
        if lam >= len(self.wigner):
            raise ValueError(
                "spherical output of lambda "
                + str(lam)
                + " is above the head's max_lambda "
                + str(len(self.wigner) - 1)
            )
        if self.mode == "average" or self.mode == "diagnose":
            return self.wigner[lam].to(elements.device)
        # random frames: Wigner D of the (proper parts of the) drawn elements
        matrices = elements.to(torch.float64)
        det = torch.linalg.det(matrices).round()
        proper = matrices * det.reshape(-1, 1, 1)
        moved = torch.einsum("nb,kab->kna", self.probe_points.to(matrices.device), proper)
        values = self.harmonics(moved)[:, :, lam * lam : (lam + 1) * (lam + 1)]
        d = values.transpose(1, 2) @ self.projectors[lam].to(matrices.device)
        sign = self.signs[lam].to(matrices.device)
        return sign.reshape(1, -1, 1) * d * sign.reshape(1, 1, -1)

    def _copies_per_call(
        self, systems: List[System], outputs: Dict[str, ModelOutput], n: int
    ) -> int:
        """Copies of every system per inner call (:func:`~equiscope_atoms._chunks.
        copies_per_call`); all ``n`` in one call in training mode, and when gradients
        are needed for an averaged output that is not one value per system."""
        if self.training or self.atoms_per_call <= 0:
            return n
        n_atoms = 0
        for system in systems:
            n_atoms += len(system)
        per_call = copies_per_call(n, n_atoms, self.atoms_per_call)
        prefix = "equiscope::variance::"
        if per_call < n and torch.is_grad_enabled():
            inputs, _ = gradient_inputs(systems)
            if len(inputs) > 0 and self.mode != "diagnose":
                for name, output in outputs.items():
                    if not name.startswith(prefix) and output.sample_kind != "system":
                        return n
        return per_call

    def _copies(self, systems: List[System], elements: torch.Tensor) -> List[System]:
        """``g_i x`` for every system and element, system-major (copy ``s n + i``)."""
        n = elements.shape[0]
        # improper copies get the right-handed cell -c R^T (the same lattice) and the
        # negated cell shifts, so that their pair vectors stay R (r_j - r_i + S c)
        improper: List[bool] = (torch.linalg.det(elements.to(torch.float64)) < 0).tolist()
        copies: List[System] = []
        for system in systems:
            for i in range(n):
                matrix = elements[i].to(system.positions.dtype)
                flipped = improper[i]
                cell = system.cell @ matrix.T
                copy = System(
                    types=system.types,
                    positions=system.positions @ matrix.T,
                    cell=-cell if flipped else cell,
                    pbc=system.pbc,
                )
                for options in system.known_neighbor_lists():
                    neighbors = system.get_neighbor_list(options)
                    rotated = torch.einsum("ab,pbc->pac", matrix, neighbors.values)
                    samples = neighbors.samples
                    if flipped:
                        shifted = samples.values.clone()
                        shifted[:, 2:5] = -shifted[:, 2:5]
                        samples = Labels(samples.names, shifted)
                    copy.add_neighbor_list(
                        options,
                        TensorBlock(
                            values=rotated,
                            samples=samples,
                            components=neighbors.components,
                            properties=neighbors.properties,
                        ),
                    )
                copies.append(copy)
        return copies

    def _copy_selection(
        self, selected_atoms: Optional[Labels], n_systems: int, n: int
    ) -> Optional[Labels]:
        """``selected_atoms`` for the copies of :meth:`_copies`."""
        if selected_atoms is None:
            return None
        values = selected_atoms.values
        rows: List[torch.Tensor] = []
        for s in range(n_systems):
            mine = values[values[:, 0] == s]
            for i in range(n):
                moved = mine.clone()
                moved[:, 0] = s * n + i
                rows.append(moved)
        return Labels(selected_atoms.names, torch.cat(rows))

    def _symmetrized(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        elements = self._elements()
        weights = self.weights
        if self.mode == "random" or self.mode == "random-group":
            weights = torch.full(
                [elements.shape[0]],
                1.0 / elements.shape[0],
                dtype=elements.dtype,
                device=elements.device,
            )
        n = elements.shape[0]
        prefix = "equiscope::variance::"
        inner: Dict[str, ModelOutput] = {}
        for name, output in outputs.items():
            source = name[len(prefix) :] if name.startswith(prefix) else name
            source = self._inner_name(source)
            if source not in inner:
                inner[source] = output
        result: Dict[str, TensorMap] = {}
        if self.mode == "diagnose":
            plain: Dict[str, ModelOutput] = {}
            for name, output in outputs.items():
                if not name.startswith(prefix):
                    plain[self._inner_name(name)] = output
            if len(plain) > 0:
                direct = self._evaluate(systems, plain, selected_atoms)
                for inner_name, tensor in direct.items():
                    result[self._outer_name(inner_name, outputs)] = tensor
        # chunks of copies (see equiscope_atoms._chunks): float64 moments about the
        # first copy per block ("slot"); with several chunks every chunk's graph is
        # let go, after its gradients w.r.t. the systems' inputs were taken
        per_call = self._copies_per_call(systems, outputs, n)
        chunked = per_call < n
        inputs: List[torch.Tensor] = []
        owners: List[int] = []
        proxy_inputs: List[torch.Tensor] = []
        sources = systems
        if chunked and torch.is_grad_enabled():
            inputs, owners = gradient_inputs(systems)
            if len(inputs) > 0:
                sources = detached_proxies(systems)
                proxy_inputs, _ = gradient_inputs(sources)
        total = weights.to(torch.float64).sum()
        keys: Dict[str, Labels] = {}
        moments: Dict[str, List[torch.Tensor]] = {}  # reference, S, Q
        labels: Dict[str, List[Labels]] = {}  # samples, properties, *components
        gradients: Dict[str, List[torch.Tensor]] = {}
        for start in range(0, n, per_call):
            stop = min(n, start + per_call)
            self._add_chunk(
                sources,
                inner,
                outputs,
                selected_atoms,
                elements[start:stop],
                weights[start:stop],
                total,
                chunked,
                proxy_inputs,
                keys,
                moments,
                labels,
                gradients,
            )
        for name, tensor_keys in keys.items():
            blocks: List[TensorBlock] = []
            spreads: List[TensorBlock] = []
            for index in range(len(tensor_keys)):
                slot = name + "\n" + str(index)
                reference = moments[slot][0]
                samples = labels[slot][0]
                properties = labels[slot][1]
                components = labels[slot][2:]
                mean, variance = finish_moments(
                    reference, moments[slot][1], moments[slot][2], total, len(components)
                )
                mean = mean.to(reference.dtype)
                if slot in gradients:
                    mean = with_gradient(mean, inputs, owners, gradients[slot])
                flat_shape = [mean.shape[0] * mean.shape[1]]
                for size in mean.shape[2:]:
                    flat_shape.append(size)
                blocks.append(
                    TensorBlock(
                        values=mean.reshape(flat_shape),
                        samples=samples,
                        components=components,
                        properties=properties,
                    )
                )
                spreads.append(
                    TensorBlock(
                        values=variance.to(reference.dtype).reshape(flat_shape[0], -1),
                        samples=samples,
                        components=[],
                        properties=properties,
                    )
                )
            if name in outputs and self.mode != "diagnose":
                result[name] = TensorMap(tensor_keys, blocks)
            if prefix + name in outputs:
                result[prefix + name] = TensorMap(tensor_keys, spreads)
        return result

    def _add_chunk(
        self,
        systems: List[System],
        inner: Dict[str, ModelOutput],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
        elements: torch.Tensor,
        weights: torch.Tensor,
        total: torch.Tensor,
        chunked: bool,
        inputs: List[torch.Tensor],
        keys: Dict[str, Labels],
        moments: Dict[str, List[torch.Tensor]],
        labels: Dict[str, List[Labels]],
        gradients: Dict[str, List[torch.Tensor]],
    ) -> None:
        """Evaluate the copies of one chunk of ``elements`` and add them to the
        moments (and, when ``inputs`` need them, to the gradients) of every block.
        Nothing of the chunk but detached moments and gradients outlives the call."""
        raw = self._evaluate(
            self._copies(systems, elements),
            inner,
            self._copy_selection(selected_atoms, len(systems), elements.shape[0]),
        )
        shares: List[torch.Tensor] = []
        share_slots: List[str] = []
        for inner_name, tensor in raw.items():
            name = self._outer_name(inner_name, outputs)
            first_chunk = name not in keys
            if first_chunk:
                keys[name] = tensor.keys
            averaged = name in outputs and self.mode != "diagnose"
            for index in range(len(tensor.keys)):
                slot = name + "\n" + str(index)
                block = tensor.block(index)
                z, samples = self._back_transformed(
                    name, tensor.keys.entry(index), block, elements, len(systems)
                )
                if chunked and len(inputs) > 0 and averaged:
                    if z.shape[2] != 1:
                        raise ValueError(
                            "output '"
                            + name
                            + "' has "
                            + str(z.shape[2])
                            + " samples per system: gradients through a chunked head "
                            + "need one (set atoms_per_call=0)"
                        )
                    share = torch.einsum(
                        "i,sij->j",
                        (weights / total).to(z.dtype),
                        z.reshape(z.shape[0], z.shape[1], -1),
                    )
                    if share.requires_grad:
                        shares.append(share)
                        share_slots.append(slot)
                if chunked:
                    z = z.detach()
                if first_chunk:
                    reference = z[:, 0]
                    slot_labels = [samples, block.properties]
                    for component in block.components:
                        slot_labels.append(component)
                    labels[slot] = slot_labels
                else:
                    reference = moments[slot][0]
                first, second = chunk_moments(z, weights, reference, len(block.components))
                if first_chunk:
                    moments[slot] = [reference, first, second]
                else:
                    moments[slot] = [reference, moments[slot][1] + first, moments[slot][2] + second]
        if len(shares) > 0:
            sums: List[List[torch.Tensor]] = []
            for k in range(len(shares)):
                slot = share_slots[k]
                if slot not in gradients:
                    gradients[slot] = zero_gradients(shares[k].shape[0], inputs)
                sums.append(gradients[slot])
            accumulate_gradients(shares, sums, inputs)

    def _back_transformed(
        self,
        name: str,
        key: LabelsEntry,
        block: TensorBlock,
        elements: torch.Tensor,
        n_systems: int,
    ) -> Tuple[torch.Tensor, Labels]:
        """The back-transformed copies ``z`` ``[systems, copies, rows, *components,
        properties]`` of ``block`` and the samples of their average."""
        n = elements.shape[0]
        names = [c.names[0] for c in block.components]
        system_column = block.samples.names.index("system")
        sample_values = block.samples.values
        order = torch.argsort(sample_values[:, system_column], stable=True)
        values = block.values[order]
        sample_values = sample_values[order]
        rows = values.shape[0] // (n_systems * n)
        shape = [n_systems, n, rows]
        for size in values.shape[1:]:
            shape.append(size)
        values = values.reshape(shape)
        r = elements.to(values.dtype)
        if len(names) == 0:
            z = values
        elif names == ["xyz"]:
            z = torch.einsum("iba,sirbp->sirap", r, values)
        elif names == ["xyz_1", "xyz_2"]:
            z = torch.einsum("iba,sirbcp,icd->siradp", r, values, r)
        elif names == ["o3_mu"]:
            lam = int(key["o3_lambda"])
            sigma = int(key["o3_sigma"])
            d = self._wigner_for(lam, elements).to(values.dtype)
            det = torch.linalg.det(r)
            parity = torch.where(det < 0, float(sigma * (-1) ** lam), 1.0).to(values.dtype)
            z = torch.einsum("i,iba,sirbp->sirap", parity, d, values)
        elif names == ["o3_mu_1", "o3_mu_2"]:
            lam_1 = int(key["o3_lambda_1"])
            lam_2 = int(key["o3_lambda_2"])
            sign = int(key["o3_sigma_1"]) * int(key["o3_sigma_2"]) * (-1) ** (lam_1 + lam_2)
            d_1 = self._wigner_for(lam_1, elements).to(values.dtype)
            d_2 = self._wigner_for(lam_2, elements).to(values.dtype)
            det = torch.linalg.det(r)
            parity = torch.where(det < 0, float(sign), 1.0).to(values.dtype)
            z = torch.einsum("i,iba,icd,sirbcp->siradp", parity, d_1, d_2, values)
        else:
            raise ValueError(
                "cannot symmetrise output '"
                + name
                + "': block components "
                + str(names)
                + " are neither Cartesian (xyz, xyz_1/xyz_2) nor spherical (o3_mu,"
                + " o3_mu_1/o3_mu_2)"
            )
        new_samples = sample_values.reshape(n_systems, n, rows, -1)[:, 0].clone()
        new_samples[:, :, system_column] = torch.arange(
            n_systems, dtype=new_samples.dtype, device=new_samples.device
        ).reshape(-1, 1)
        samples = Labels(block.samples.names, new_samples.reshape(n_systems * rows, -1))
        return z, samples


class SymmetrizedHead(OrbitAveraging, torch.nn.Module):
    """TorchScript-compatible wrapper applying a symmetrised head to ``model``."""

    def __init__(
        self,
        model: torch.nn.Module,
        grid: Optional[eq.Grid],
        *,
        mode: str,
        seed: int,
        inversion: bool,
        max_lambda: int,
        dtype: torch.dtype,
        atoms_per_call: int = DEFAULT_ATOMS_PER_CALL,
    ):
        super().__init__()
        self.model = model
        self._setup_head(
            grid,
            mode=mode,
            seed=seed,
            inversion=inversion,
            max_lambda=max_lambda,
            dtype=dtype,
            atoms_per_call=atoms_per_call,
        )
        self._requested_neighbor_lists: List[NeighborListOptions] = []

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        """The wrapped model's neighbour lists (a loaded TorchScript model no longer
        exposes them itself, so they are copied at wrapping time)."""
        return self._requested_neighbor_lists

    def _evaluate(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        return self.model(systems, outputs, selected_atoms)

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels],
    ) -> Dict[str, TensorMap]:
        return self._symmetrized(systems, outputs, selected_atoms)


def head_description(model: AtomisticModel) -> Optional[str]:
    """How ``model`` was symmetrised (e.g. ``"mode average, grid octahedral, 48
    evaluations per call"``) when it is already a symmetrised head, else ``None``.

    Reads the marker :func:`symmetrize_model` writes in the metadata; files written
    before the marker existed are recognised by their wrapper module's name."""
    extra = model.metadata().extra
    if HEAD_MARKER in extra:
        return extra[HEAD_MARKER]
    module = model.module
    if getattr(module, "original_name", type(module).__name__) == "SymmetrizedHead":
        mode = str(getattr(module, "mode", "?"))
        size = int(module.rotations.shape[0]) if mode != "random" else 1
        return f"mode {mode}, {size} evaluations per call"
    return None


def _describe(mode: str, grid: Optional[eq.Grid], atoms_per_call: int) -> str:
    if grid is None:
        return f"mode {mode}, 1 random frame per call"
    chunks = (
        "all copies in one inner call"
        if atoms_per_call <= 0
        else f"up to {atoms_per_call} atoms per inner call"
    )
    return (
        f"mode {mode}, grid {grid.name} ({grid.group.name}), {grid.size} evaluations per call, "
        + chunks
    )


def symmetrize_model(
    model: AtomisticModel,
    *,
    mode: str = DEFAULT_MODE,
    grid: Optional[eq.Grid] = None,
    seed: int = 0,
    inversion: bool = DEFAULT_INVERSION,
    max_lambda: int = DEFAULT_MAX_LAMBDA,
    diagnostics: bool = False,
    atoms_per_call: int = DEFAULT_ATOMS_PER_CALL,
) -> AtomisticModel:
    """Wrap an exported metatomic ``model`` in a :class:`SymmetrizedHead`; the result
    is an ``AtomisticModel`` (save it with ``.save(path)``), marked as a head in its
    metadata (``extra["equiscope::head"]``, see :func:`head_description`).

    ``grid`` defaults to ``DEFAULT_GRID`` (octahedral) with ``inversion`` for every
    mode but ``random``. A model that already is a symmetrised head is refused.

    With ``diagnostics=True`` the head also offers ``equiscope::variance::<name>`` for
    every output: the equivariance variance A^2 of the copies it averages (summed over
    components), so any engine can log the symmetry error along a run.

    ``atoms_per_call`` bounds the memory of a call: the copies are evaluated in chunks
    of ``max(1, atoms_per_call // atoms)`` copies of every system (``atoms``: all atoms
    of the call's systems), and when the engine wants forces or stress each chunk's
    gradient with respect to positions, cell and neighbour-list vectors is taken at
    once and its graph freed (see :mod:`equiscope_atoms._chunks`). Such a call gives
    first derivatives only:
    no Hessians through autograd (finite differences, as ``ase.phonons`` uses, work),
    and no gradient of the variance outputs. Per-atom outputs needed with gradients
    (e.g. per-atom energies for per-atom stresses) fall back to one call. ``0``
    evaluates all copies in one call, with the full autograd graph."""
    if isinstance(atoms_per_call, bool) or not isinstance(atoms_per_call, int):
        raise ValueError(f"atoms_per_call must be an integer, got {atoms_per_call!r}")
    if atoms_per_call < 0:
        raise ValueError(f"atoms_per_call must be 0 (no chunks) or positive, got {atoms_per_call}")
    existing = head_description(model)
    if existing is not None:
        raise ValueError(
            f"model '{model.metadata().name}' is already a symmetrised head ({existing}); "
            "wrap the raw model instead"
        )
    capabilities = model.capabilities()
    dtype = getattr(torch, capabilities.dtype or "float64")
    if grid is None and mode != "random" and mode in HEAD_MODES:
        grid = eq.grid(DEFAULT_GRID, inversion=inversion)
    if grid is not None and grid.group.name not in ("O(3)", "SO(3)"):
        raise ValueError(f"heads need an SO(3) or O(3) grid, got {grid.group.name}")
    head = SymmetrizedHead(
        model.module,
        grid,
        mode=mode,
        seed=seed,
        inversion=inversion,
        max_lambda=max_lambda,
        dtype=dtype,
        atoms_per_call=atoms_per_call,
    )
    for options in model.requested_neighbor_lists():
        copied = NeighborListOptions(options.cutoff, options.full_list, options.strict)
        for requestor in options.requestors():
            copied.add_requestor(requestor)
        head._requested_neighbor_lists.append(copied)
    from .models import current_quantity_name, wrap_model

    declared = wrap_model(model).auditable_outputs()  # without deprecated aliases
    outputs = {name: capabilities.outputs[name] for name in declared}
    # the names the wrapped module itself knows (metatomic adds aliases around it)
    known = list(getattr(model, "_model_capabilities_outputs_names", capabilities.outputs))
    for old in known:
        current = current_quantity_name(old)
        if current != old and current in declared and current not in known:
            head.inner_names[current] = old
    if diagnostics or mode == "diagnose":
        if mode == "random":
            raise ValueError("diagnostics need several copies per call: use 'average'")
        for name in declared:
            source = capabilities.outputs[name]
            unit = f"({source.unit})^2" if source.unit else ""
            outputs["equiscope::variance::" + name] = ModelOutput(
                unit=unit,
                sample_kind=source.sample_kind,
                description=f"A^2 of '{name}' over the head's grid, summed over components",
            )
    new_capabilities = ModelCapabilities(
        outputs=outputs,
        atomic_types=capabilities.atomic_types,
        interaction_range=capabilities.interaction_range,
        length_unit=capabilities.length_unit,
        supported_devices=capabilities.supported_devices,
        dtype=capabilities.dtype,
    )
    metadata = model.metadata()
    extra = dict(metadata.extra)
    extra[HEAD_MARKER] = _describe(mode, None if mode == "random" else grid, atoms_per_call)
    marked = ModelMetadata(
        name=metadata.name,
        description=metadata.description,
        authors=metadata.authors,
        references=metadata.references,
        extra=extra,
    )
    return AtomisticModel(head.eval(), marked, new_capabilities)
