"""The peer: weaver-core's Particle Transformer (ParT), imported, never copied.

weaver-core is installed without its data tooling (``pip install --no-deps
weaver-core==0.5.3``): only ``weaver.nn.model.ParticleTransformer`` is imported, which
needs torch alone. :class:`WeaverParT` feeds it ParT's seven kinematic constituent
inputs (log pT, log E, Delta eta, Delta phi, log pT/pT_J, log E/E_J, Delta R, the
columns 4-10 of :func:`~.features.lab_features`) and the 4-momenta (px, py, pz, E) from
which ParT builds its pair features (ln kT, ln z, ln Delta R, ln m^2), so it has the same
``momenta -> logit`` interface as our taggers and the audit and heads apply unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from .features import constituent_mask, lab_features

__all__ = ["PeerUnavailable", "WeaverParT", "weaver_version"]

_INSTALL = "pip install --no-deps weaver-core==0.5.3"


class PeerUnavailable(ImportError):
    """weaver-core is not installed or its model module does not import."""


def _particle_transformer():
    try:
        from weaver.nn.model.ParticleTransformer import ParticleTransformer
    except ImportError as error:
        raise PeerUnavailable(
            f"the ParT peer needs weaver-core ({error}); install it with: {_INSTALL}"
        ) from None
    return ParticleTransformer


def weaver_version() -> str | None:
    """Installed weaver-core version, or ``None``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("weaver-core")
    except PackageNotFoundError:
        return None


class WeaverParT(nn.Module):
    """weaver's ``ParticleTransformer`` (kinematic inputs, ``pp`` pair features) behind
    the ``momenta [jets, C, 4] -> logit [jets]`` interface; logit = z_top - z_qcd."""

    kind = "part"

    def __init__(self, width: int = 64, depth: int = 3, heads: int = 4, pair_width: int = 32):
        super().__init__()
        particle_transformer = _particle_transformer()
        self.config = {"width": width, "depth": depth, "heads": heads, "pair_width": pair_width}
        self.part = particle_transformer(
            input_dim=7,
            num_classes=2,
            pair_input_type="pp",
            embed_dims=(width, 2 * width, width),
            pair_embed_dims=(pair_width, pair_width, pair_width),
            num_heads=heads,
            num_layers=depth,
            num_cls_layers=1,
            fc_params=(),
            trim=False,
        )

    def forward(self, momenta: torch.Tensor, hidden: bool = False):
        mask = constituent_mask(momenta)
        x = lab_features(momenta)[..., 4:].to(torch.float32).transpose(1, 2)
        v = momenta[..., [1, 2, 3, 0]].to(torch.float32).transpose(1, 2)
        layers: dict[str, torch.Tensor] = {}
        handles = []
        if hidden:
            for i, block in enumerate(self.part.blocks):

                def hook(module, inputs, output, name=f"blocks.{i}_particle"):
                    layers[name] = output * mask[..., None]

                handles.append(block.register_forward_hook(hook))
        try:
            out = self.part(x, v, mask[:, None, :].to(torch.float32))
        finally:
            for handle in handles:
                handle.remove()
        logit = out[:, 1] - out[:, 0]
        return (logit, layers) if hidden else logit
