"""Exported taggers: a tagger, alone or behind a symmetrised head, as one ``torch.export``
program (``.pt2``).

The program maps ``momenta`` [jets, C, 4] (E, px, py, pz in GeV, float64, zero-padded;
any number of jets and constituents) to logits [jets]. Running it needs torch only, not
equiscope: ``torch.export.load(path).module()(momenta)``. A head is traced in: the
``average`` head's grid and the ``canonical`` head's frame are part of the program, so
the exported tagger is exactly as symmetric as the eager one. ``random`` frames draw from
a Python generator and are not exported.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .checkpoint import JetModelError
from .heads import SymmetrizedTagger

__all__ = ["export_tagger", "load_exported_tagger"]


class _Logits(nn.Module):
    """``momenta -> logits``: the tagger's plain call, without the ``hidden`` option."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, momenta: torch.Tensor) -> torch.Tensor:
        return self.model(momenta)


def example_jets() -> torch.Tensor:
    """Three massless jets of six slots, the last two padded: the traced shapes (neither
    is 0 or 1, which torch.export would fix as constants)."""
    generator = torch.Generator().manual_seed(0)
    p = torch.randn(3, 6, 3, generator=generator, dtype=torch.float64) * 20.0
    p[..., 2] += 200.0  # a common direction, as constituents of one jet
    momenta = torch.cat([p.norm(dim=-1, keepdim=True), p], dim=-1)
    momenta[:, 4:] = 0.0
    return momenta


def export_tagger(model: nn.Module, path: str | Path) -> Path:
    """Write ``model`` (a tagger of :func:`~.model.build_tagger` or a
    :class:`~.heads.SymmetrizedTagger` around one, in ``average`` or ``canonical`` mode)
    to ``path`` as a ``torch.export`` program with the number of jets and of constituents
    symbolic. Nothing is left at ``path`` if the export fails."""
    if isinstance(model, SymmetrizedTagger) and model.mode == "random":
        raise ValueError(
            "a random-frame head draws from a Python generator and cannot be exported; "
            "export the 'average' or 'canonical' head"
        )
    path = Path(path)
    training = model.training
    jets = torch.export.Dim("jets", min=1)
    constituents = torch.export.Dim("constituents", min=1)
    program = torch.export.export(
        _Logits(model).eval(),
        (example_jets(),),
        dynamic_shapes=({0: jets, 1: constituents},),
    )
    model.train(training)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.partial.pt2")  # torch wants the suffix
    torch.export.save(program, staging)
    staging.replace(path)
    return path


class _Float64Momenta(nn.Module):
    """The program behind a cast: it was traced on float64 momenta and checks their dtype
    (data sets hold float32)."""

    def __init__(self, program: nn.Module):
        super().__init__()
        self.program = program

    def forward(self, momenta: torch.Tensor) -> torch.Tensor:
        return self.program(momenta.to(torch.float64))


def load_exported_tagger(path: str | Path) -> nn.Module:
    """The callable module (``momenta -> logits``, momenta of any float dtype) of a
    program written by :func:`export_tagger`; :class:`~.checkpoint.JetModelError` if
    ``path`` is missing or not such a program."""
    path = Path(path)
    if not path.is_file():
        raise JetModelError(f"{path}: no such file")
    try:
        program = torch.export.load(path).module()
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise JetModelError(f"{path}: not a readable exported tagger ({message})") from None
    return _Float64Momenta(program)
