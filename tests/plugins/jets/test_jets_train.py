"""Training: splits, augmentation, fit on tiny jets, the train and audit commands,
bad input with one line and exit code 2."""

import json

import numpy as np
import pytest
import torch

from equiscope.cli import main
from equiscope_jets import (
    AUGMENTATIONS,
    JetData,
    fit,
    jet_frames,
    load_checkpoint,
    prepare_momenta,
    save_jets,
    split_indices,
)
from equiscope_jets.train import augment

TINY = ["--width", "8", "--depth", "1", "--max-constituents", "16", "--no-progress"]


def test_split_is_disjoint_complete_and_stratified():
    labels = np.r_[np.ones(30), np.zeros(20)]
    train, validation, test = split_indices(labels, seed=1)
    joined = np.sort(np.concatenate([train, validation, test]))
    np.testing.assert_array_equal(joined, np.arange(50))
    assert (len(train), len(validation), len(test)) == (35, 5, 10)
    assert labels[validation].sum() == 3 and labels[test].sum() == 6
    with pytest.raises(ValueError, match="at least 3 jets of each class"):
        split_indices(np.r_[np.ones(5), np.zeros(2)])


def test_augmentation_keeps_what_its_group_keeps(small_momenta):
    generator = torch.Generator().manual_seed(0)
    moved = augment(small_momenta, "so2-axis", generator)
    assert moved.dtype == small_momenta.dtype
    torch.testing.assert_close(jet_frames(moved)[:, 2], jet_frames(small_momenta)[:, 2])
    torch.testing.assert_close(moved[..., 0], small_momenta[..., 0])  # energies
    assert not torch.allclose(moved, small_momenta)
    assert augment(small_momenta, "none", generator) is small_momenta
    assert set(AUGMENTATIONS) >= {"none", "so2-axis", "so3"}
    with pytest.raises(ValueError, match="unknown augmentation 'so4'"):
        augment(small_momenta, "so4", generator)


def test_fit_writes_metrics_and_checkpoint(tmp_path, mixed_jets):
    metrics = fit(
        mixed_jets,
        tmp_path,
        config={"width": 8, "depth": 1, "heads": 2},
        max_constituents=16,
        fractions=(0.5, 0.25, 0.25),
        epochs=2,
        progress=False,
    )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(saved["test"]) == {"accuracy", "auc", "rejection_30", "rejection_50", "jets"}
    assert 0 <= saved["test"]["auc"] <= 1 and saved["training"]["epochs_run"] == 2
    assert len(saved["training"]["history"]) == 2 and saved["inference_jets_per_second"] > 0
    _, info = load_checkpoint(tmp_path / "model.pt")
    assert info["max_constituents"] == 16 and info["test"] == metrics["test"]
    assert info["augmentation"] == "so2-axis"


def test_prepare_momenta_rejects_empty_and_nan_jets(mixed_jets):
    momenta = mixed_jets.momenta.copy()
    momenta[3] = 0
    with pytest.raises(ValueError, match=r"^jet 3 has no constituents \(1 empty jet\(s\)"):
        prepare_momenta(JetData(momenta, mixed_jets.label, mixed_jets.jet), 16)
    momenta = mixed_jets.momenta.copy()
    momenta[2, 0, 1] = np.nan
    with pytest.raises(ValueError, match=r"^jet 2 has NaN or infinite momenta$"):
        prepare_momenta(JetData(momenta, mixed_jets.label, mixed_jets.jet), 16)


def test_train_and_audit_commands(tmp_path, jet_files, capsys):
    top, qcd = jet_files
    out = tmp_path / "run"
    code = main(
        [
            "jets",
            "train",
            "--top",
            str(top),
            "--qcd",
            str(qcd),
            "-o",
            str(out),
            "--epochs",
            "1",
            *TINY,
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "AUC" in printed and "1/eps_B" in printed
    assert (out / "metrics.json").is_file()
    code = main(
        [
            "audit",
            str(out / "model.pt"),
            str(qcd),
            "-o",
            str(tmp_path / "audit"),
            "--structures",
            "2",
            "--grid",
            "so2-axis,boost-beam",
            "--n",
            "6",
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "audit" / "report.json").read_text())
    assert report["jets"] == 2 and report["grid"]["size"] == 6
    assert list(report["boosts"]) == ["boost-beam"] and report["layers"]
    code = main(
        [
            "jets",
            "audit",
            str(out / "model.pt"),
            str(qcd),
            "-o",
            str(tmp_path / "h"),
            "--jets",
            "2",
            "--groups",
            "so2-axis",
            "--n",
            "6",
            "--head",
            "canonical",
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "h" / "report.json").read_text())
    logit = report["outputs"]["logit"]
    assert logit["equivariance_rmse"] <= 10 * logit["noise_floor"]


def _bad_file(tmp_path, mixed_jets, how):
    momenta = mixed_jets.momenta.copy()
    if how == "empty":
        momenta[1] = 0
    else:
        momenta[1, 0, 2] = np.nan
    data = JetData(momenta, mixed_jets.label, mixed_jets.jet)
    return save_jets(data, tmp_path / f"{how}.npz")


@pytest.mark.parametrize(
    ("how", "message"), [("empty", "jet 1 has no constituents"), ("nan", "jet 1 has NaN")]
)
def test_train_bad_jets_exit_2(tmp_path, jet_files, mixed_jets, capsys, how, message):
    bad = _bad_file(tmp_path, mixed_jets, how)
    code = main(
        [
            "jets",
            "train",
            "--top",
            str(bad),
            "--qcd",
            str(jet_files[1]),
            "-o",
            str(tmp_path / "x"),
            *TINY,
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_audit_bad_input_exit_2(tmp_path, jet_files, capsys):
    top, qcd = jet_files
    out = tmp_path / "run"
    assert (
        main(
            [
                "jets",
                "train",
                "--top",
                str(top),
                "--qcd",
                str(qcd),
                "-o",
                str(out),
                "--epochs",
                "1",
                *TINY,
            ]
        )
        == 0
    )
    capsys.readouterr()
    cases = [
        (["audit", str(out / "model.pt"), str(qcd), "--grid", "so4"], "unknown group 'so4'"),
        (
            ["jets", "audit", str(out / "model.pt"), str(qcd), "--groups", "lorentz"],
            "unknown group 'lorentz'",
        ),
        (["jets", "audit", str(out / "model.pt"), str(tmp_path / "none.npz")], "no such file"),
        (
            ["jets", "audit", str(out / "model.pt"), str(_bad_file(tmp_path, _jets(qcd), "nan"))],
            "NaN",
        ),
        (["jets", "audit", str(top), str(qcd)], "not a readable tagger checkpoint"),
    ]
    for argv, message in cases:
        code = main([*argv, "-o", str(tmp_path / "audit")])
        err = capsys.readouterr().err
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, argv
    assert not (tmp_path / "audit").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["jets", "train", "--top", str(top), "--qcd", str(qcd), "-o", "x", "--augment", "z"])
    assert exit_info.value.code == 2


def _jets(path):
    from equiscope_jets import load_jets

    return load_jets(path)
