"""Symmetry monitoring during training: A per target and per-layer spectra B per epoch.

At the monitored epochs the model is evaluated on the grid orbit of a few validation
structures (with :func:`equiscope_atoms.audit`); the equivariance RMSE of every target
(root mean over structures of A^2; targets with one value per structure, such as
energies, a direct stress or a dipole, as structure totals, per atom) and, per hidden layer, the
fraction of the feature norm outside the invariant sector, 1 - B(0, +1), go to the log
and to ``symmetry_monitor.csv``; :meth:`SymmetryMonitor.plot` draws them against the
epoch.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import torch

import equiscope as eq

__all__ = ["SymmetryMonitor"]

LOGGER = logging.getLogger(__name__)
INVARIANT = eq.sector_label((0, 1))


def _system(sample):
    return sample["system"] if isinstance(sample, dict) else sample.system


def _totals(model: torch.nn.Module, loaded, targets: list[str]) -> set[str]:
    """Targets with one value per structure that the model declares per atom (PET
    declares every target so): the monitor measures their totals, the observable, as
    the audit's ``--totals`` does. (``energy`` is always audited as a total.)"""
    infos = model.dataset_info.targets
    return {
        name
        for name in targets
        if name in infos
        and name.split("/")[0] != "energy"
        and infos[name].sample_kind == "system"
        and name in loaded.outputs
        and loaded.outputs[name].sample_kind == "atom"
    }


class SymmetryMonitor:
    """Measures ``model`` every ``hypers["interval"]`` epochs (and at ``last_epoch``)."""

    def __init__(self, hypers: dict, datasets, targets: list[str], folder, last_epoch: int):
        from equiscope_atoms.data import Structure

        self.hypers = hypers
        self.targets = targets
        self.last_epoch = last_epoch
        self.grid = eq.grid(hypers["grid"], degree=hypers["degree"], inversion=hypers["inversion"])
        self.structures = []
        for dataset in datasets:
            for index in range(len(dataset)):
                if len(self.structures) == hypers["structures"]:
                    break
                system = _system(dataset[index])
                self.structures.append(Structure(system=system, index=len(self.structures)))
        self.path = Path(folder) / "symmetry_monitor.csv"
        self.rows: list[dict] = []
        self.units: dict[str, str] = {}  # declared unit of each target, "" if none

    def due(self, epoch: int) -> bool:
        return bool(self.structures) and (
            epoch % self.hypers["interval"] == 0 or epoch == self.last_epoch
        )

    def measure(self, model: torch.nn.Module, epoch: int) -> dict:
        """Audit ``model`` now; returns (and records) the row of numbers."""
        from equiscope_atoms import audit, wrap_model

        was_training = model.training
        start = time.perf_counter()
        try:
            loaded = wrap_model(model)
            loaded.totals = _totals(model, loaded, self.targets)
            parameter = next(model.parameters())
            loaded.device, loaded.dtype = parameter.device, parameter.dtype
            layers = loaded.layers if self.hypers["layers"] else []
            with torch.no_grad():
                report = audit(
                    loaded,
                    self.structures,
                    grid=self.grid,
                    outputs=self.targets,
                    layers=layers,
                    batch_size=self.grid.size,
                    convergence_structures=0,
                    progress=False,
                )
        finally:
            model.train(was_training)
        row = {"epoch": epoch, "seconds": time.perf_counter() - start}
        for name, summary in report["outputs"].items():
            row[f"A:{name}"] = summary["equivariance_rmse"]
            self.units[name] = summary.get("unit", "")
        for path, layer in report["layers"].items():
            row[f"non_invariant:{path}"] = 1.0 - layer["spectrum"].get(INVARIANT, 0.0)
        self.rows.append(row)
        self._write()
        targets = ", ".join(f"{k[2:]} {v:.3g}" for k, v in row.items() if k.startswith("A:"))
        LOGGER.info(
            "symmetry (epoch %d, %s, %d structures, %.1f s): equivariance RMSE %s",
            epoch,
            self.grid.name,
            len(self.structures),
            row["seconds"],
            targets,
        )
        layers = [(k.split(":", 1)[1], v) for k, v in row.items() if k.startswith("non_inv")]
        if layers:
            LOGGER.info(
                "symmetry (epoch %d): non-invariant feature fraction %s",
                epoch,
                ", ".join(f"{path} {value:.3g}" for path, value in layers),
            )
        return row

    def _write(self) -> None:
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)

    def plot(self, path=None) -> Path | None:
        """Equivariance RMSE per target and non-invariant fraction per layer vs epoch."""
        if not self.rows:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        path = Path(path) if path is not None else self.path.with_suffix(".png")
        epochs = [row["epoch"] for row in self.rows]
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for key in self.rows[-1]:
            values = [row.get(key, float("nan")) for row in self.rows]
            if key.startswith("A:"):
                unit = self.units.get(key[2:]) or "units not declared"
                left.plot(epochs, values, marker="o", label=f"{key[2:]} ({unit})")
            elif key.startswith("non_invariant:"):
                right.plot(epochs, values, marker="o", label=key.split(":", 1)[1])
        left.set(
            xlabel="epoch",
            ylabel="equivariance RMSE (unit in the legend)",
            yscale="log",
            title="outputs",
        )
        right.set(
            xlabel="epoch",
            ylabel="1 - B(0,+1): share of |feature|^2\noutside the invariant sector",
            yscale="log",
            title="hidden features",
        )
        for axis in (left, right):
            if axis.lines:
                axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        LOGGER.info("symmetry monitor: figure written to %s (numbers in %s)", path, self.path)
        return path
