"""Reproducible random frames: Haar-random elements of SO(3) or O(3) from a seed and
a counter, the same in Python and inside TorchScript.

``random_element(seed, counter, inversion)`` is a pure function of its arguments: a
calculator or an exported head that draws frame ``counter`` of sequence ``seed`` gets
the same matrix, so a random-frame run is reproducible from its seed. Pure torch
(no metatensor), TorchScript-compatible.
"""

import math

import torch

__all__ = ["random_element", "random_rotation", "uniforms"]


def _mix(z: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser on int64 tensors (wrapping arithmetic, logical shifts)."""
    z = z ^ ((z >> 30) & ((1 << 34) - 1))
    z = z * -4658895280553007687  # 0xBF58476D1CE4E5B9 as int64
    z = z ^ ((z >> 27) & ((1 << 37) - 1))
    z = z * -7723592293110705685  # 0x94D049BB133111EB as int64
    return z ^ ((z >> 31) & ((1 << 33) - 1))


def uniforms(seed: int, counter: int, n: int) -> torch.Tensor:
    """``n`` reproducible uniforms in [0, 1) for (seed, counter), float64."""
    golden = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64
    index = torch.arange(n, dtype=torch.int64) + counter * 1024
    state = _mix(index * golden + seed)
    # top 53 bits (mask 2^53 - 1) scaled by 2^-53
    return ((state >> 11) & 9007199254740991).to(torch.float64) / 9007199254740992.0


def random_rotation(u: torch.Tensor) -> torch.Tensor:
    """Haar-random rotation from three uniforms (Shoemake's quaternion)."""
    a, b, c = u[0], u[1], u[2]
    r1, r2 = torch.sqrt(1.0 - a), torch.sqrt(a)
    t1, t2 = 2.0 * math.pi * b, 2.0 * math.pi * c
    w, x = r2 * torch.cos(t2), r1 * torch.sin(t1)
    y, z = r1 * torch.cos(t1), r2 * torch.sin(t2)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)]),
            torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)]),
            torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]),
        ]
    )


def random_element(seed: int, counter: int, inversion: bool) -> torch.Tensor:
    """Frame ``counter`` of the sequence ``seed``: a Haar-random rotation, times -1
    with probability 1/2 when ``inversion`` (Haar on O(3)); float64 ``[3, 3]``."""
    u = uniforms(seed, counter, 4)
    rotation = random_rotation(u)
    if inversion and bool(u[3] < 0.5):
        rotation = -rotation
    return rotation
