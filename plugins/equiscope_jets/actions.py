"""Groups acting on jets: rotations of the constituent 3-momenta and boosts.

A jet is ``momenta`` [jets, C, 4] = (E, px, py, pz) with zero-padded slots. Rotations
act on the 3-momenta and leave E alone; a boost of rapidity y along a unit vector n
maps ``E -> cosh(y) E + sinh(y) p.n``, ``p.n -> sinh(y) E + cosh(y) p.n``. Padding
(all zeros) stays zero under both.

Compact subgroups (audited with Haar grids of the foundation engine):

==============  ===========  ===========================================================
name            engine group  acts as
==============  ===========  ===========================================================
``so3``         SO(3)         R p, R about the origin of the lab frame
``o3``          O(3)          as ``so3`` plus parity p -> -p
``so2-axis``    SO(2)         F^T Rz(a) F p, F the jet frame (jet axis along z)
``o2-axis``     O(2)          as ``so2-axis`` plus reflections through planes holding the axis
``so2-beam``    SO(2)         Rz(a) p about the beam (an exact symmetry of the collider)
==============  ===========  ===========================================================

Non-compact (no Haar measure; audited as error against rapidity): ``boost-axis`` (along
the jet axis) and ``boost-beam`` (along z, an exact symmetry of the collider).
"""

from __future__ import annotations

import dataclasses
import math

import torch

import equiscope as eq

__all__ = [
    "BOOSTS",
    "GROUPS",
    "JetGroup",
    "boost",
    "get_group",
    "group_elements",
    "jet_axis",
    "jet_frames",
    "random_elements",
    "rotate",
]


@dataclasses.dataclass(frozen=True)
class JetGroup:
    """A compact group acting on jets: the engine group and where its z axis points."""

    name: str
    engine: str  # "SO(3)", "O(3)", "SO(2)", "O(2)"
    frame: str  # "lab": elements act as they are; "axis": conjugated into each jet's frame
    description: str

    def default_grid(self, *, degree: int | None = None, n: int | None = None) -> eq.Grid:
        """Lebedev degree 6 (182 rotations, spectra to lambda = 3) for the spherical groups,
        16 equispaced angles (spectra to m = 7) for the axial ones."""
        if self.engine.endswith("(3)"):
            return eq.grid("lebedev", degree=degree or 6, inversion=self.engine == "O(3)")
        return eq.grid("o2" if self.engine == "O(2)" else "so2", n=n or 16)


GROUPS: dict[str, JetGroup] = {
    g.name: g
    for g in (
        JetGroup("so3", "SO(3)", "lab", "rotations of the 3-momenta about the lab origin"),
        JetGroup("o3", "O(3)", "lab", "rotations and parity of the 3-momenta"),
        JetGroup("so2-axis", "SO(2)", "axis", "rotations about the jet axis"),
        JetGroup("o2-axis", "O(2)", "axis", "rotations and reflections about the jet axis"),
        JetGroup("so2-beam", "SO(2)", "lab", "rotations about the beam (z) axis"),
    )
}
BOOSTS = {"boost-axis": "boosts along the jet axis", "boost-beam": "boosts along the beam (z)"}


def get_group(name: str) -> JetGroup | str:
    """The :class:`JetGroup` called ``name``, or the boost's name; one-line error otherwise."""
    if name in GROUPS:
        return GROUPS[name]
    if name in BOOSTS:
        return name
    raise ValueError(f"unknown group '{name}'; expected one of {', '.join([*GROUPS, *BOOSTS])}")


def _float64(value) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(torch.float64)
    return torch.as_tensor(value, dtype=torch.float64)  # Python floats: no float32 detour


def jet_axis(momenta: torch.Tensor) -> torch.Tensor:
    """Unit vector [jets, 3] along the summed 3-momentum of the constituents."""
    p = _float64(momenta)[..., 1:].sum(-2)
    return p / p.norm(dim=-1, keepdim=True).clamp_min(1e-300)


