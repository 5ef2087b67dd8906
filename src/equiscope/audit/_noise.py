"""The measured noise floor: how much a model's outputs move when its inputs move by
their own rounding error.

Rotating a sample in finite precision moves every coordinate by about ``eps |x|``
(``eps`` of the model's working precision). An exactly equivariant model then still
shows a spread of its back-transformed outputs; :func:`measured_roundoff` measures it
by re-running the model in the input frame on ``jitters`` copies whose inputs are
moved by such random displacements. It is usually 10-1000 times the cheap bound
``eps x RMS(output)`` of :func:`equiscope.noise_floor` for forces and stresses of
float32 models (cancellation in sums over neighbours, derivatives).
"""

from __future__ import annotations

import torch

from ..grids import Grid

__all__ = ["JITTERS", "measured_roundoff"]

JITTERS = 3
"""Jittered copies per sample (plus the sample itself)."""


def measured_roundoff(
    adapter, sample, outputs: list[str], *, seed: int, jitters: int = JITTERS
) -> dict[str, float]:
    """``{output: squared round-off}`` of ``sample``: the sum of squared deviations of
    the outputs of ``jitters`` jittered copies and the sample itself from their mean,
    divided by ``jitters`` (an unbiased variance, summed over entries). ``seed``
    makes the jitters reproducible (the engine uses the sample's index)."""
    eps = torch.finfo(adapter.dtype).eps
    generator = torch.Generator().manual_seed(seed)
    identity = Grid.identity()
    runs = []
    for jitter in range(jitters + 1):
        moved = adapter.jittered(sample, eps, generator) if jitter else sample
        runs.append(adapter.evaluate(moved, identity, outputs=outputs).responses)
    squared = {}
    for name in runs[0]:
        stacked = torch.stack([run[name][0] for run in runs])
        squared[name] = float((stacked - stacked.mean(0)).square().sum()) / jitters
    return squared
