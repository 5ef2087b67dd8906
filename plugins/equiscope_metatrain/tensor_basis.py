"""Tensor-basis readout: the trunk gives scalar coefficients, the edge directions give
the angular part, so the output is exactly O(3)-equivariant whenever the coefficients
are invariant (and otherwise carries only their error).

Two-body blocks. For a block of angular momentum ``lambda`` with ``P`` properties, the
edge last layer of every readout layer predicts ``c_ij^p`` and

    y_i^p = sum_layers sum_j f_c(r_ij) c_ij^p Y_lambda(r_hat_ij)

(Domina, Bigi, Pegolo, Ceriotti, J. Chem. Phys. 2025, arXiv:2505.05404).
``Y_lambda(R r) = D(R) Y_lambda(r)`` with parity ``(-1)^lambda``: this covers Cartesian
``xyz`` vectors (``Y_1 = r_hat``) and spherical blocks with ``o3_sigma = 1``, ``1 <=
o3_lambda <= max_lambda`` (metatomic's real harmonics,
:class:`equiscope.groups.harmonics.SphericalHarmonics` with ``condon_shortley=False``;
``lambda = 1`` as ``y, z, x``). The direct stress ``non_conservative_stress`` (symmetric;
PET symmetrises it and divides by the volume) is read out on ``(r_hat r_hat^T, 1)``, two
coefficients per edge.

Three-body blocks (``cross_products``). One edge has no axial part, so pseudotensors
and antisymmetric tensors need two: ``r_hat_ij x r_hat_ik``. The coefficient matrix
over ``(j, k)`` is taken of rank ``C = CROSS_CHANNELS``, which factorises the double sum
into vector channels ``u_i^{cp} = sum_j f_c(r_ij) a_ij^{cp} r_hat_ij`` (and likewise
``v``, ``w`` from further coefficients), at the cost of a two-body sum:

- pseudoscalar (``o3_lambda = 0, o3_sigma = -1``): ``sum_c u_c . (v_c x w_c)``;
- pseudovector (``o3_lambda = 1, o3_sigma = -1``): ``sum_c u_c x v_c``;
- ``o3_lambda = 2, o3_sigma = -1``: the lambda = 2 part of ``sum_c (u_c x v_c) w_c^T``;
- ``o3_lambda >= 3, o3_sigma = -1`` (``higher_pseudotensors``): ``sum_c (u_c . G)
  t_c``, with ``t_c = sum_j f_c(r_ij) b_ij^c Y_lambda(r_hat_ij)`` and ``G`` the real
  generators of ``D^lambda`` (:func:`equiscope.groups.wigner.wigner_generators`, a vector
  operator) over ``sqrt(lambda (lambda + 1))``: the angular momentum ``u_c . (r x
  grad)`` applied to the harmonics, odd under inversion like ``u_c``;
- a general (non-symmetric) Cartesian rank-2 target: ``sum_j f_c (a r_hat r_hat^T +
  b 1) + [sum_c u_c x v_c]_x`` (its symmetric part from one edge, its antisymmetric
  part, an axial vector, from two).

Other blocks keep PET's readout: proper scalars (invariant already), blocks beyond
``max_lambda``; without ``higher_pseudotensors`` pseudotensors with ``o3_lambda >= 3``;
with ``max_lambda = 1`` also
every rank-2 and lambda = 2 block; without ``cross_products`` the pseudotensors and
the general rank-2 targets. The coefficient is the sum of PET's edge readout of ``ij`` and
its node readout of ``i`` (so every parameter is used). metatrain's LLPR uncertainties
assume outputs linear in the last-layer features, which these blocks are not.

TorchScript-compatible; no ``from __future__ import annotations`` here.
"""

from typing import Dict, List, Tuple

import torch
from metatrain.pet.modules.backend import PETBackend, process_non_conservative_stress

from ._torchscript import renamed

__all__ = ["CROSS_CHANNELS", "TensorBasisBackend", "basis_kind", "basis_size"]

VECTOR = 0
"""A Cartesian ``xyz`` vector: ``sum_j c r_hat``."""
SPHERICAL = 1
"""A proper spherical block (``o3_sigma = 1``): ``sum_j c Y_lambda(r_hat)``."""
SYMMETRIC_RANK_2 = 3
"""The direct stress: ``sum_j (a r_hat r_hat^T + b 1)``."""
PSEUDOSCALAR = 4
PSEUDOVECTOR = 5
PSEUDO_LAMBDA_2 = 6
RANK_2 = 7
"""A general Cartesian rank-2 block: symmetric part from one edge, axial from two."""
PSEUDO_HIGHER = 8
"""A pseudotensor with ``o3_lambda >= 3``: ``sum_c (u_c . G) t_c``."""
CROSS_CHANNELS = 4
"""Rank ``C`` of the three-body coefficient matrices (vector channels per property)."""


