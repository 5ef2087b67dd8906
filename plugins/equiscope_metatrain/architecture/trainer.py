"""``experimental.equiscope``'s trainer: PET's trainer plus the symmetry monitor.

PET's training loop has no callback; the monitor runs right after metatrain logs an
epoch's metrics (a :class:`~metatrain.utils.logging.MetricLogger` subclass is put in
place of PET's for the duration of ``train``), so its lines follow each logged epoch.
"""

import contextlib
from typing import List, Union

import metatrain.pet.trainer as pet_trainer
import torch
from metatrain.pet.trainer import Trainer as PETTrainer
from metatrain.utils.logging import MetricLogger

from ..monitor import SymmetryMonitor

__all__ = ["Trainer"]


@contextlib.contextmanager
def _monitoring(monitor, model):
    """Within the block, PET's metric logger also runs ``monitor`` on ``model``."""

    class MonitoringLogger(MetricLogger):
        def log(self, metrics, epoch=None, rank=None, learning_rate=None):
            super().log(metrics=metrics, epoch=epoch, rank=rank, learning_rate=learning_rate)
            if epoch is not None and not rank and monitor.due(epoch):
                monitor.measure(model, epoch)

    original = pet_trainer.MetricLogger
    pet_trainer.MetricLogger = MonitoringLogger
    try:
        yield
    finally:
        pet_trainer.MetricLogger = original


class Trainer(PETTrainer):
    """PET's trainer (same hypers) with ``monitor`` (see :mod:`equiscope_metatrain.monitor`)."""

    def train(
        self,
        model,
        dtype: torch.dtype,
        devices: List[torch.device],
        train_datasets: List[Union[torch.utils.data.Dataset, torch.utils.data.Subset]],
        val_datasets: List[Union[torch.utils.data.Dataset, torch.utils.data.Subset]],
        checkpoint_dir: str,
    ) -> None:
        hypers = self.hypers["monitor"]
        if not hypers["enabled"]:
            return super().train(
                model, dtype, devices, train_datasets, val_datasets, checkpoint_dir
            )
        targets = list(model.dataset_info.targets)
        monitor = SymmetryMonitor(
            hypers, val_datasets, targets, checkpoint_dir, self.hypers["num_epochs"] - 1
        )
        with _monitoring(monitor, model):
            super().train(model, dtype, devices, train_datasets, val_datasets, checkpoint_dir)
        monitor.plot()
        self.monitor_rows = monitor.rows
