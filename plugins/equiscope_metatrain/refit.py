"""Least-squares refit of a PET-family readout on its frozen trunk.

Every output of PET's readout, and of the tensor-basis readout, is affine in the
weights and biases ``theta`` of its last linear layers (the features are fixed, the
scaler multiplies, the composition model adds): ``y(theta) = y(theta_0) + J (theta -
theta_0)`` exactly. Gradient descent on ``theta`` is slow when the target lies along
directions in which the features hardly vary between structures (the direct stress of
near-identical cells; see the README's direct-stress study). This solves for ``theta``
instead, by ridge regression on the change,

    Delta = argmin |J Delta - (y* - y(theta_0))|^2 + alpha |Delta|^2,

with ``J`` from autograd (exact: the map is affine) and ``alpha`` picked from
``ridges`` by the RMSE on held-out structures (``alpha = 0`` allowed: the minimum-norm
least-squares solution).
"""

from __future__ import annotations

import torch
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from .tensor_basis import PSEUDO_HIGHER, PSEUDO_LAMBDA_2, PSEUDOSCALAR, PSEUDOVECTOR, RANK_2

__all__ = ["readout_parameters", "refit_readout"]

BILINEAR_KINDS = (PSEUDOSCALAR, PSEUDOVECTOR, PSEUDO_LAMBDA_2, RANK_2, PSEUDO_HIGHER)
"""Tensor-basis kinds on products of two channels (pseudotensors, general rank 2)."""


def readout_parameters(model: torch.nn.Module, output: str) -> list[torch.nn.Parameter]:
    """The weights and biases of the last layers (node and edge, every GNN layer and
    block) that produce ``output`` in a PET-family model, whose output is affine in them
    (refused: tensor-basis blocks on cross products)."""
    backend = model.backend
    if output not in backend.node_last_layers:
        known = ", ".join(backend.node_last_layers.keys())
        raise ValueError(f"the model has no readout for output {output!r}; it has {known}")
    # the cross-product blocks multiply two channels of coefficients: not affine
    bilinear = [
        name.split("/", 1)[1]
        for name, kind in getattr(backend, "tensor_basis_blocks", {}).items()
        if name.startswith(output + "/") and kind in BILINEAR_KINDS
    ]
    if bilinear:
        raise ValueError(
            f"output {output!r} has blocks read out on cross products ({bilinear[0]}), "
            "which are not linear in the readout: it cannot be refitted by least squares"
        )
    parameters = []
    for layers in (backend.node_last_layers[output], backend.edge_last_layers[output]):
        for per_key in layers:
            for linear in per_key.values():
                parameters.extend(p for p in linear.parameters())
    return parameters


def _predictions(model, systems, output: str) -> torch.Tensor:
    """``[structures, values]``: the model's per-structure ``output`` (eval mode: scaled,
    with the additive models), one structure per call, flattened."""
    from metatomic.torch import ModelOutput

    request = {output: ModelOutput(sample_kind="system")}
    rows = [model([system], request)[output].block().values.reshape(-1) for system in systems]
    return torch.stack(rows)


def _with_orientations(model, systems, targets, output: str, orientations: int, seed: int):
    """``systems`` and ``targets`` followed by their copies under ``orientations``
    Haar-random rotations and the same rotations times the inversion (an O(3) random
    grid), with neighbour lists rebuilt and the targets transformed as the output's
    block (``rho(g) y``)."""
    from metatomic.torch import ModelOutput
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

    import equiscope as eq
    from equiscope.metrics.equivariance import representation
    from equiscope_atoms.orbit import output_irrep, transformed_system

    if orientations == 0:
        return systems, targets
    request = {output: ModelOutput(sample_kind="system")}
    with torch.no_grad():
        tensor_map = model([systems[0]], request)[output]
    if len(tensor_map) != 1:
        raise ValueError(f"the refit takes outputs of one block; {output!r} has {len(tensor_map)}")
    irrep = output_irrep(output, tensor_map.keys.entry(0), tensor_map.block(0))
    grid = eq.grid("random", n=orientations, seed=seed, inversion=True)
    rho, _ = representation(grid, irrep)  # [copies, d, d]
    d = rho.shape[-1]
    values = targets.reshape(len(systems), d, -1).to(rho.dtype)
    copied = torch.einsum("gde,nep->gndp", rho, values).to(targets.dtype)
    requests = model.requested_neighbor_lists()
    moved = [
        get_system_with_neighbor_lists(transformed_system(system, matrix), requests)
        for matrix in grid.rotations
        for system in systems
    ]
    return systems + moved, torch.cat([targets, copied.reshape(-1, targets.shape[1])])