def basis_size(kind: int, channels: int = CROSS_CHANNELS) -> int:
    """Coefficients per edge and property of a block of ``kind``, with ``channels``
    vector channels for the cross products. (TorchScript: literals for the kinds.)"""
    if kind == 3:  # SYMMETRIC_RANK_2
        return 2
    if kind == 4 or kind == 6:  # PSEUDOSCALAR, PSEUDO_LAMBDA_2: u, v, w
        return 3 * channels
    if kind == 5 or kind == 8:  # PSEUDOVECTOR: u, v; PSEUDO_HIGHER: u, t
        return 2 * channels
    if kind == 7:  # RANK_2
        return 2 + 2 * channels
    return 1  # VECTOR, SPHERICAL


def basis_kind(
    component_names: List[str],
    key: Dict[str, int],
    max_lambda: int = 2,
    symmetric: bool = False,
    cross_products: bool = True,
    higher_pseudotensors: bool = True,
) -> int:
    """The kind of basis of a target block, or -1 (keep PET's readout). Proper blocks up
    to ``max_lambda`` (rank-2 Cartesian ones count as 2); rank-2 Cartesian blocks on
    ``(r_hat r_hat^T, 1)`` when the target is ``symmetric`` (the direct stress), else
    with the cross products; pseudotensors up to lambda = 2 with the cross products, and
    beyond with ``higher_pseudotensors`` too."""
    if component_names == ["xyz"] and max_lambda >= 1:
        return VECTOR
    if component_names == ["xyz_1", "xyz_2"] and max_lambda >= 2:
        if symmetric:
            return SYMMETRIC_RANK_2
        return RANK_2 if cross_products else -1
    if component_names != ["o3_mu"]:
        return -1
    o3_lambda = key.get("o3_lambda", -1)
    if key.get("o3_sigma") == 1 and 1 <= o3_lambda <= max_lambda:
        return SPHERICAL
    if key.get("o3_sigma") == -1 and cross_products and o3_lambda <= max_lambda:
        pseudo = {0: PSEUDOSCALAR, 1: PSEUDOVECTOR, 2: PSEUDO_LAMBDA_2}
        if o3_lambda >= 3:
            return PSEUDO_HIGHER if higher_pseudotensors else -1
        return pseudo.get(o3_lambda, -1)
    return -1


