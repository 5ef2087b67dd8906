"""Jet taggers on constituent 4-momenta: an unconstrained transformer and an exactly
Lorentz-invariant baseline, with the same interface.

Both map ``momenta`` [jets, C, 4] (E, px, py, pz in GeV, zero-padded) to one logit per
jet (top vs QCD). Each constituent is embedded by an MLP of its features, then ``depth``
pre-LayerNorm self-attention blocks (padding masked as keys; padded rows reset to zero)
and a permutation-invariant pooling (masked mean and max) feed a classifier MLP.

* :class:`JetTransformer`: features from the lab-frame 4-momenta
  (:func:`~.features.lab_features`); not invariant by construction.
* :class:`InvariantTagger`: Lorentz scalars only, and pairwise invariants
  (m_ij^2, rest-frame angles) as an additive attention bias per head, as in ParT's
  interaction matrix; exactly invariant under rotations, parity and boosts.

``forward(momenta, hidden=True)`` also returns the hidden features per layer:
``embed_particle``, ``blocks.<i>_particle`` [jets, C, width] (zero in padding) and
``pool_jet`` [jets, 2 width], named ``<path>_<kind>`` as the audit reports expect.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from .features import (
    LAB_FEATURES,
    PAIR_FEATURES,
    SCALAR_FEATURES,
    constituent_mask,
    invariant_features,
    lab_features,
)

__all__ = ["TAGGERS", "InvariantTagger", "JetTransformer", "build_tagger"]


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class _Block(nn.Module):
    """x + Attn(LN x) then x + MLP(LN x); ``bias`` [jets, heads, C, C] is added to the
    attention scores, padded keys get -inf."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = _mlp([width, 2 * width, width])

    def forward(self, x, mask, bias=None):
        jets, length, width = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .reshape(jets, length, 3, self.heads, width // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        scores = torch.zeros(jets, 1, 1, length, dtype=x.dtype, device=x.device)
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        if bias is not None:
            scores = scores + bias
        attended = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=scores)
        x = x + self.out(attended.transpose(1, 2).reshape(jets, length, width))
        x = x + self.mlp(self.norm2(x))
        return x * mask[..., None]


class _Tagger(nn.Module):
    """Shared trunk: embedding, blocks, pooling, classifier."""

    kind = ""

    def __init__(self, n_features: int, width: int, depth: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.config = {"width": width, "depth": depth, "heads": heads}
        self.embed = _mlp([n_features, width, width])
        self.blocks = nn.ModuleList(_Block(width, heads) for _ in range(depth))
        self.classifier = _mlp([2 * width, width, 1])

    def _inputs(self, momenta):  # -> (features [jets, C, F], bias or None)
        raise NotImplementedError

    def forward(self, momenta: torch.Tensor, hidden: bool = False):
        mask = constituent_mask(momenta)
        features, bias = self._inputs(momenta)
        x = self.embed(features.to(torch.float32)) * mask[..., None]
        layers = {"embed_particle": x}
        for i, block in enumerate(self.blocks):
            x = block(x, mask, bias)
            layers[f"blocks.{i}_particle"] = x
        counts = mask.sum(-1, keepdim=True).clamp_min(1)
        pooled = torch.cat(
            [x.sum(1) / counts, x.masked_fill(~mask[..., None], float("-inf")).amax(1)], -1
        )
        layers["pool_jet"] = pooled
        logit = self.classifier(pooled).squeeze(-1)
        return (logit, layers) if hidden else logit


class JetTransformer(_Tagger):
    """Unconstrained transformer on lab-frame constituent features."""

    kind = "transformer"

    def __init__(self, width: int = 64, depth: int = 3, heads: int = 4):
        super().__init__(LAB_FEATURES, width, depth, heads)

    def _inputs(self, momenta):
        return lab_features(momenta), None


class InvariantTagger(_Tagger):
    """Exactly Lorentz-invariant baseline: invariant scalars and a pair-invariant bias."""

    kind = "invariant"

    def __init__(self, width: int = 64, depth: int = 3, heads: int = 4):
        super().__init__(SCALAR_FEATURES, width, depth, heads)
        self.pair = _mlp([PAIR_FEATURES, 16, heads])

    def _inputs(self, momenta):
        scalars, pairs = invariant_features(momenta)
        bias = self.pair(pairs.to(torch.float32)).permute(0, 3, 1, 2)
        return scalars, bias


TAGGERS = {"transformer": JetTransformer, "invariant": InvariantTagger}


def build_tagger(kind: str, config: dict | None = None) -> nn.Module:
    """A tagger by name: ``transformer``, ``invariant`` or the weaver peer ``part``."""
    config = dict(config or {})
    if kind == "part":
        from .peer import WeaverParT

        return WeaverParT(**config)
    if kind not in TAGGERS:
        raise ValueError(
            f"unknown tagger '{kind}'; expected one of {', '.join([*TAGGERS, 'part'])}"
        )
    return TAGGERS[kind](**config)
