"""Tensor-basis readout for lambda = 1 and 2 targets: the trunk gives scalar
coefficients, the edge directions give the angular part.

For a block of angular momentum ``lambda`` with ``P`` properties, the edge last layer of
every readout layer predicts ``c_ij^p`` from the edge features and the block is

    y_i^p = sum_layers sum_j f_c(r_ij) c_ij^p Y_lambda(r_hat_ij)

(Domina, Bigi, Pegolo, Ceriotti, J. Chem. Phys. 2025; science.md section 6). The basis
``Y_lambda(r_hat_ij)`` rotates with the structure, ``Y(R r) = D(R) Y(r)``, and has the
parity ``(-1)^lambda`` of a proper tensor, so ``y`` is exactly O(3)-equivariant whenever
the coefficients are invariant, and its equivariance error is that of the coefficients
otherwise; a constant (bias) coefficient is harmless. The coefficient is the sum of
PET's edge readout of ``ij`` and its node readout of ``i`` (so every parameter is used).
Blocks that qualify: Cartesian ``xyz`` vectors (``Y_1 = r_hat``); spherical blocks with
``o3_sigma = 1`` and ``o3_lambda = 1`` (``m = -1, 0, 1``: ``y, z, x``) or ``o3_lambda =
2`` (metatomic's real harmonics, :class:`equiscope.groups.harmonics.SphericalHarmonics`
with ``condon_shortley=False``), up to ``max_lambda``; and, for ``max_lambda >= 2``,
the direct stress ``non_conservative_stress`` (a symmetric Cartesian rank-2 tensor, which
PET itself symmetrises and divides by the volume) on the two-element basis

    sigma_i^p = sum_layers sum_j f_c(r_ij) (a_ij^p r_hat r_hat^T + b_ij^p 1)

(two coefficients per edge and property). Other blocks keep PET's readout
(pseudotensors, ``o3_sigma = -1``, and the antisymmetric part of general rank-2 tensors
need more than one edge per term).
metatrain's LLPR uncertainties assume outputs linear in the last-layer features,
which these blocks are not.

TorchScript-compatible; no ``from __future__ import annotations`` here.
"""

from typing import Dict, List, Tuple

import torch
from metatrain.pet.modules.backend import PETBackend, process_non_conservative_stress

from ._torchscript import renamed

__all__ = ["TensorBasisBackend", "basis_kind"]

CARTESIAN = 0
SPHERICAL_1 = 1
SPHERICAL_2 = 2
SYMMETRIC_RANK_2 = 3
BASIS_SIZE = {CARTESIAN: 1, SPHERICAL_1: 1, SPHERICAL_2: 1, SYMMETRIC_RANK_2: 2}
"""Coefficients per edge and property of each kind."""


def basis_kind(
    component_names: List[str],
    key: Dict[str, int],
    max_lambda: int = 2,
    symmetric: bool = False,
) -> int:
    """``CARTESIAN``, ``SPHERICAL_1``, ``SPHERICAL_2``, ``SYMMETRIC_RANK_2`` or -1 (keep
    PET's readout) for a target block, taking lambda up to ``max_lambda``; rank-2
    Cartesian blocks only when the target is ``symmetric`` (the direct stress)."""
    if component_names == ["xyz"] and max_lambda >= 1:
        return CARTESIAN
    if component_names == ["xyz_1", "xyz_2"] and symmetric and max_lambda >= 2:
        return SYMMETRIC_RANK_2
    o3_lambda = key.get("o3_lambda", -1)
    if component_names == ["o3_mu"] and key.get("o3_sigma") == 1 and 1 <= o3_lambda <= max_lambda:
        return SPHERICAL_1 if o3_lambda == 1 else SPHERICAL_2
    return -1


class TensorBasisBackend(PETBackend):
    """PET's backend whose ``predict`` reads the blocks listed in
    ``tensor_basis_blocks`` (``"<target>/<block key>" -> kind``) out on the edge basis;
    ``tensor_basis_harmonics`` (an :class:`equiscope.groups.harmonics.SphericalHarmonics`,
    set with the blocks) gives the lambda = 2 harmonics."""

    tensor_basis_blocks: Dict[str, int]
    # TorchScript has no super(): PET's predict, under another name
    _pet_predict = renamed(PETBackend.predict, "_pet_predict")

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
        # the kinds of basis this call needs (of the requested outputs' blocks)
        # (target names may hold "/" themselves, as variants do: match prefixes)
        kinds: List[int] = []
        for name, kind in self.tensor_basis_blocks.items():
            for output_name in requested_output_names:
                if name.startswith(output_name + "/"):
                    kinds.append(kind)
        # PET's readout of the direct stress needs 9 numbers per property: the stress on
        # (r r^T, 1) is read out here only (its one block is on the basis)
        pet_names: List[str] = []
        for name in requested_output_names:
            if not (name == "non_conservative_stress" and 3 in kinds):  # SYMMETRIC_RANK_2
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
        spherical = unit[:, :, [1, 2, 0]]  # real harmonics order m = -1, 0, 1: y, z, x
        # bases [atoms, neighbours, basis elements, components]
        vector = unit.unsqueeze(2)
        spherical = spherical.unsqueeze(2)
        quadrupolar = vector  # placeholder unless a lambda = 2 block needs the harmonics
        if 2 in kinds:  # SPHERICAL_2
            # m = -2..2 in metatomic's convention (no Condon-Shortley phase)
            quadrupolar = self.tensor_basis_harmonics(unit)[:, :, 4:9]
            quadrupolar = quadrupolar.unsqueeze(2)
        rank_2 = vector  # placeholder unless the direct stress needs (r r^T, 1)
        if 3 in kinds:  # SYMMETRIC_RANK_2
            outer = (unit.unsqueeze(-1) * unit.unsqueeze(-2)).reshape(unit.shape[0], -1, 9)
            identity = torch.eye(3, dtype=unit.dtype, device=unit.device).reshape(1, 1, 9)
            rank_2 = torch.stack([outer, identity.expand_as(outer)], dim=2)
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
                                    basis = vector
                                    if kind == 1:  # SPHERICAL_1
                                        basis = spherical
                                    elif kind == 2:  # SPHERICAL_2
                                        basis = quadrupolar
                                    elif kind == 3:  # SYMMETRIC_RANK_2
                                        basis = rank_2
                                    # c_ij: edge readout of ij + node readout of i
                                    coefficients = linear(features) + node_terms[key].unsqueeze(1)
                                    coefficients = coefficients.reshape(
                                        coefficients.shape[0],
                                        coefficients.shape[1],
                                        basis.shape[2],
                                        -1,
                                    )
                                    value = torch.einsum(
                                        "akbp,akbc,ak->acp", coefficients, basis, weight
                                    )
                                    value = value.reshape(value.shape[0], -1)
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