def _channels(coefficients: torch.Tensor, unit: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``[atoms, neighbours, channels, P]`` coefficients -> the vectors ``sum_j f_c
    c_ij r_hat_ij``, ``[atoms, channels, P, 3]``."""
    return torch.einsum("aknp,akx,ak->anpx", coefficients, unit, weight)


def _axials(channels: torch.Tensor, c: int) -> torch.Tensor:
    """``u_c x v_c`` of the first ``2 c`` channels, ``[atoms, c, P, 3]``."""
    return torch.linalg.cross(channels[:, :c], channels[:, c : 2 * c], dim=-1)


def _precise_channels(
    coefficients: torch.Tensor, unit: torch.Tensor, weight: torch.Tensor
) -> torch.Tensor:
    """:func:`_channels` in float64, for the cross products: the channels of an atom
    share a large common part (``sum_j f_c r_hat_ij`` times the mean coefficient), which
    the products cancel; in float32 that cancellation cost two digits of equivariance."""
    return _channels(coefficients.double(), unit.double(), weight.double())


def _skew(axial: torch.Tensor) -> torch.Tensor:
    """``[..., 3] -> [..., 9]``: the antisymmetric matrix ``[w]_x`` (``[w]_x r = w x
    r``), row-major."""
    x, y, z = axial[..., 0], axial[..., 1], axial[..., 2]
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1)


class TensorBasisBackend(PETBackend):
    """PET's backend whose ``predict`` reads the blocks listed in
    ``tensor_basis_blocks`` (``"<target>/<block key>" -> kind``, with
    ``tensor_basis_lambdas`` for spherical blocks and pseudotensors beyond lambda = 2)
    out on the edge bases;
    ``tensor_basis_harmonics`` (an :class:`equiscope.groups.harmonics.SphericalHarmonics`)
    gives the harmonics, the buffer ``tensor_basis_lambda_2`` (``[5, 9]``) the
    lambda = 2 components of a Cartesian rank-2 tensor and ``tensor_basis_generators``
    (``[max_lambda + 1, 3, 2 max_lambda + 1, 2 max_lambda + 1]``, zero-padded) the
    generators of ``D^lambda`` over ``sqrt(lambda (lambda + 1))``."""

    tensor_basis_blocks: Dict[str, int]
    tensor_basis_lambdas: Dict[str, int]
    tensor_basis_channels: int
    # TorchScript has no super(): PET's predict, under another name
    _pet_predict = renamed(PETBackend.predict, "_pet_predict")

    def _basis_values(
        self,
        kind: int,
        o3_lambda: int,
        coefficients: torch.Tensor,
        unit: torch.Tensor,
        weight: torch.Tensor,
        harmonics: torch.Tensor,
    ) -> torch.Tensor:
        """One layer's block, ``[atoms, components x P]``, from the coefficients
        ``[atoms, neighbours, basis size, P]``."""
        # (TorchScript takes no global constants: the kinds are literals here)
        atoms = coefficients.shape[0]
        c = self.tensor_basis_channels
        if kind == 0 or (kind == 1 and o3_lambda == 1):  # VECTOR, SPHERICAL lambda = 1
            vectors = _channels(coefficients, unit, weight)[:, 0]  # [atoms, P, 3]
            if kind == 1:
                vectors = vectors[:, :, [1, 2, 0]]  # m = -1, 0, 1: y, z, x
            return vectors.transpose(1, 2).reshape(atoms, -1)
        if kind == 8:  # PSEUDO_HIGHER: sum_c (u_c . G) t_c, in float64 (see _precise_channels)
            size = 2 * o3_lambda + 1
            start = o3_lambda * o3_lambda
            basis = harmonics[:, :, start : start + size].double()
            vectors = _precise_channels(coefficients[:, :, :c], unit, weight)  # [a, c, P, 3]
            tensors = torch.einsum(
                "akcp,akm,ak->acpm", coefficients[:, :, c:].double(), basis, weight.double()
            )
            generators = self.tensor_basis_generators[o3_lambda, :, :size, :size].double()
            values = torch.einsum("acpx,xmn,acpn->amp", vectors, generators, tensors)
            return values.reshape(atoms, -1).to(unit.dtype)
        if kind == 1:  # SPHERICAL
            start = o3_lambda * o3_lambda
            basis = harmonics[:, :, start : start + 2 * o3_lambda + 1]
            values = torch.einsum("akp,akm,ak->amp", coefficients[:, :, 0], basis, weight)
            return values.reshape(atoms, -1)
        if kind == 3 or kind == 7:  # SYMMETRIC_RANK_2, RANK_2
            # sum_j f_c (a_j r_hat_j r_hat_j^T + b_j 1)
            weighted = coefficients[:, :, 0] * weight.unsqueeze(-1)  # [atoms, neighbours, P]
            values = torch.einsum("akp,akx,aky->axyp", weighted, unit, unit)
            values = values.reshape(atoms, 9, weighted.shape[-1])
            trace = torch.einsum("akp,ak->ap", coefficients[:, :, 1], weight)
            identity = torch.eye(3, dtype=unit.dtype, device=unit.device).reshape(1, 9, 1)
            values = values + identity * trace.unsqueeze(1)
            if kind == 7:  # RANK_2: the antisymmetric part from sum_c u_c x v_c
                channels = _precise_channels(coefficients[:, :, 2:], unit, weight)
                axial = _axials(channels, c).sum(dim=1).to(values.dtype)
                values = values + _skew(axial).transpose(1, 2)
            return values.reshape(atoms, -1)
        channels = _precise_channels(coefficients, unit, weight)
        axials = _axials(channels, c)  # [atoms, c, P, 3]
        if kind == 5:  # PSEUDOVECTOR
            axial = axials.sum(dim=1)[:, :, [1, 2, 0]]  # m = -1, 0, 1: y, z, x
            return axial.transpose(1, 2).reshape(atoms, -1).to(unit.dtype)
        third = channels[:, 2 * c :]  # w_c
        if kind == 4:  # PSEUDOSCALAR
            return (axials * third).sum(dim=(1, 3)).reshape(atoms, -1).to(unit.dtype)
        # PSEUDO_LAMBDA_2: the lambda = 2 part of sum_c (u_c x v_c) w_c^T
        outer = (axials.unsqueeze(-1) * third.unsqueeze(-2)).sum(dim=1)  # [atoms, P, 3, 3]
        projection = self.tensor_basis_lambda_2.to(outer.dtype)
        values = torch.einsum("mx,apx->amp", projection, outer.reshape(atoms, -1, 9))
        return values.reshape(atoms, -1).to(unit.dtype)

    def predict(
        self,
        node_features_list: List[torch.Tensor],
        edge_features_list: List[torch.Tensor],
        batch_data: Dict[str, torch.Tensor],
        cells: torch.Tensor,
        system_indices: torch.Tensor,
        requested_output_names: List[str],
    ) -> Tuple[
        Dict[str, List[torch.Tensor]],
        Dict[str, List[torch.Tensor]],
        Dict[str, List[torch.Tensor]],
    ]:
        # the requested blocks on a basis; target names may hold "/" themselves, as
        # variants do: match prefixes
        stress_on_basis = False
        need_harmonics = False
        for name, kind in self.tensor_basis_blocks.items():
            for output_name in requested_output_names:
                if name.startswith(output_name + "/"):
                    if kind == 3:  # SYMMETRIC_RANK_2
                        stress_on_basis = True
                    # SPHERICAL lambda >= 2, PSEUDO_HIGHER
                    if (kind == 1 and self.tensor_basis_lambdas[name] >= 2) or kind == 8:
                        need_harmonics = True
        # PET's readout of the direct stress needs 9 numbers per property: the stress on
        # (r r^T, 1) is read out here only (its one block is on the basis)
        pet_names: List[str] = []
        for name in requested_output_names:
            if not (name == "non_conservative_stress" and stress_on_basis):
                pet_names.append(name)
        atomic, node_ll, edge_ll = self._pet_predict(
            node_features_list,
            edge_features_list,
            batch_data,
            cells,
            system_indices,
            pet_names,
        )
        vectors = batch_data["edge_vectors"]
        lengths = torch.linalg.norm(vectors, dim=-1, keepdim=True)
        unit = vectors / torch.where(lengths > 0, lengths, torch.ones_like(lengths))
        weight = torch.where(
            batch_data["padding_mask"],
            batch_data["cutoff_factors"],
            torch.zeros_like(batch_data["cutoff_factors"]),
        )
        harmonics = unit  # placeholder unless a lambda >= 2 block needs the harmonics
        if need_harmonics:  # metatomic's convention (no Condon-Shortley phase)
            harmonics = self.tensor_basis_harmonics(unit)
        # (TorchScript unrolls loops over modules and indexes a ModuleDict only with
        # literals: no continue, no self.node_last_layers[name], hence the nesting)
        for output_name, edge_last_layers in self.edge_last_layers.items():
            if output_name in requested_output_names:
                totals: Dict[int, torch.Tensor] = {}
                for node_name, node_last_layers in self.node_last_layers.items():
                    if node_name == output_name:
                        for i, edge_last_layer in enumerate(edge_last_layers):
                            # the node readout's term, shared by the edges of an atom
                            node_terms: Dict[str, torch.Tensor] = {}
                            for j, node_last_layer in enumerate(node_last_layers):
                                if j == i:
                                    for key, node_linear in node_last_layer.items():
                                        if output_name + "/" + key in self.tensor_basis_blocks:
                                            node_terms[key] = node_linear(node_ll[output_name][i])
                            features = edge_ll[output_name][i]
                            block = 0
                            for key, linear in edge_last_layer.items():
                                name = output_name + "/" + key
                                if name in self.tensor_basis_blocks:
                                    kind = self.tensor_basis_blocks[name]
                                    o3_lambda = -1
                                    if name in self.tensor_basis_lambdas:
                                        o3_lambda = self.tensor_basis_lambdas[name]
                                    # c_ij: edge readout of ij + node readout of i
                                    coefficients = linear(features) + node_terms[key].unsqueeze(1)
                                    # (explicit sizes: a batch without edges has none)
                                    size = basis_size(kind, self.tensor_basis_channels)
                                    coefficients = coefficients.reshape(
                                        coefficients.shape[0],
                                        coefficients.shape[1],
                                        size,
                                        coefficients.shape[2] // size,
                                    )
                                    value = self._basis_values(
                                        kind, o3_lambda, coefficients, unit, weight, harmonics
                                    )
                                    if block in totals:
                                        totals[block] = totals[block] + value
                                    else:
                                        totals[block] = value
                                block += 1
                if output_name not in atomic:  # read out here only (the direct stress)
                    atomic[output_name] = [totals[block] for block in range(len(totals))]
                for block, value in totals.items():
                    if output_name == "non_conservative_stress":  # as PET's own readout
                        value = process_non_conservative_stress(
                            value, cells, system_indices, value.shape[1] // 9
                        )
                    atomic[output_name][block] = value
        return atomic, node_ll, edge_ll