def _design(model, systems, output: str, parameters) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictions ``[n, k]`` and their Jacobian ``[n, k, parameters]`` (one backward
    pass per value; the map is affine in the readout parameters)."""
    values, rows = [], []
    for system in systems:
        prediction = _predictions(model, [system], output)[0]
        jacobian = []
        for k in range(prediction.numel()):
            gradients = torch.autograd.grad(
                prediction[k], parameters, retain_graph=True, allow_unused=True
            )
            jacobian.append(
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(p)).reshape(-1)
                        for g, p in zip(gradients, parameters, strict=True)
                    ]
                )
            )
        values.append(prediction.detach())
        rows.append(torch.stack(jacobian))
    return torch.stack(values), torch.stack(rows)


def refit_readout(
    model: torch.nn.Module,
    systems: list,
    targets: torch.Tensor,
    validation_systems: list,
    validation_targets: torch.Tensor,
    *,
    output: str,
    orientations: int = 4,
    seed: int = 0,
    ridges: tuple[float, ...] = (0.0, 1e-16, 1e-14, 1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1.0),
) -> dict:
    """Refit the readout of ``output`` in place by ridge regression (module docstring).

    :param model: a PET-family metatrain model (PET, ``experimental.equiscope``); it is
        evaluated as given (dtype, device) in eval mode and left in eval mode
    :param systems: metatomic Systems with the model's neighbour lists, to fit on
    :param targets: ``[structures, values]``, the reference ``output`` of each, flattened
        as the model's block values
    :param validation_systems, validation_targets: the same, to pick the ridge
    :param orientations: fit and validate on the structures and on their copies under
        this many random rotations, each also with the inversion (targets transformed as
        the output): an unconstrained model learned its symmetry from such copies, and a
        fit on one orientation can trade it away for accuracy in that orientation
    :param seed: the random rotations
    :param ridges: candidate ``alpha``, relative to the mean squared singular value of ``J``
    :return: ``{"ridge", "validation_rmse_before", "validation_rmse_after",
        "training_rmse_before", "training_rmse_after"}`` (RMSE over all values)
    """
    if len(systems) == 0 or len(validation_systems) == 0:
        raise ValueError("refit_readout needs at least one training and one validation structure")
    model.eval()
    parameters = readout_parameters(model, output)
    dtype = parameters[0].dtype
    checked = []
    for label, structures, values in (
        ("targets", systems, targets),
        ("validation_targets", validation_systems, validation_targets),
    ):
        values = torch.as_tensor(values, dtype=dtype)
        if values.shape[0] != len(structures):
            raise ValueError(f"{label} has {values.shape[0]} rows for {len(structures)} structures")
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"{label} holds NaN or infinite values")
        checked.append(values.reshape(len(structures), -1))
    targets, validation_targets = checked
    with torch.no_grad():
        size = _predictions(model, systems[:1], output).shape[1]
    if size != targets.shape[1]:
        raise ValueError(
            f"targets have {targets.shape[1]} values per structure, output {output!r} gives {size}"
        )
    systems, targets = _with_orientations(model, systems, targets, output, orientations, seed)
    validation_systems, validation_targets = _with_orientations(
        model, validation_systems, validation_targets, output, orientations, seed + 1
    )
    values, jacobian = _design(model, systems, output, parameters)
    with torch.no_grad():
        validation_before = _predictions(model, validation_systems, output)
    matrix = jacobian.reshape(-1, jacobian.shape[-1]).double()
    residual = (targets - values).reshape(-1).double()
    # one SVD serves every ridge: Delta = V diag(s / (s^2 + alpha)) U^T r
    left, singular, right = torch.linalg.svd(matrix, full_matrices=False)
    projected = left.T @ residual
    scale = float(singular.square().mean()) or 1.0
    cutoff = float(singular.max()) * max(matrix.shape) * torch.finfo(torch.float64).eps
    start = parameters_to_vector(parameters).detach()

    def assign(change: torch.Tensor) -> None:
        with torch.no_grad():
            vector_to_parameters(start + change.to(dtype), parameters)

    def rmse(prediction: torch.Tensor, reference: torch.Tensor) -> float:
        return float((prediction - reference).square().mean().sqrt())

    best = None
    for ridge in ridges:
        if ridge == 0.0:  # minimum-norm least squares
            inverse = torch.where(singular > cutoff, 1.0 / singular, torch.zeros_like(singular))
        else:
            inverse = singular / (singular.square() + ridge * scale)
        change = right.T @ (inverse * projected)
        assign(change)
        with torch.no_grad():
            error = rmse(_predictions(model, validation_systems, output), validation_targets)
        if best is None or error < best[0]:
            best = (error, ridge, change)
    error, ridge, change = best
    assign(change)
    with torch.no_grad():
        training_after = rmse(_predictions(model, systems, output), targets)
    return {
        "ridge": ridge,
        "validation_rmse_before": rmse(validation_before, validation_targets),
        "validation_rmse_after": error,
        "training_rmse_before": rmse(values, targets),
        "training_rmse_after": training_after,
    }
