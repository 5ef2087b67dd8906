"""Physics sanity checks of jet samples: jet mass and 3-subjet pair masses.

For a hadronic top jet (t -> b W, W -> q q') the jet mass m_J = sqrt(E^2 - |p|^2) peaks
near m_t ~ 173 GeV and, reclustering the constituents into three exclusive kT subjets,
the smallest subjet-pair mass m_min peaks near m_W ~ 80 GeV (the W pair is usually the
lightest of the three). QCD jets have a Sudakov peak at low mass and a falling tail.
"""

from __future__ import annotations

import numpy as np

from ._quiet import quiet_stdout
from .data import JetData

__all__ = ["jet_mass", "physics_summary", "subjet_pair_masses"]

# kT radius for the exclusive reclustering: constituents lie within 0.8 of the axis, so
# pairs are closer than 1.6 and, with R = 1.6, never merge with the beam
_SUBJET_RADIUS = 1.6
_PAIRS = ((0, 1), (0, 2), (1, 2))


def jet_mass(p4: np.ndarray) -> np.ndarray:
    """Invariant mass sqrt(max(E^2 - |p|^2, 0)) of 4-vectors (E, px, py, pz) [..., 4]."""
    p4 = np.asarray(p4, dtype=np.float64)
    return np.sqrt(np.maximum(p4[..., 0] ** 2 - (p4[..., 1:] ** 2).sum(axis=-1), 0.0))


def subjet_pair_masses(data: JetData) -> np.ndarray:
    """[jets, 3] masses of the subjet pairs (1,2), (1,3), (2,3) of three exclusive kT
    subjets (sorted by pT) of each jet's constituents; NaN for jets with < 3."""
    import fastjet

    definition = fastjet.JetDefinition(fastjet.kt_algorithm, _SUBJET_RADIUS)
    out = np.full((len(data), 3), np.nan)
    with quiet_stdout():  # FastJet's banner
        for j, (momenta, mask) in enumerate(zip(data.momenta, data.mask, strict=True)):
            if mask.sum() < 3:
                continue
            inputs = [
                fastjet.PseudoJet(px, py, pz, e)
                for e, px, py, pz in momenta[mask].astype(np.float64).tolist()
            ]
            sequence = fastjet.ClusterSequence(inputs, definition)
            subjets = np.array(
                [
                    (s.e(), s.px(), s.py(), s.pz())
                    for s in fastjet.sorted_by_pt(sequence.exclusive_jets(3))
                ]
            )
            out[j] = [jet_mass(subjets[a] + subjets[b]) for a, b in _PAIRS]
    return out


def _peak(values: np.ndarray, low: float, high: float, width: float = 5.0) -> float:
    """Mode in [low, high]: argmax of a histogram (``width`` bins) smoothed with a
    (1, 2, 3, 2, 1) kernel, refined by a parabola through the maximum and its neighbours."""
    counts, edges = np.histogram(values, bins=np.arange(low, high + width / 2, width))
    smooth = np.convolve(counts, np.array([1, 2, 3, 2, 1]) / 9, mode="same")
    k = int(np.argmax(smooth))
    centre = 0.5 * (edges[k] + edges[k + 1])
    if 0 < k < len(smooth) - 1:
        left, middle, right = smooth[k - 1 : k + 2]
        curvature = left - 2 * middle + right
        if curvature < 0:
            centre += 0.5 * width * (left - right) / curvature
    return float(centre)


def _fraction(values: np.ndarray, low: float, high: float) -> float:
    return float(np.mean((values >= low) & (values < high)))


def physics_summary(
    data: JetData, *, pair_masses: np.ndarray | None = None
) -> dict[str, dict[str, object]]:
    """Per class present ("top", "qcd"): jet count, mean constituents, jet-mass median,
    peak and fraction in [150, 200] GeV, fractions in 50 GeV bins from 100 to 250 GeV and
    whether they fall, and the W candidate m_min (peak, median, fraction in [65, 95] GeV).
    Peaks are searched in [100, 300] (top mass), [40, 130] (top m_min) and from 0 for QCD.
    ``pair_masses``: :func:`subjet_pair_masses` of ``data`` if already computed."""
    mass = jet_mass(data.jet)
    pair = subjet_pair_masses(data) if pair_masses is None else pair_masses
    m_min = np.where(np.isnan(pair), np.inf, pair).min(axis=1)
    summary: dict[str, dict[str, object]] = {}
    for name, label in (("top", 1), ("qcd", 0)):
        selected = data.label == label
        if not selected.any():
            continue
        m = mass[selected]
        w = m_min[selected]
        w = w[np.isfinite(w)]
        tail = [_fraction(m, low, low + 50) for low in (100, 150, 200)]
        summary[name] = {
            "jets": int(selected.sum()),
            "constituents_mean": float(data.n_constituents[selected].mean()),
            "mass_median": float(np.median(m)),
            "mass_peak": _peak(m, 100, 300) if name == "top" else _peak(m, 0, 300),
            "mass_fraction_150_200": _fraction(m, 150, 200),
            "mass_fractions_100_150_200_250": tail,
            "mass_falling_above_100": bool(tail[0] > tail[1] > tail[2]),
            "w_candidate_peak": _peak(w, 40 if name == "top" else 0, 130)
            if len(w)
            else float("nan"),
            "w_candidate_median": float(np.median(w)) if len(w) else float("nan"),
            "w_candidate_fraction_65_95": _fraction(w, 65, 95) if len(w) else float("nan"),
        }
    return summary
