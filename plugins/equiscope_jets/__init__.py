"""Jet adapter: particle-physics jets as point clouds of constituent 4-momenta.

Generates boosted top and QCD jets offline (Pythia 8 + FastJet, the top-tagging
landscape recipe at particle level), reads them and the public landscape HDF5 files
into :class:`JetData`, and checks their physics (:func:`physics_summary`). Pythia,
FastJet and h5py are imported only when needed (``pip install 'equiscope[jets]'``).
"""

from .data import JetData, JetDataError, load_jets, save_jets
from .generate import PROCESSES, generate_jets
from .physics import jet_mass, physics_summary, subjet_pair_masses

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
]
