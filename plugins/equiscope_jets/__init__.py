"""Jet adapter: particle-physics jets as point clouds of constituent 4-momenta.

Generates boosted top and QCD jets offline (Pythia 8 + FastJet, the top-tagging
landscape recipe at particle level), reads them and the public landscape HDF5 files
into :class:`JetData`, and checks their physics (:func:`physics_summary`). Trains taggers
(:class:`JetTransformer`, unconstrained; :class:`InvariantTagger`, exactly Lorentz
invariant; :class:`WeaverParT`, weaver-core's ParT as the peer), audits their symmetry
per subgroup (:func:`audit_tagger`, :data:`GROUPS`, boosts against rapidity) and
symmetrises them (:class:`SymmetrizedTagger`). Pythia, FastJet, h5py, torch and weaver
are imported only when needed (``pip install 'equiscope[jets]'``).
"""

from importlib import import_module

from .data import JetData, JetDataError, load_jets, save_jets
from .generate import PROCESSES, generate_jets
from .physics import jet_mass, physics_summary, subjet_pair_masses

# public name -> submodule; imported on first use (torch-based modules stay lazy)
_LAZY = {
    "GROUPS": "actions",
    "BOOSTS": "actions",
    "JetGroup": "actions",
    "boost": "actions",
    "rotate": "actions",
    "jet_frames": "actions",
    "InvariantTagger": "model",
    "JetTransformer": "model",
    "build_tagger": "model",
    "WeaverParT": "peer",
    "PeerUnavailable": "peer",
    "lab_features": "features",
    "invariant_features": "features",
    "classification_metrics": "metrics",
    "roc_auc": "metrics",
    "background_rejection": "metrics",
    "AUGMENTATIONS": "train",
    "fit": "train",
    "train_tagger": "train",
    "predict": "train",
    "prepare_momenta": "train",
    "split_indices": "train",
    "inference_throughput": "train",
    "JetModelError": "checkpoint",
    "save_checkpoint": "checkpoint",
    "load_checkpoint": "checkpoint",
    "is_jet_checkpoint": "checkpoint",
    "audit_tagger": "audit",
    "JetAuditError": "audit",
    "write_jet_report": "report",
    "jet_markdown": "report",
    "SymmetrizedTagger": "heads",
    "canonical_rotation": "heads",
    "HEAD_MODES": "heads",
    "export_tagger": "export",
    "load_exported_tagger": "export",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PROCESSES",
    "JetData",
    "JetDataError",
    "generate_jets",
    "jet_mass",
    "load_jets",
    "physics_summary",
    "save_jets",
    "subjet_pair_masses",
    *sorted(_LAZY),
]
