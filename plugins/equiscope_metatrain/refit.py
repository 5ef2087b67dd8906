"""Least-squares refit of a PET-family readout on its frozen trunk.

Every output of PET's readout, and of the tensor-basis readout, is affine in the
weights and biases ``theta`` of its last linear layers (the features are fixed, the
scaler multiplies, the composition model adds): ``y(theta) = y(theta_0) + J (theta -
theta_0)`` exactly. Gradient descent on ``theta`` is slow when the target lies along
directions in which the features hardly vary between structures (the direct stress of
near-identical cells; see the direct-stress study in ``docs/metatrain_measurements.md``).
This solves for ``theta`` instead, by ridge regression on the change,

    Delta = argmin |J Delta - (y* - y(theta_0))|^2 + alpha |Delta|^2,

with ``J`` from autograd (exact: the map is affine) and ``alpha`` picked from
``ridges`` by the RMSE on held-out structures (``alpha = 0`` allowed: the minimum-norm
least-squares solution).

The fit runs on each structure ``x`` and its copies ``g x`` over random elements ``g`` of
O(3), with targets ``rho(g) y*``. With ``equivariance_weight = mu > 0`` it also penalises
the spread of the back-transformed copies about their orbit mean, the equivariance
variance of the paper (A^2, on that orbit):

    + mu sum_x sum_g |rho(g)^T y(g x) - mean_h rho(h)^T y(h x)|^2,

still quadratic in ``Delta`` (its rows are appended to ``J``), so one SVD still serves
every ridge, and the ridge is picked by the same objective on the held-out orbits.
"""

from __future__ import annotations

import math

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
    block (``rho(g) y``); and ``rho`` of every copy, ``[copies, d, d]`` (the identity
    first), copies outermost in the returned order."""
    from metatomic.torch import ModelOutput
    from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

    import equiscope as eq
    from equiscope.metrics.equivariance import representation
    from equiscope_atoms.orbit import output_irrep, transformed_system

    request = {output: ModelOutput(sample_kind="system")}
    with torch.no_grad():
        tensor_map = model([systems[0]], request)[output]
    if len(tensor_map) != 1:
        raise ValueError(f"the refit takes outputs of one block; {output!r} has {len(tensor_map)}")
    if orientations == 0:  # one copy: no spread, whatever the output's components
        d = targets.shape[1] // tensor_map.block(0).values.shape[-1]
        return systems, targets, torch.eye(d, dtype=torch.float64)[None]
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
    every = torch.cat([torch.eye(d, dtype=rho.dtype)[None], rho])
    return systems + moved, torch.cat([targets, copied.reshape(-1, targets.shape[1])]), every


def _orbit_deviations(values: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """``rho(g)^T v(g x)`` minus its mean over the orbit, for ``values`` of shape
    ``[copies * structures, d * p, ...]`` (copies outermost; Jacobians allowed), in the
    same shape: zero for an equivariant output."""
    copies, d = rho.shape[0], rho.shape[-1]
    shaped = values.reshape(copies, values.shape[0] // copies, d, -1)
    back = torch.einsum("ced,cnex->cndx", rho.to(values.dtype), shaped)
    return (back - back.mean(dim=0)).reshape(values.shape)


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
    equivariance_weight: float = 0.0,
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
        (with the penalty's rows appended when ``equivariance_weight > 0``, so that scale
        grows with ``mu``)
    :param equivariance_weight: ``mu``, the weight of the orbit spread against the squared
        error (module docstring; needs ``orientations >= 1``). The plain fit already
        counts the spread once: the error of the copies is the error of the orbit mean
        plus the spread about it
    :return: ``{"ridge", "validation_rmse_before", "validation_rmse_after",
        "training_rmse_before", "training_rmse_after"}`` (RMSE over all values and
        copies) and the same four with ``equivariance_rmse`` for ``rmse``: the RMS of
        ``rho(g)^T y(g x)`` about its orbit mean (``sqrt(A^2 / values)``; 0 without
        orientations)
    """
    if len(systems) == 0 or len(validation_systems) == 0:
        raise ValueError("refit_readout needs at least one training and one validation structure")
    if not (math.isfinite(equivariance_weight) and equivariance_weight >= 0.0):
        raise ValueError(f"equivariance_weight must be >= 0, got {equivariance_weight}")
    if equivariance_weight > 0.0 and orientations < 1:
        raise ValueError("equivariance_weight > 0 needs orientations >= 1 to compare copies")
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
    systems, targets, rho = _with_orientations(model, systems, targets, output, orientations, seed)
    validation_systems, validation_targets, validation_rho = _with_orientations(
        model, validation_systems, validation_targets, output, orientations, seed + 1
    )
    values, jacobian = _design(model, systems, output, parameters)
    with torch.no_grad():
        validation_before = _predictions(model, validation_systems, output)
    matrix = jacobian.reshape(-1, jacobian.shape[-1]).double()
    residual = (targets - values).reshape(-1).double()
    if equivariance_weight > 0.0:  # rows of the spread about the orbit mean, to zero
        root = math.sqrt(equivariance_weight)
        spread = _orbit_deviations(jacobian.double(), rho)
        matrix = torch.cat([matrix, root * spread.reshape(-1, matrix.shape[1])])
        spread = _orbit_deviations(values.double(), rho)
        residual = torch.cat([residual, -root * spread.reshape(-1)])
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

    def spread_rmse(prediction: torch.Tensor, orbit: torch.Tensor) -> float:
        return float(_orbit_deviations(prediction.double(), orbit).square().mean().sqrt())

    best = None
    for ridge in ridges:
        if ridge == 0.0:  # minimum-norm least squares
            inverse = torch.where(singular > cutoff, 1.0 / singular, torch.zeros_like(singular))
        else:
            inverse = singular / (singular.square() + ridge * scale)
        change = right.T @ (inverse * projected)
        assign(change)
        with torch.no_grad():
            prediction = _predictions(model, validation_systems, output)
        error = rmse(prediction, validation_targets)
        spread = spread_rmse(prediction, validation_rho)
        objective = error**2 + equivariance_weight * spread**2
        if best is None or objective < best[0]:
            best = (objective, ridge, change, error, spread)
    _, ridge, change, error, spread = best
    assign(change)
    with torch.no_grad():
        training_after = _predictions(model, systems, output)
    return {
        "ridge": ridge,
        "validation_rmse_before": rmse(validation_before, validation_targets),
        "validation_rmse_after": error,
        "training_rmse_before": rmse(values, targets),
        "training_rmse_after": rmse(training_after, targets),
        "validation_equivariance_rmse_before": spread_rmse(validation_before, validation_rho),
        "validation_equivariance_rmse_after": spread,
        "training_equivariance_rmse_before": spread_rmse(values, rho),
        "training_equivariance_rmse_after": spread_rmse(training_after, rho),
    }
