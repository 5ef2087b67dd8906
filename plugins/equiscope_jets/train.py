"""Training a tagger: data preparation, splits, augmentation, the loop with validation,
early stopping and checkpoints, and batched inference.

Loss: binary cross-entropy on the logit. Optimiser: AdamW with a cosine learning-rate
schedule over the planned epochs. After every epoch the validation loss decides: the
best state is kept (and checkpointed), and training stops after ``patience`` epochs
without improvement, at ``epochs``, or once ``time_limit`` seconds are spent (a
training *budget* shared by models of different speeds). Augmentation draws one
Haar-random element of the chosen group per jet and batch (:mod:`.actions`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from .actions import GROUPS, random_elements, rotate
from .data import JetData
from .metrics import classification_metrics

__all__ = ["AUGMENTATIONS", "augment", "predict", "prepare_momenta", "split_indices"]
__all__ += ["fit", "inference_throughput", "train_tagger"]

AUGMENTATIONS = ("none", *GROUPS)


def prepare_momenta(data: JetData, max_constituents: int) -> torch.Tensor:
    """float32 [jets, K, 4]: the ``K`` hardest constituents; one-line errors for jets with
    no constituents or NaN momenta."""
    if max_constituents < 1:
        raise ValueError(f"max constituents must be at least 1, got {max_constituents}")
    momenta = np.asarray(data.momenta[:, :max_constituents], dtype=np.float32)
    finite = np.isfinite(momenta).all(axis=(1, 2))
    if not finite.all():
        raise ValueError(f"jet {int(np.argmin(finite))} has NaN or infinite momenta")
    filled = (momenta[..., 0] > 0).any(axis=1)
    if not filled.all():
        raise ValueError(
            f"jet {int(np.argmin(filled))} has no constituents "
            f"({int((~filled).sum())} empty jet(s) in all)"
        )
    return torch.from_numpy(np.ascontiguousarray(momenta))


def split_indices(labels, fractions=(0.7, 0.1, 0.2), seed: int = 0) -> tuple[np.ndarray, ...]:
    """Random disjoint (train, validation, test) indices, stratified by label: each class
    is split in the given proportions (at least one jet of it in every split)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[], [], []]
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        n = len(members)
        if n < 3:
            raise ValueError(
                f"need at least 3 jets of each class to split, got {n} of class {value}"
            )
        n_val = max(1, round(fractions[1] * n))
        n_train = min(max(1, round(fractions[0] * n)), n - n_val - 1)
        for part, chunk in zip(parts, np.split(members, [n_train, n_train + n_val]), strict=True):
            part.append(chunk)
    return tuple(rng.permutation(np.concatenate(part)) for part in parts)


def augment(momenta: torch.Tensor, group: str, generator: torch.Generator) -> torch.Tensor:
    """One random element of ``group`` (``none`` or a name of :data:`GROUPS`) per jet."""
    if group == "none":
        return momenta
    if group not in GROUPS:
        raise ValueError(
            f"unknown augmentation '{group}'; expected one of {', '.join(AUGMENTATIONS)}"
        )
    elements = random_elements(GROUPS[group], momenta, generator)
    return rotate(momenta, elements).to(momenta.dtype)


@torch.no_grad()
def predict(model: torch.nn.Module, momenta: torch.Tensor, batch_size: int = 512) -> np.ndarray:
    """Logits [jets] in eval mode."""
    model.eval()
    out = [model(momenta[i : i + batch_size]) for i in range(0, len(momenta), batch_size)]
    return torch.cat(out).double().numpy()


