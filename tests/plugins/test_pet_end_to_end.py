"""A PET trained with plain metatrain, audited from its checkpoint and its export."""

import json

import pytest

import equiscope as eq
from equiscope_atoms.demo import run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    reports = run_demo(
        folder,
        n_train=8,
        n_audit=1,
        epochs=1,
        grid=eq.grid("octahedral", inversion=True),
        progress=False,
    )
    return folder, reports


def test_checkpoint_audit_has_layer_spectra(demo):
    folder, _ = demo
    saved = json.loads((folder / "audit-checkpoint" / "report.json").read_text())
    assert set(saved["outputs"]) == {"energy", "forces", "stress"}
    assert set(saved["layers"]) == {
        "gnn_layers.0_node",
        "gnn_layers.0_edge",
        "gnn_layers.1_node",
        "gnn_layers.1_edge",
    }
    for layer in saved["layers"].values():
        # fractions of the total: the rest lies above max lambda
        total = sum(layer["spectrum"].values()) + layer["above_max_lambda"]
        assert total == pytest.approx(1.0, abs=1e-9)
        assert layer["spectrum"]["0,1"] > 0.5  # mostly invariant tokens
    assert (folder / "audit-checkpoint" / "layer_spectra.png").stat().st_size > 5000
    # PET learns symmetry from augmentation only: the error is real but small
    for out in saved["outputs"].values():
        assert out["equivariance_rmse"] > out["noise_floor"]
        assert out["equivariance_rmse"] < out["accuracy"]["oriented_rmse"]


def test_export_audit_agrees_with_checkpoint(demo):
    folder, reports = demo
    assert reports["export"]["layers"] == {}
    for name, out in reports["export"]["outputs"].items():
        checkpoint = reports["checkpoint"]["outputs"][name]["equivariance_rmse"]
        assert out["equivariance_rmse"] == pytest.approx(checkpoint, rel=1e-3), name
    assert (folder / "train" / "model.ckpt").is_file()
    assert (folder / "audit-export" / "report.md").is_file()
