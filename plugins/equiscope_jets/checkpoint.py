"""Tagger checkpoints: one ``torch.save`` dict that ``equiscope audit`` recognises.

``{"format": "equiscope-jets-tagger", "version": 1, "kind", "config", "state_dict",
"training"}``: ``kind`` and ``config`` rebuild the module (:func:`~.model.build_tagger`),
``training`` keeps how it was trained (augmentation, max constituents, metrics).
Loaded with ``weights_only=True``: no pickled code is run.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

__all__ = ["FORMAT", "JetModelError", "is_jet_checkpoint", "load_checkpoint", "save_checkpoint"]

FORMAT = "equiscope-jets-tagger"


class JetModelError(ValueError):
    """A tagger checkpoint is missing, unreadable or not ours."""


def save_checkpoint(model: torch.nn.Module, path: str | Path, *, training: dict | None = None):
    """Write ``model`` (a tagger from :func:`~.model.build_tagger`) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    torch.save(
        {
            "format": FORMAT,
            "version": 1,
            "kind": model.kind,
            "config": dict(model.config),
            "state_dict": model.state_dict(),
            "training": dict(training or {}),
        },
        staging,
    )
    staging.replace(path)
    return path


def _read(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)


def is_jet_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a tagger checkpoint written by :func:`save_checkpoint`.

    Looks for the format tag in the archive's ``data.pkl`` without unpickling, so other
    files (TorchScript models, metatrain checkpoints) are neither loaded nor warned about."""
    path = Path(path)
    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(names) != 1 or any(n.endswith("/constants.pkl") for n in archive.namelist()):
                return False
            with archive.open(names[0]) as stream:
                return FORMAT.encode() in stream.read(4096)
    except (OSError, zipfile.BadZipFile):
        return False


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """``(model in eval mode, training info)`` from a tagger checkpoint."""
    from .model import build_tagger

    path = Path(path)
    if not path.is_file():
        raise JetModelError(f"{path}: no such file")
    try:
        content = _read(path)
    except Exception as error:
        raise JetModelError(f"{path}: not a readable tagger checkpoint ({error})") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise JetModelError(f"{path}: not an equiscope jet tagger checkpoint")
    try:
        model = build_tagger(content["kind"], content["config"])
        model.load_state_dict(content["state_dict"])
    except (KeyError, RuntimeError, ValueError, ImportError) as error:
        raise JetModelError(f"{path}: cannot rebuild the tagger ({error})") from None
    return model.eval(), dict(content.get("training", {}))
