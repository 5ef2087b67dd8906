"""``experimental.equiscope``'s trainer: PET's trainer plus the symmetry monitor.

PET's training loop has no callback; the monitor runs right after metatrain logs an
epoch's metrics (a :class:`~metatrain.utils.logging.MetricLogger` subclass is put in
place of PET's for the duration of ``train``), so its lines follow each logged epoch.
"""

import contextlib
import copy
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
        arguments = (model, dtype, devices, train_datasets, val_datasets, checkpoint_dir)
        targets = list(model.dataset_info.targets)
        if not hypers["enabled"]:
            super().train(*arguments)
            self._finetune(model, train_datasets, targets)
            return
        monitor = SymmetryMonitor(
            hypers, val_datasets, targets, checkpoint_dir, self.hypers["num_epochs"] - 1
        )
        with _monitoring(monitor, model):
            super().train(*arguments)
        if self._finetune(model, train_datasets, targets):
            monitor.measure(model, self.hypers["num_epochs"])  # after fine-tuning
        monitor.plot()
        self.monitor_rows = monitor.rows

    def _finetune(self, model, datasets, targets) -> bool:
        """Equivariance fine-tuning of the best model; ``True`` if it ran."""
        hypers = self.hypers["equivariance_finetuning"]
        if hypers["epochs"] == 0:
            return False
        from metatrain.utils.neighbor_lists import get_system_with_neighbor_lists

        import equiscope as eq

        from ..finetune import equivariance_finetune
        from ..monitor import _system

        if self.best_model_state_dict is not None:
            best = dict(self.best_model_state_dict)
            best.pop("finetune_config", None)
            model.load_state_dict(best)
        parameter = next(model.parameters())
        requests = model.requested_neighbor_lists()
        systems = [
            get_system_with_neighbor_lists(_system(dataset[i]), requests).to(
                dtype=parameter.dtype, device=parameter.device
            )
            for dataset in datasets
            for i in range(len(dataset))
        ]
        equivariance_finetune(
            model,
            systems,
            targets,
            epochs=hypers["epochs"],
            learning_rate=hypers["learning_rate"],
            grid=eq.grid(hypers["grid"], inversion=True),
            batch_size=hypers["batch_size"],
        )
        self.best_model_state_dict = copy.deepcopy(model.state_dict())
        return True
