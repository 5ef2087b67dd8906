"""Exported taggers: a tagger, alone or behind a symmetrised head, as one ``torch.export``
program (``.pt2``).

The program maps ``momenta`` [jets, C, 4] (E, px, py, pz in GeV, float64, zero-padded;
any number of jets and constituents) to logits [jets]. Running it needs torch only, not
equiscope: ``torch.export.load(path).module()(momenta)``. A head is traced in: the
``average`` head's grid and the ``canonical`` head's frame are part of the program, so
the exported tagger is exactly as symmetric as the eager one. ``random`` frames draw from
a Python generator and are not exported.

The program carries ``equiscope.json`` (format tag, the tagger's kind, and e.g. the
number of constituents it was trained on), so ``equiscope audit PROGRAM JETS`` audits it
like a checkpoint, without hidden layers (a program has none to capture).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import torch
from torch import nn

from .checkpoint import JetModelError
from .heads import SymmetrizedTagger

__all__ = ["EXPORT_FORMAT", "export_tagger", "is_exported_tagger", "load_exported_tagger"]

EXPORT_FORMAT = "equiscope-jets-export"
_METADATA = "equiscope.json"


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


def export_tagger(model: nn.Module, path: str | Path, *, metadata: dict | None = None) -> Path:
    """Write ``model`` (a tagger of :func:`~.model.build_tagger` or a
    :class:`~.heads.SymmetrizedTagger` around one, in ``average`` or ``canonical`` mode)
    to ``path`` as a ``torch.export`` program with the number of jets and of constituents
    symbolic; ``metadata`` (JSON) is stored with it, next to the format tag and the
    tagger's kind. Nothing is left at ``path`` if the export fails."""
    if isinstance(model, SymmetrizedTagger) and model.mode == "random":
        raise ValueError(
            "a random-frame head draws from a Python generator and cannot be exported; "
            "export the 'average' or 'canonical' head"
        )
    path = Path(path)
    training = model.training
    jets = torch.export.Dim("jets", min=1)
    constituents = torch.export.Dim("constituents", min=1)
    try:
        program = torch.export.export(
            _Logits(model).eval(),
            (example_jets(),),
            dynamic_shapes=({0: jets, 1: constituents},),
        )
    finally:
        model.train(training)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.partial.pt2")  # torch wants the suffix
    content = {**(metadata or {}), "format": EXPORT_FORMAT, "kind": getattr(model, "kind", "")}
    try:
        torch.export.save(program, staging, extra_files={_METADATA: json.dumps(content)})
        staging.replace(path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    return path


class ExportedTagger(nn.Module):
    """A loaded program with the taggers' interface: ``forward(momenta, hidden=False)``
    (``hidden``: ``(logits, {})``, a program has no layers to capture), momenta of any
    float dtype (the program was traced on float64 and checks it), ``kind`` and
    ``metadata`` as stored."""

    def __init__(self, program: nn.Module, metadata: dict):
        super().__init__()
        self.program = program
        self.metadata = metadata
        self.kind = f"exported {metadata.get('kind') or 'tagger'}"
        self.training = False

    def train(self, mode: bool = True) -> ExportedTagger:
        """A program is inference-only (its module refuses ``train()``): stays as it is."""
        return self

    def forward(self, momenta: torch.Tensor, hidden: bool = False):
        logits = self.program(momenta.to(torch.float64))
        return (logits, {}) if hidden else logits


def is_exported_tagger(path: str | Path) -> bool:
    """Whether ``path`` is a program written by :func:`export_tagger` (read from the
    archive's stored metadata, without loading the program)."""
    path = Path(path)
    if path.suffix != ".pt2" or not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/extra/" + _METADATA)]
            if len(names) != 1:
                return False
            return json.loads(archive.read(names[0])).get("format") == EXPORT_FORMAT
    except (OSError, zipfile.BadZipFile, ValueError, AttributeError):
        return False


def load_exported_tagger(path: str | Path) -> ExportedTagger:
    """The :class:`ExportedTagger` of a program written by :func:`export_tagger`;
    :class:`~.checkpoint.JetModelError` if ``path`` is missing or not such a program."""
    path = Path(path)
    if not path.is_file():
        raise JetModelError(f"{path}: no such file")
    extra = {_METADATA: ""}
    try:
        program = torch.export.load(path, extra_files=extra).module()
        metadata = json.loads(extra[_METADATA] or "{}")
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise JetModelError(f"{path}: not a readable exported tagger ({message})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != EXPORT_FORMAT:
        raise JetModelError(f"{path}: a torch.export program, but not an exported tagger")
    return ExportedTagger(program, metadata)
