"""Grids and spectra: which sectors each grid averages out, and the analytic spectra
=================================================================================

Prints the computed exactness of every built-in grid next to its size, checks the
character spectrum of 1, x, xy, xyz on the unit sphere (pure lambda = 0..3 with
squared norms 1, 1/3, 1/15, 1/105) and plots both to ``grids_and_spectra.png``.

Run it with:

.. code-block:: bash

    python examples/01_grids_and_spectra.py [output.png]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import equiscope as eq

torch.set_num_threads(1)

# %%
# The grids compared: the tetrahedral (12 rotations), octahedral (24) and icosahedral
# (60) groups and two Lebedev product grids. What each one averages out is computed from
# its representation matrices when asked for (``Grid.averages_out``), not looked up.

GRIDS = [
    ("tetrahedral", {}),
    ("octahedral", {}),
    ("icosahedral", {}),
    ("lebedev", {"degree": 5}),
    ("lebedev", {"degree": 8}),
]


# %%
# Exactness and spectra
# ---------------------
# ``eq.spectrum`` takes the direct responses ``u_i = f(g_i x)`` of any function on the
# grid's elements and returns the squared norm ``B`` in each sector ``(lambda, sigma)``.
# For the polynomials 1, x, xy and xyz on the unit sphere the answers are known: one
# sector each, with squared norms 1, 1/3, 1/15 and 1/105.


def main(output: str = "grids_and_spectra.png") -> None:
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    print(f"{'grid':<14}{'size':>6}  averages out exactly (degrees checked)")
    for row, (name, options) in enumerate(GRIDS):
        grid = eq.grid(name, **options)
        label = name + (f" d={options['degree']}" if options else "")
        print(f"{label:<14}{grid.size:>6}  {list(grid.averages_out)}")
        checked = range(1, grid.check_degree + 1)
        left.scatter(
            [lam for lam in checked if lam in grid.averages_out],
            [row] * len(grid.averages_out),
            marker="s",
        )
        left.text(grid.check_degree + 0.5, row, f"{grid.size}", va="center")
    left.set_yticks(range(len(GRIDS)))
    left.set_yticklabels([n + (f" d={o['degree']}" if o else "") for n, o in GRIDS])
    left.set_xlabel("lambda averaged out exactly (number: grid size)")
    left.set_xlim(0.5, 14)

    grid = eq.grid("lebedev", degree=8, inversion=True)
    points = torch.randn(200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    points = points / points.norm(dim=1, keepdim=True)
    x, y, z = torch.einsum("nab,pb->npa", grid.rotations, points).unbind(-1)
    functions = {"1": torch.ones_like(x), "x": x, "xy": x * y, "xyz": x * y * z}
    print("\nspectrum on the unit sphere (per point):")
    for offset, (name, u) in enumerate(functions.items()):
        spec = eq.spectrum(u, grid, max_lambda=4)
        norms = {k: v / points.shape[0] for k, v in spec.items() if v > 1e-12}
        print(f"  {name:<4}", {eq.sector_label(k): round(v, 6) for k, v in norms.items()})
        sectors = list(spec)
        right.bar(
            [i + 0.2 * offset for i in range(len(sectors))],
            [spec[k] / points.shape[0] for k in sectors],
            width=0.2,
            label=name,
        )
    right.set_xticks([i + 0.3 for i in range(len(sectors))])
    right.set_xticklabels([eq.sector_label(k) for k in sectors], rotation=45)
    right.set_yscale("log")
    right.set_ylim(1e-3, 2)
    right.set_ylabel("squared norm B per point")
    right.set_xlabel("sector (lambda, sigma)")
    right.legend()
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    print(f"\nfigure: {output}")


# %%
# Run
# ---
# The first table lists every grid's size and the degrees it averages out exactly; the
# second the spectrum of each function per point.

if __name__ == "__main__":
    main(*sys.argv[1:])
