"""Tagging metrics: accuracy, ROC AUC and background rejection 1/eps_B at fixed eps_S.

For scores s (higher = more top-like) and labels y (1 top, 0 QCD):

* accuracy at the threshold s > 0 (logits) or s > 0.5 (``threshold=`` for others);
* AUC = P(s_top > s_qcd) + P(s_top = s_qcd) / 2 (Mann-Whitney U with mid-ranks);
* eps_S(t) = P(s_top >= t), eps_B(t) = P(s_qcd >= t); the rejection at eps_S = e uses
  the threshold keeping the ceil(e N_top) highest signal scores: 1 / eps_B (inf if no
  background passes).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["background_rejection", "classification_metrics", "roc_auc"]


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores for {labels.size} labels")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (QCD) or 1 (top)")
    if labels.all() or not labels.any():
        raise ValueError("need both top (1) and QCD (0) jets")
    return scores, labels.astype(bool)


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve (ties count one half)."""
    scores, labels = _check(scores, labels)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size)
    sorted_scores = scores[order]
    # mid-ranks over runs of equal scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], scores.size]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def background_rejection(scores, labels, signal_efficiency: float) -> float:
    """1 / eps_B at the threshold where eps_S = ``signal_efficiency``."""
    scores, labels = _check(scores, labels)
    if not 0 < signal_efficiency <= 1:
        raise ValueError(f"signal efficiency must be in (0, 1], got {signal_efficiency}")
    signal = np.sort(scores[labels])[::-1]
    threshold = signal[max(math.ceil(signal_efficiency * signal.size), 1) - 1]
    passed = float((scores[~labels] >= threshold).mean())
    return math.inf if passed == 0 else 1.0 / passed


def classification_metrics(scores, labels, *, threshold: float = 0.0) -> dict:
    """``{accuracy, auc, rejection_30, rejection_50, jets}``: 1/eps_B at eps_S = 0.3, 0.5."""
    scores, labels = _check(scores, labels)
    return {
        "accuracy": float(((scores > threshold) == labels).mean()),
        "auc": roc_auc(scores, labels),
        "rejection_30": background_rejection(scores, labels, 0.3),
        "rejection_50": background_rejection(scores, labels, 0.5),
        "jets": int(scores.size),
    }
