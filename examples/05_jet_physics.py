"""Jet physics sanity: the top mass, the W inside top jets, and falling QCD masses
===============================================================================

Generates boosted top and QCD jets with Pythia 8 + FastJet (or reads them with
``--top FILE --qcd FILE``, our npz or the landscape HDF5), prints a table of
:func:`equiscope_jets.physics_summary` and plots the jet-mass distributions of both classes
next to the W candidate: the smallest pair mass of three exclusive kT subjets.

Run it with:

.. code-block:: bash

    python examples/05_jet_physics.py [--n 2000] [--workers 1] [--seed 0] \\
        [--top FILE --qcd FILE] [--save-dir DIR] [--output jets_mass.png]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from equiscope_jets import (
    JetData,
    generate_jets,
    jet_mass,
    load_jets,
    physics_summary,
    save_jets,
    subjet_pair_masses,
)

M_TOP, M_W = 172.5, 80.4  # GeV, Pythia's defaults (6:m0 = 172.5, 24:m0 = 80.385)

# %%
# The quantities of :func:`equiscope_jets.physics_summary` printed for each class.

ROWS = [
    ("jets", "jets", "{:d}"),
    ("constituents_mean", "constituents per jet (mean)", "{:.1f}"),
    ("mass_median", "jet mass median [GeV]", "{:.1f}"),
    ("mass_peak", "jet mass peak [GeV]", "{:.1f}"),
    ("mass_fraction_150_200", "fraction with 150 < m < 200 GeV", "{:.3f}"),
    ("mass_fractions_100_150_200_250", "fractions in 100-150/-200/-250 GeV", None),
    ("mass_falling_above_100", "mass falling above 100 GeV", "{}"),
    ("w_candidate_peak", "W candidate m_min peak [GeV]", "{:.1f}"),
    ("w_candidate_median", "W candidate m_min median [GeV]", "{:.1f}"),
    ("w_candidate_fraction_65_95", "fraction with 65 < m_min < 95 GeV", "{:.3f}"),
]


def _jets(process: str, args) -> tuple[JetData, float | None]:
    path = getattr(args, process)
    if path is not None:
        return load_jets(path), None
    start = time.perf_counter()
    data = generate_jets(process, args.n, seed=args.seed, workers=args.workers)
    rate = len(data) / (time.perf_counter() - start) / args.workers
    if args.save_dir is not None:
        save_jets(data, Path(args.save_dir) / f"{process}_{args.n}_seed{args.seed}.npz")
    return data, rate


def _cell(value, fmt) -> str:
    if fmt is None:
        return " / ".join(f"{v:.3f}" for v in value)
    return fmt.format(value)


# %%
# Generate (or read) the jets, print the summary and plot the jet mass and the W
# candidate.


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="jets per class to generate")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    parser.add_argument("--seed", type=int, default=0, help="generation seed")
    parser.add_argument("--top", help="read top jets from this file instead")
    parser.add_argument("--qcd", help="read QCD jets from this file instead")
    parser.add_argument("--save-dir", help="also save the generated jets here")
    parser.add_argument("--output", default="jets_mass.png", help="figure (PNG)")
    args = parser.parse_args(argv)

    top, top_rate = _jets("top", args)
    qcd, qcd_rate = _jets("qcd", args)
    top = top.select(top.label == 1)
    qcd = qcd.select(qcd.label == 0)
    data = JetData.concatenate([top, qcd])
    pairs = subjet_pair_masses(data)
    summary = physics_summary(data, pair_masses=pairs)

    print(f"{'quantity':<38}{'top':>22}{'QCD':>22}")
    for key, name, fmt in ROWS:
        print(
            f"{name:<38}{_cell(summary['top'][key], fmt):>22}{_cell(summary['qcd'][key], fmt):>22}"
        )
    if top_rate is not None and qcd_rate is not None:
        print(f"{'generation [jets/s per worker]':<38}{top_rate:>22.1f}{qcd_rate:>22.1f}")

    mass = jet_mass(data.jet)
    m_min = pairs.min(axis=1)  # NaN for jets with < 3 constituents
    is_top = data.label == 1
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    bins = np.arange(0, 302, 5)
    left.hist(mass[is_top], bins=bins, histtype="step", lw=1.5, label=f"top ({is_top.sum()})")
    left.hist(mass[~is_top], bins=bins, histtype="step", lw=1.5, label=f"QCD ({(~is_top).sum()})")
    left.axvline(M_TOP, color="grey", ls="--", lw=1, label=f"$m_t$ = {M_TOP} GeV")
    left.set_xlabel("jet mass [GeV]")
    left.set_ylabel("jets / 5 GeV")
    left.legend(frameon=False, loc="upper left")
    bins = np.arange(0, 202, 4)
    right.hist(m_min[is_top], bins=bins, histtype="step", lw=1.5, label="top")
    right.hist(m_min[~is_top], bins=bins, histtype="step", lw=1.5, label="QCD")
    right.axvline(M_W, color="grey", ls="--", lw=1, label=f"$m_W$ = {M_W} GeV")
    right.set_xlabel(r"W candidate $m_\min$ of 3 exclusive $k_T$ subjets [GeV]")
    right.set_ylabel("jets / 4 GeV")
    right.legend(frameon=False)
    figure.suptitle("Particle-level jets, 14 TeV, anti-$k_T$ R = 0.8, 550 < $p_T$ < 650 GeV")
    figure.tight_layout()
    figure.savefig(args.output, dpi=100)
    print(f"figure: {args.output}")


# %%
# Run
# ---
# The documentation build generates 200 jets per class; the distributions are coarse
# at that size but already show the top and W peaks.

if __name__ == "__main__":
    main()
