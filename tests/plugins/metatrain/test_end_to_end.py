"""Plain ``mtt`` on ``experimental.equiscope``: train (with the symmetry monitor),
restart, export, eval; the export runs in metatomic-ase and in ``equiscope audit``."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import yaml
from metatomic_ase import MetatomicCalculator

from equiscope.cli import main as equiscope
from equiscope_atoms.demo import generate_copper

EXAMPLE = Path(__file__).parents[3] / "examples" / "metatrain" / "options.yaml"
# training, restart, export and eval with plain mtt: minutes on two cores
pytestmark = pytest.mark.slow


def mtt(folder, *args):
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "metatrain", *map(str, args)],
        cwd=folder,
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mtt")
    generate_copper(folder / "copper.xyz", 10, seed=1)
    options = yaml.safe_load(EXAMPLE.read_text())  # the shipped options, made small
    options["architecture"]["model"]["base"]["model"].update(d_pet=8, d_node=8, d_head=8)
    options["architecture"]["training"].update(num_epochs=2, batch_size=4)
    options["architecture"]["training"]["monitor"].update(interval=1, structures=1)
    options["architecture"]["training"]["equivariance_finetuning"] = {"epochs": 1}
    (folder / "options.yaml").write_text(yaml.safe_dump(options))
    output = mtt(folder, "train", "options.yaml", "-o", "model.pt")
    return folder, output


def test_training_logs_and_writes_the_symmetry_monitor(trained):
    folder, _ = trained
    run = max((folder / "outputs").glob("*/*"))
    log = (run / "train.log").read_text()
    lines = [line for line in log.splitlines() if "symmetry (epoch" in line]
    assert len(lines) == 6  # outputs and layers: epochs 0, 1 and after fine-tuning (2)
    assert "non_conservative_forces" in lines[0] and "gnn_layers.1_edge" in lines[1]
    assert "equivariance fine-tuning epoch 1/1: mean A^2" in log
    with open(run / "symmetry_monitor.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    assert float(rows[-1]["A:non_conservative_forces"]) > 0  # PET is not equivariant
    assert (run / "symmetry_monitor.png").stat().st_size > 5_000


def test_restart_export_eval_and_the_exported_model_in_ase_and_audit(trained, tmp_path):
    folder, _ = trained
    options = yaml.safe_load((folder / "options.yaml").read_text())
    options["architecture"]["training"]["num_epochs"] = 3
    (folder / "restart.yaml").write_text(yaml.safe_dump(options))
    mtt(folder, "train", "restart.yaml", "--restart", "model.ckpt", "-o", "restarted.pt")
    mtt(folder, "export", "model.ckpt", "-o", "exported.pt")
    (folder / "eval.yaml").write_text(
        yaml.safe_dump({"systems": {"read_from": "copper.xyz", "length_unit": "angstrom"}})
    )
    printed = mtt(folder, "eval", "exported.pt", "eval.yaml", "-o", "predictions.mts")
    assert "Evaluation time" in printed

    atoms = ase.io.read(folder / "copper.xyz", 0)
    atoms.calc = MetatomicCalculator(str(folder / "exported.pt"))
    assert np.isfinite(atoms.get_forces()).all()

    report = tmp_path / "audit"
    model, data = folder / "exported.pt", folder / "copper.xyz"
    options = ["--grid", "octahedral", "--structures", "1", "--outputs", "energy"]
    code = equiscope(["audit", str(model), str(data), "-o", str(report), *options])
    assert code == 0
    audited = json.loads((report / "report.json").read_text())
    assert audited["outputs"]["energy"]["equivariance_rmse"] > 0
