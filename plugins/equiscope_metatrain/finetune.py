"""Equivariance fine-tuning: extra epochs minimising A^2, no labels needed.

For each batch of training structures the model is evaluated on the grid orbit
(``g x`` for every grid element ``g``) through equiscope's head in ``diagnose`` mode,
which returns, differentiably, the equivariance variance of every output,
``A^2 = sum_i w_i |rho(g_i)^T f(g_i x) - mean|^2`` (the square of the audit's equivariance
error). The loss is its mean over samples, summed over the targets; the optimiser is Adam.
"""

from __future__ import annotations

import logging

import torch

import equiscope as eq

__all__ = ["equivariance_finetune"]

LOGGER = logging.getLogger(__name__)
PREFIX = "equiscope::variance::"


def equivariance_finetune(
    model: torch.nn.Module,
    systems: list,
    targets: list[str],
    *,
    epochs: int,
    learning_rate: float,
    grid: eq.Grid,
    batch_size: int = 4,
    seed: int = 0,
) -> list[float]:
    """Minimise A^2 of ``targets`` over ``grid`` on ``systems`` (metatomic Systems in
    the model's dtype with its neighbour lists); returns the mean loss of each epoch
    over its batches (A^2 summed over components)."""
    from metatomic.torch import ModelOutput

    from equiscope_atoms.heads import SymmetrizedHead

    parameter = next(model.parameters())
    head = SymmetrizedHead(
        model,
        grid,
        mode="diagnose",
        seed=seed,
        inversion=True,
        max_lambda=3,
        dtype=parameter.dtype,
    ).to(parameter.device)
    outputs = {
        PREFIX + name: ModelOutput(sample_kind=model.outputs[name].sample_kind) for name in targets
    }
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=learning_rate
    )
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.train()
    losses = []
    try:
        for epoch in range(epochs):
            order = torch.randperm(len(systems), generator=generator).tolist()
            total, batches = 0.0, 0
            for start in range(0, len(order), batch_size):
                batch = [systems[i] for i in order[start : start + batch_size]]
                result = head(batch, outputs, None)
                loss = sum(result[key].block().values.mean() for key in outputs)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total, batches = total + float(loss.detach()), batches + 1
            losses.append(total / max(batches, 1))
            LOGGER.info(
                "equivariance fine-tuning epoch %d/%d: mean A^2 %.4g", epoch + 1, epochs, losses[-1]
            )
    finally:
        model.train(was_training)
    return losses
