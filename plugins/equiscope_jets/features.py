"""Constituent features computed from 4-momenta (E, px, py, pz), in float64.

Two families:

* :func:`lab_features`, for the unconstrained tagger: the scaled lab-frame 4-momentum
  (E, px, py, pz) / 100 GeV, log pT, log E, the offsets (Delta eta, Delta phi) from the
  jet axis, log(pT / pT_J), log(E / E_J) and Delta R. The 4-momentum itself makes the
  tagger depend on the jet's orientation: it is invariant under none of the groups of
  :mod:`.actions` by construction.
* :func:`invariant_features`, for the exactly invariant baseline: Lorentz scalars only.
  With J = sum_i p_i and m_J^2 = J.J, each constituent gets its energy in the jet rest
  frame E*_i = p_i.J / m_J (as log E*_i and log(E*_i / m_J)) and log m_J; each pair gets
  log m_ij^2 = log (p_i + p_j)^2 and log(p_i.p_j / (E*_i E*_j)) (= log(1 - cos theta*_ij)
  for massless constituents). Invariant under every rotation, parity and boost.

Padded slots (E = 0) get zero features; ``mask`` is ``E > 0``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["LAB_FEATURES", "PAIR_FEATURES", "SCALAR_FEATURES", "constituent_mask"]
__all__ += ["invariant_features", "lab_features", "minkowski"]

LAB_FEATURES = 11
SCALAR_FEATURES = 3
PAIR_FEATURES = 2
_TINY = 1e-8


def constituent_mask(momenta: torch.Tensor) -> torch.Tensor:
    """bool [jets, C]: filled slots (E > 0)."""
    return momenta[..., 0] > 0


def minkowski(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a.b = a_E b_E - a_p . b_p over the last dimension."""
    return a[..., 0] * b[..., 0] - (a[..., 1:] * b[..., 1:]).sum(-1)


def _log(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x.clamp_min(_TINY))


def _eta_phi(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pt = torch.hypot(p[..., 0], p[..., 1])
    eta = torch.asinh(p[..., 2] / pt.clamp_min(_TINY))
    return pt, eta, torch.atan2(p[..., 1], p[..., 0])


def lab_features(momenta: torch.Tensor) -> torch.Tensor:
    """[jets, C, LAB_FEATURES] float64 features in the lab frame (see module doc)."""
    momenta = momenta.to(torch.float64)
    mask = constituent_mask(momenta)
    jet = momenta.sum(-2)
    pt, eta, phi = _eta_phi(momenta[..., 1:])
    jet_pt, jet_eta, jet_phi = _eta_phi(jet[..., 1:])
    deta = eta - jet_eta[:, None]
    dphi = torch.remainder(phi - jet_phi[:, None] + math.pi, 2 * math.pi) - math.pi
    energy = momenta[..., 0]
    features = torch.stack(
        [
            *(momenta / 100.0).unbind(-1),
            (_log(pt) - 1.7) * 0.7,
            (_log(energy) - 2.0) * 0.7,
            deta * 5.0,
            dphi * 5.0,
            (_log(pt / jet_pt[:, None]) + 4.7) * 0.7,
            (_log(energy / jet[:, None, 0]) + 4.7) * 0.7,
            (torch.hypot(deta, dphi) - 0.2) * 4.0,
        ],
        dim=-1,
    )
    return features * mask[..., None]


def invariant_features(momenta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lorentz-invariant ``(scalars [jets, C, 3], pairs [jets, C, C, 2])``, float64."""
    momenta = momenta.to(torch.float64)
    mask = constituent_mask(momenta)
    jet = momenta.sum(-2)
    m2 = minkowski(jet, jet).clamp_min(_TINY)
    mass = m2.sqrt()
    e_star = minkowski(momenta, jet[:, None, :]) / mass[:, None]
    scalars = torch.stack(
        [
            (_log(e_star) - 2.0) * 0.7,
            (_log(e_star / mass[:, None]) + 4.0) * 0.7,
            ((_log(mass) - 4.5) * 2.0)[:, None].expand_as(e_star),
        ],
        dim=-1,
    )
    dots = minkowski(momenta[:, :, None, :], momenta[:, None, :, :])
    masses2 = minkowski(momenta, momenta)
    pair_m2 = masses2[:, :, None] + masses2[:, None, :] + 2 * dots
    angle = dots / (e_star[:, :, None] * e_star[:, None, :]).clamp_min(_TINY)
    pairs = torch.stack([(_log(pair_m2) - 2.0) * 0.3, (_log(angle) + 2.0) * 0.3], dim=-1)
    pair_mask = mask[:, :, None] & mask[:, None, :]
    return scalars * mask[..., None], pairs * pair_mask[..., None]
