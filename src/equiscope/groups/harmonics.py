"""Real spherical harmonics of unit vectors, TorchScript-compatible.

Orthonormal on the sphere, ordered (l, m = -l..l), with the Condon-Shortley phase by
default: they differ from metatomic's (and :func:`equiscope.wigner_d`'s) basis by the
sign (-1)^m, so ``Y(R u) = D(R) Y(u)`` with ``D = S D_metatomic S``, ``S = diag((-1)^m)``.
``condon_shortley=False`` gives metatomic's basis, ``Y(R u) = D_metatomic(R) Y(u)``.
Addition theorem: sum_m Y_lm(a) Y_lm(b) = (2l+1)/(4 pi) P_l(a . b).

No ``from __future__ import annotations`` here (TorchScript).
"""

import math
from typing import List

import torch


def _norms(lmax: int, condon_shortley: bool) -> List[float]:
    """sqrt((2l+1)/(4 pi) (l-|m|)!/(l+|m|)!) (x sqrt 2 for m != 0), in (l, m) order;
    times (-1)^m without the Condon-Shortley phase."""
    out: List[float] = []
    for l in range(lmax + 1):  # noqa: E741 - l is the name in every textbook
        for m in range(-l, l + 1):
            a = abs(m)
            value = (2 * l + 1) / (4 * math.pi) * math.factorial(l - a) / math.factorial(l + a)
            sign = -1.0 if (m % 2 and not condon_shortley) else 1.0
            out.append(sign * math.sqrt(value) * (math.sqrt(2.0) if m != 0 else 1.0))
    return out


class SphericalHarmonics(torch.nn.Module):
    """Real spherical harmonics of unit vectors, ``[..., 3] -> [..., (lmax+1)^2]``,
    orthonormal on the sphere, ordered (l, m = -l..l); ``condon_shortley=False``:
    metatomic's signs."""

    def __init__(self, lmax: int, condon_shortley: bool = True):
        super().__init__()
        self.lmax = lmax
        # a constant of lmax, rebuilt on construction: not part of checkpoints
        norms = torch.tensor(_norms(lmax, condon_shortley), dtype=torch.float64)
        self.register_buffer("norms", norms, persistent=False)

    def forward(self, directions: torch.Tensor) -> torch.Tensor:
        x, y, z = directions[..., 0], directions[..., 1], directions[..., 2]
        # c_m + i s_m = (x + i y)^m
        cos_m: List[torch.Tensor] = [torch.ones_like(x)]
        sin_m: List[torch.Tensor] = [torch.zeros_like(x)]
        for m in range(1, self.lmax + 1):
            cos_m.append(x * cos_m[m - 1] - y * sin_m[m - 1])
            sin_m.append(x * sin_m[m - 1] + y * cos_m[m - 1])
        # q[l][m] = P_l^m(z) / sin^m(theta), a polynomial in z (Condon-Shortley phase)
        q: List[List[torch.Tensor]] = []
        for l in range(self.lmax + 1):  # noqa: E741
            row: List[torch.Tensor] = []
            for m in range(l + 1):
                if m == l:
                    value = torch.ones_like(z)
                    for k in range(1, l + 1):
                        value = value * -(2 * k - 1)
                elif m == l - 1:
                    value = (2 * m + 1) * z * q[l - 1][m]
                else:
                    value = ((2 * l - 1) * z * q[l - 1][m] - (l + m - 1) * q[l - 2][m]) / (l - m)
                row.append(value)
            q.append(row)
        columns: List[torch.Tensor] = []
        for l in range(self.lmax + 1):  # noqa: E741
            for m in range(-l, l + 1):
                if m < 0:
                    columns.append(q[l][-m] * sin_m[-m])
                elif m == 0:
                    columns.append(q[l][0])
                else:
                    columns.append(q[l][m] * cos_m[m])
        return torch.stack(columns, dim=-1) * self.norms.to(directions.dtype)
