"""``equiscope demo``: the engine end to end on a real model and generated data.

Rattled fcc copper supercells (generated with ASE, no download), an untrained PET
from metatrain (float32, seeded), evaluated on the O(3) orbit of each structure:
equivariance RMSE of energy and forces against the float32 noise floor, with a
grid-convergence check, and the character spectra of the energy and of the node
features of every PET layer.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

import equiscope as eq

from .orbit import orbit_responses

LAYERS = ("gnn_layers.0_node", "gnn_layers.1_node")


def _structures(n: int, seed: int):
    import ase.build
    from metatomic.torch import systems_to_torch

    out = []
    for index in range(n):
        atoms = ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
        atoms.rattle(0.08, seed=seed + index)
        out.append(systems_to_torch(atoms, dtype=torch.float32))
    return out


def run_demo(output: Path, *, n_structures: int = 2, seed: int = 0) -> dict:
    from tqdm import tqdm

    from .pet import tiny_pet

    start = time.perf_counter()
    model = tiny_pet([29], seed=seed, dtype=torch.float32)
    grid = eq.grid("lebedev", degree=6, inversion=True)
    coarse = eq.grid("lebedev", degree=4, inversion=True)
    max_lambda = grid.exact_degree
    squared = {"energy": [], "forces": [], "forces_coarse": []}
    energy_floor, force_floor, n_atoms = [], [], []
    layer_norms: dict[str, dict] = {path: {} for path in ("energy", *LAYERS)}
    for system in tqdm(_structures(n_structures, seed), desc="structures", unit="struct"):
        fine = orbit_responses(model, system, grid, features=LAYERS)
        rough = orbit_responses(model, system, coarse)
        n_atoms.append(len(system))
        squared["energy"].append(eq.equivariance_variance(fine.energy, grid, "scalar"))
        squared["forces"].append(eq.equivariance_variance(fine.forces, grid, "vector"))
        squared["forces_coarse"].append(eq.equivariance_variance(rough.forces, coarse, "vector"))
        energy_floor.append(eq.noise_floor(fine.energy, torch.float32) / len(system))
        force_floor.append(eq.noise_floor(fine.forces, torch.float32))
        responses = {"energy": fine.energy, **fine.features}
        for path, values in responses.items():
            spectrum = eq.spectrum(values, grid, max_lambda)
            for sector, value in spectrum.items():
                layer_norms[path][sector] = layer_norms[path].get(sector, 0.0) + value

    energy_rmse = eq.pooled_rmse(torch.stack(squared["energy"]), 1, n_atoms)
    forces_rmse = eq.pooled_rmse(torch.cat(squared["forces"]), 3)
    forces_coarse = eq.pooled_rmse(torch.cat(squared["forces_coarse"]), 3)
    change = abs(forces_rmse - forces_coarse) / max(forces_rmse, 1e-300)

    def fractions(norms):
        total = sum(norms.values())
        return {eq.sector_label(k): v / total for k, v in norms.items()}

    report = {
        "model": f"untrained PET (metatrain, float32, seed {seed})",
        "data": f"{n_structures} rattled fcc Cu 2x2x2 supercells (32 atoms)",
        "grid": grid.to_dict(),
        "outputs": {
            "energy": {
                "equivariance_rmse": energy_rmse,
                "unit": "eV/atom",
                "noise_floor": float(sum(energy_floor) / len(energy_floor)),
                "spectrum": fractions(layer_norms.pop("energy")),
            },
            "forces": {
                "equivariance_rmse": forces_rmse,
                "unit": "eV/Angstrom",
                "noise_floor": float(sum(force_floor) / len(force_floor)),
                "converged": change <= 0.01,
                "convergence": {
                    "coarse_grid": coarse.to_dict(),
                    "relative_change": change,
                },
            },
        },
        "layers": {path: {"spectrum": fractions(n)} for path, n in layer_norms.items()},
        "seconds": time.perf_counter() - start,
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / "report.json").write_text(json.dumps(report, indent=2))
    return report


def summary(report: dict) -> str:
    """The table printed at the end of the demo."""
    lines = [
        f"grid: {report['grid']['name']} ({report['grid']['size']} elements, "
        f"exact to lambda={report['grid']['exact_degree']})",
        f"{'output':<10} {'equivariance RMSE':>18} {'noise floor':>12}  unit",
    ]
    for name, out in report["outputs"].items():
        lines.append(
            f"{name:<10} {out['equivariance_rmse']:>18.3e} {out['noise_floor']:>12.1e} "
            f"{out['unit']}"
        )
    forces = report["outputs"]["forces"]
    verdict = "converged" if forces["converged"] else "NOT converged"
    lines.append(
        f"forces, coarser grid: {100 * forces['convergence']['relative_change']:.2f}% "
        f"change ({verdict})"
    )
    lines.append("fraction of squared norm per sector (lambda,sigma):")
    rows = {"energy": report["outputs"]["energy"]["spectrum"]}
    rows.update({path: v["spectrum"] for path, v in report["layers"].items()})
    keys = list(rows["energy"])
    lines.append(f"{'':<20}" + "".join(f"{k:>9}" for k in keys))
    for path, spec in rows.items():
        lines.append(f"{path:<20}" + "".join(f"{spec[k]:>9.2e}" for k in keys))
    lines.append(f"done in {report['seconds']:.0f} s")
    return "\n".join(lines)
