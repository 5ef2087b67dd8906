"""Taggers with a planted anisotropy of known degree (known answers for audit and heads)."""

import math

import torch
from torch import nn

from equiscope_jets.actions import jet_axis, jet_frames


class PlantedAxial(nn.Module):
    """logit = a + eps cos(m psi), psi the azimuth of the most energetic constituent about
    the jet axis (in the jet frame): pure sector m of rotations about the axis, with
    B_m / sum B = (eps^2 / 2) / (a^2 + eps^2 / 2) and A = eps / sqrt(2)."""

    kind = "planted-axial"

    def __init__(self, m: int, a: float = 1.0, eps: float = 0.5):
        super().__init__()
        self.m, self.a, self.eps = m, a, eps
        self.config = {"m": m}

    def forward(self, momenta, hidden=False):
        momenta = momenta.to(torch.float64)
        leading = momenta[torch.arange(len(momenta)), momenta[..., 0].argmax(-1), 1:]
        local = torch.einsum("jab,jb->ja", jet_frames(momenta), leading)
        psi = torch.atan2(local[:, 1], local[:, 0])
        logit = self.a + self.eps * torch.cos(self.m * psi)
        return (logit, {}) if hidden else logit


class PlantedLegendre(nn.Module):
    """logit = a + eps P_l(n_z), n the jet axis: pure degree l of SO(3), with
    B_l / sum B = (eps^2 / (2l+1)) / (a^2 + eps^2 / (2l+1)) and A = eps / sqrt(2l+1)."""

    kind = "planted-legendre"

    def __init__(self, degree: int, a: float = 1.0, eps: float = 0.5):
        super().__init__()
        self.degree, self.a, self.eps = degree, a, eps
        self.config = {"degree": degree}

    def forward(self, momenta, hidden=False):
        x = jet_axis(momenta)[:, 2]
        p_prev, p = torch.ones_like(x), x
        if self.degree == 0:
            p = p_prev
        for k in range(1, self.degree):
            p_prev, p = p, ((2 * k + 1) * x * p - k * p_prev) / (k + 1)
        logit = self.a + self.eps * p
        return (logit, {}) if hidden else logit


def sector_fraction(eps: float, a: float, norm: float) -> float:
    return eps**2 * norm / (a**2 + eps**2 * norm)


__all__ = ["PlantedAxial", "PlantedLegendre", "math", "sector_fraction"]