def jet_frames(momenta: torch.Tensor) -> torch.Tensor:
    """Rotations F [jets, 3, 3] with F n = e_z for the jet axis n (rows e1, e2, n).

    e1 is the lab axis least aligned with n, made orthogonal to n; e2 = n x e1."""
    n = jet_axis(momenta)
    helper = torch.zeros_like(n)
    helper.scatter_(-1, n.abs().argmin(-1, keepdim=True), 1.0)
    e1 = helper - (helper * n).sum(-1, keepdim=True) * n
    e1 = e1 / e1.norm(dim=-1, keepdim=True)
    e2 = torch.linalg.cross(n, e1)
    return torch.stack([e1, e2, n], dim=-2)


def rotate(momenta: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """``(E, R p)`` for rotations [3, 3] or [jets, 3, 3]; float64."""
    momenta = _float64(momenta)
    rotations = _float64(rotations)
    if rotations.ndim == 2:
        p = momenta[..., 1:] @ rotations.T
    else:
        p = torch.einsum("jab,jcb->jca", rotations, momenta[..., 1:])
    return torch.cat([momenta[..., :1], p], dim=-1)


def boost(momenta: torch.Tensor, rapidity, direction: torch.Tensor) -> torch.Tensor:
    """Boost of rapidity ``y`` (scalar or [jets]) along unit ``direction`` ([3] or [jets, 3])."""
    momenta = _float64(momenta)
    direction = _float64(direction).expand(momenta.shape[0], 3)
    y = _float64(rapidity).expand(momenta.shape[0])[:, None]
    e, p = momenta[..., 0], momenta[..., 1:]
    along = (p * direction[:, None, :]).sum(-1)
    ch, sh = torch.cosh(y), torch.sinh(y)
    new_e = ch * e + sh * along
    new_along = sh * e + ch * along
    p = p + (new_along - along)[..., None] * direction[:, None, :]
    return torch.cat([new_e[..., None], p], dim=-1)


def boost_direction(name: str, momenta: torch.Tensor) -> torch.Tensor:
    """The boost axis of ``boost-axis`` (jet axis) or ``boost-beam`` (z), [jets, 3]."""
    if name == "boost-axis":
        return jet_axis(momenta)
    if name == "boost-beam":
        return torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(momenta.shape[0], 3)
    raise ValueError(f"unknown boost '{name}'; expected one of {', '.join(BOOSTS)}")


def group_elements(group: JetGroup, rotations: torch.Tensor, momenta: torch.Tensor):
    """Lab-frame rotations [jets, n, 3, 3] of grid elements ``rotations`` [n, 3, 3]:
    themselves for lab groups, ``F^T g F`` per jet for groups about the jet axis."""
    rotations = _float64(rotations)
    jets = momenta.shape[0]
    if group.frame == "lab":
        return rotations.expand(jets, *rotations.shape)
    frames = jet_frames(momenta)
    # F^T g F by broadcast matmuls (a 3-operand einsum fixes the shapes under torch.export)
    return frames.transpose(1, 2)[:, None] @ rotations[None] @ frames[:, None]


def random_elements(
    group: JetGroup, momenta: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """One Haar-random element of ``group`` per jet, as lab rotations [jets, 3, 3]."""
    jets = momenta.shape[0]
    if group.engine.endswith("(3)"):
        # QR of a Gaussian matrix with the sign fix is Haar on O(3); det -> +1 for SO(3)
        q, r = torch.linalg.qr(torch.randn(jets, 3, 3, generator=generator, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
        if group.engine == "SO(3)":
            q = q * torch.linalg.det(q)[:, None, None]
        return q
    angle = torch.rand(jets, generator=generator, dtype=torch.float64) * (2 * math.pi)
    c, s, zero, one = torch.cos(angle), torch.sin(angle), 0 * angle, 0 * angle + 1
    g = torch.stack(
        [
            torch.stack([c, -s, zero], -1),
            torch.stack([s, c, zero], -1),
            torch.stack([zero, zero, one], -1),
        ],
        -2,
    )
    if group.engine == "O(2)":
        flip = torch.rand(jets, generator=generator) < 0.5
        g[flip, :, 1] = -g[flip, :, 1]
    if group.frame == "axis":
        frames = jet_frames(momenta)
        g = frames.transpose(1, 2) @ g @ frames
    return g