def train_tagger(
    model: torch.nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    *,
    augmentation: str = "so2-axis",
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    patience: int = 4,
    time_limit: float | None = None,
    seed: int = 0,
    checkpoint: Path | None = None,
    checkpoint_info: dict | None = None,
    progress: bool = True,
) -> dict:
    """Train ``model`` in place on ``(momenta, labels)``; returns the history.

    The model ends in its best validation state. ``checkpoint``: where to save it (with
    ``checkpoint_info`` merged into the checkpoint's ``training``)."""
    from .checkpoint import save_checkpoint

    if augmentation not in AUGMENTATIONS:
        raise ValueError(
            f"unknown augmentation '{augmentation}'; expected one of {', '.join(AUGMENTATIONS)}"
        )
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    momenta, labels = train
    steps_per_epoch = math.ceil(len(momenta) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.1
    )
    history: list[dict] = []
    best, best_state, stale, train_seconds, seen = math.inf, None, 0, 0.0, 0
    start = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=epochs * steps_per_epoch, desc=f"train {model.kind}", unit="batch")
    stopped = "epochs"
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(momenta), generator=generator)
        epoch_start, total = time.perf_counter(), 0.0
        for step in range(steps_per_epoch):
            index = order[step * batch_size : (step + 1) * batch_size]
            batch = augment(momenta[index], augmentation, generator)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(batch), labels[index].to(torch.float32)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
            if bar is not None:
                bar.update()
        train_seconds += time.perf_counter() - epoch_start
        seen += len(momenta)
        val_logits = predict(model, validation[0])
        val_loss = float(
            torch.nn.functional.binary_cross_entropy_with_logits(
                torch.from_numpy(val_logits), validation[1].double()
            )
        )
        val_metrics = classification_metrics(val_logits, validation[1].numpy())
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": total / len(momenta),
                "val_loss": val_loss,
                "val_auc": val_metrics["auc"],
                "val_accuracy": val_metrics["accuracy"],
                "seconds": time.perf_counter() - start,
            }
        )
        if bar is not None:
            bar.set_postfix(val_loss=f"{val_loss:.4f}", val_auc=f"{val_metrics['auc']:.4f}")
        if val_loss < best:
            best, stale = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if checkpoint is not None:
                info = {**(checkpoint_info or {}), "augmentation": augmentation}
                info["best_epoch"] = epoch + 1
                save_checkpoint(model, checkpoint, training=info)
        else:
            stale += 1
            if stale >= patience:
                stopped = "early stopping"
                break
        if time_limit is not None and time.perf_counter() - start >= time_limit:
            stopped = "time limit"
            break
    if bar is not None:
        bar.close()
    model.load_state_dict(best_state)
    model.eval()
    best_epoch = min(history, key=lambda h: h["val_loss"])["epoch"]
    return {
        "history": history,
        "best_epoch": best_epoch,
        "epochs_run": len(history),
        "stopped_by": stopped,
        "augmentation": augmentation,
        "train_seconds": train_seconds,
        "train_jets_per_second": seen / train_seconds,
        "seconds": time.perf_counter() - start,
    }


def inference_throughput(model: torch.nn.Module, momenta: torch.Tensor, batch_size: int = 512):
    """Jets per second of :func:`predict` on ``momenta`` (one timed pass after a warm-up)."""
    predict(model, momenta[:batch_size], batch_size)
    start = time.perf_counter()
    predict(model, momenta, batch_size)
    return len(momenta) / (time.perf_counter() - start)


def fit(
    data: JetData,
    output: str | Path,
    *,
    model: str = "transformer",
    config: dict | None = None,
    max_constituents: int = 64,
    fractions=(0.7, 0.1, 0.2),
    split_seed: int = 0,
    **options,
) -> dict:
    """Split ``data``, train a new ``model`` (see :func:`train_tagger` for ``options``),
    evaluate it on the test split and write ``output/model.pt`` and ``output/metrics.json``.

    Returns the metrics: ``test`` (accuracy, AUC, 1/eps_B at eps_S = 0.3 and 0.5),
    ``training`` (history, throughput), ``inference_jets_per_second``, ``split``."""
    import json

    from .checkpoint import save_checkpoint
    from .model import build_tagger

    output = Path(output)
    momenta = prepare_momenta(data, max_constituents)
    labels = torch.from_numpy(np.asarray(data.label, dtype=np.int64))
    if len(np.unique(data.label)) < 2:
        raise ValueError("training needs both top (1) and QCD (0) jets")
    train, validation, test = split_indices(data.label, fractions, split_seed)
    tagger = build_tagger(model, config)
    info = {
        "max_constituents": max_constituents,
        "split_seed": split_seed,
        "fractions": list(fractions),
    }
    output.mkdir(parents=True, exist_ok=True)
    training = train_tagger(
        tagger,
        (momenta[train], labels[train]),
        (momenta[validation], labels[validation]),
        checkpoint=output / "model.pt",
        checkpoint_info=info,
        **options,
    )
    logits = predict(tagger, momenta[test])
    metrics = {
        "model": model,
        "config": dict(tagger.config),
        "parameters": sum(p.numel() for p in tagger.parameters()),
        "test": classification_metrics(logits, data.label[test]),
        "training": training,
        "inference_jets_per_second": inference_throughput(tagger, momenta[test]),
        "split": {"train": len(train), "validation": len(validation), "test": len(test)},
        **info,
    }
    save_checkpoint(tagger, output / "model.pt", training={**info, **_short(training, metrics)})
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _short(training: dict, metrics: dict) -> dict:
    keys = ("best_epoch", "epochs_run", "augmentation", "train_jets_per_second")
    return {**{k: training[k] for k in keys}, "test": metrics["test"]}
