"""Tagging metrics against brute force and hand-computed values."""

import itertools
import math

import numpy as np
import pytest

from equiscope_jets import background_rejection, classification_metrics, roc_auc


def test_auc_matches_pairwise_counting():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=60), 1)  # with ties
    labels = rng.integers(0, 2, size=60)
    pairs = [
        1.0 if s > b else 0.5 if s == b else 0.0
        for s, b in itertools.product(scores[labels == 1], scores[labels == 0])
    ]
    assert roc_auc(scores, labels) == pytest.approx(np.mean(pairs), abs=1e-12)
    assert roc_auc([0.1, 0.9], [0, 1]) == 1.0 and roc_auc([0.9, 0.1], [0, 1]) == 0.0
    assert roc_auc([0.5, 0.5], [0, 1]) == 0.5


def test_background_rejection_known_values():
    signal = np.arange(10, 20)  # 10 signal scores
    background = np.arange(0, 20)  # 20 background: 3 at or above 17, 5 above 15
    scores = np.r_[signal, background]
    labels = np.r_[np.ones(10), np.zeros(20)]
    assert background_rejection(scores, labels, 0.3) == pytest.approx(20 / 3)  # threshold 17
    assert background_rejection(scores, labels, 0.5) == pytest.approx(20 / 5)  # threshold 15
    assert background_rejection([1.0, 0.0], [1, 0], 0.5) == math.inf
    metrics = classification_metrics(scores - 14.5, labels)
    assert metrics["accuracy"] == pytest.approx((5 + 15) / 30)
    assert set(metrics) == {"accuracy", "auc", "rejection_30", "rejection_50", "jets"}


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, float("nan")], [0, 1], "NaN"),
        ([0.1, 0.2], [1, 1], "both top"),
        ([0.1, 0.2], [0, 2], "labels must be"),
        ([0.1], [0, 1], "1 scores for 2 labels"),
    ],
)
def test_bad_scores_raise(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        roc_auc(scores, labels)
