"""Symmetrised heads for a tagger: grid average, random frame, canonical frame.

For a tagger f (``momenta -> logit``) and a compact group G acting on jets
(:mod:`.actions`):

- ``average``: f_G(x) = sum_i w_i f(g_i x) over a grid of G. It removes exactly every
  sector the grid averages out: a cyclic grid of N rotations about the jet axis removes
  every m that N does not divide; the octahedral group (24) removes lambda = 1, 2, 3, 5
  of SO(3), the icosahedral (60) 1-5, 7, 8, 9. Costs ``len(grid)`` evaluations.
- ``random``: f(g x) with one Haar-random g per jet and call from a seeded generator:
  unbiased (its mean over g is the Haar average), one evaluation, but noisy.
- ``canonical``: f(R(x) x) with R(x) the rotation taking the jet to a reference frame:
  the jet axis n and the transverse direction t of its most energetic constituent go to
  fixed directions. ``frame="jet"`` keeps the jet's polar angle (n -> (sin theta, 0,
  cos theta), t -> the +eta direction there): exactly invariant under rotations about
  the jet axis and about the beam, and the jet keeps its pT (in distribution for a tagger
  trained on lab-frame jets). ``frame="lab"`` sends n -> x, t -> z: exactly invariant
  under all of SO(3) (pT becomes |p|). One evaluation.
"""

from __future__ import annotations

import torch
from torch import nn

import equiscope as eq

from .actions import GROUPS, get_group, group_elements, jet_axis, random_elements, rotate

__all__ = ["HEAD_MODES", "SymmetrizedTagger", "canonical_rotation"]

HEAD_MODES = ("average", "random", "canonical")


def canonical_rotation(momenta: torch.Tensor, frame: str = "jet") -> torch.Tensor:
    """Rotations R [jets, 3, 3] taking each jet to the reference frame (see module doc)."""
    momenta = momenta.to(torch.float64)
    n = jet_axis(momenta)
    # the most energetic constituent, picked by a mask so that shapes stay symbolic
    slots = torch.arange(momenta.shape[1], device=momenta.device)
    most = slots[None, :] == momenta[..., 0].argmax(-1, keepdim=True)
    leading = (momenta[..., 1:] * most[..., None]).sum(1)
    t = leading - (leading * n).sum(-1, keepdim=True) * n
    t = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    source = torch.stack([n, t, torch.linalg.cross(n, t)], -1)
    if frame == "jet":
        cos, sin = n[:, 2], torch.hypot(n[:, 0], n[:, 1])
        zero = torch.zeros_like(cos)
        n_ref = torch.stack([sin, zero, cos], -1)
        t_ref = torch.stack([-cos, zero, sin], -1)
    elif frame == "lab":
        n_ref = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).expand_as(n)
        t_ref = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(n)
    else:
        raise ValueError(f"unknown canonical frame '{frame}'; expected jet or lab")
    target = torch.stack([n_ref, t_ref, torch.linalg.cross(n_ref, t_ref)], -1)
    return target @ source.transpose(1, 2)


class SymmetrizedTagger(nn.Module):
    """``model`` behind a symmetrised head (``mode`` in :data:`HEAD_MODES`).

    ``group``: a compact group name of :data:`~.actions.GROUPS` (``average`` and
    ``random``); ``grid``: an :class:`equiscope.Grid` of that group (``average``; default
    8 rotations about the axis for SO(2), the octahedral group for SO(3)); ``frame``:
    ``jet`` or ``lab`` (``canonical``); ``seed``: the random frames' generator."""

    def __init__(
        self,
        model: nn.Module,
        mode: str = "average",
        *,
        group: str = "so2-axis",
        grid: eq.Grid | None = None,
        frame: str = "jet",
        seed: int = 0,
        batch_size: int = 4096,
    ):
        super().__init__()
        if mode not in HEAD_MODES:
            raise ValueError(f"unknown head mode '{mode}'; expected one of {', '.join(HEAD_MODES)}")
        self.model = model
        self.mode = mode
        self.kind = f"{getattr(model, 'kind', 'model')}+{mode}"
        self.config = {"mode": mode, "group": group, "frame": frame, "seed": seed}
        self.batch_size = batch_size
        self.frame = frame
        if mode == "canonical":
            canonical_rotation(torch.tensor([[[1.0, 1.0, 0.0, 0.0]]]), frame)  # validates frame
            return
        kind = get_group(group)
        if isinstance(kind, str):
            raise ValueError(
                f"a head needs a compact group; {group} is not one ({', '.join(GROUPS)})"
            )
        self.group = kind
        if mode == "average":
            if grid is None:
                grid = (
                    eq.grid("so2", n=8)
                    if kind.engine == "SO(2)"
                    else eq.grid("o2", n=8)
                    if kind.engine == "O(2)"
                    else eq.grid("octahedral", inversion=kind.engine == "O(3)")
                )
            if grid.group.name != kind.engine:
                raise ValueError(
                    f"group {group} acts as {kind.engine}; the grid is on {grid.group.name}"
                )
            self.grid = grid
            self.config["grid"] = grid.to_dict()
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, momenta: torch.Tensor, hidden: bool = False):
        if self.mode == "canonical":
            logit = self.model(rotate(momenta, canonical_rotation(momenta, self.frame)))
        elif self.mode == "random":
            logit = self.model(
                rotate(momenta, random_elements(self.group, momenta, self.generator))
            )
        else:
            elements = group_elements(self.group, self.grid.rotations, momenta)
            jets, n = elements.shape[:2]
            copies = momenta.to(torch.float64)[:, None].expand(jets, n, *momenta.shape[1:])
            copies = rotate(
                copies.reshape(jets * n, *momenta.shape[1:]), elements.reshape(-1, 3, 3)
            )
            if torch.compiler.is_exporting():  # one call: the batch size is symbolic
                logits = self.model(copies)
            else:
                logits = torch.cat(
                    [
                        self.model(copies[i : i + self.batch_size])
                        for i in range(0, len(copies), self.batch_size)
                    ]
                )
            weights = self.grid.weights.to(logits.dtype)
            logit = logits.reshape(jets, n) @ weights
        return (logit, {}) if hidden else logit
