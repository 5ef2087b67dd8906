"""`equiscope audit` from the command line: reports, and one-line errors (exit 2)."""

import re
import subprocess
import sys

import ase
import ase.io
import numpy as np
import pytest

from _models import PairPotential, export, write_copper
from equiscope.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    model = export(PairPotential(), folder / "lj.pt")
    data = write_copper(folder / "cu.xyz", n=2, disorder=True)
    return folder, model, data


def test_audit_writes_the_report(files, tmp_path, capsys):
    _, model, data = files
    out = tmp_path / "report"
    code = main(
        [
            "audit",
            str(model),
            str(data),
            "-o",
            str(out),
            "--grid",
            "octahedral",
            "--structures",
            "1",
            "--outputs",
            "energy,forces",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| energy (eV/atom) |" in printed and "| forces (eV/Å) |" in printed
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.md", "errors.png"}


def run_cli(*args):
    result = subprocess.run(
        [sys.executable, "-m", "equiscope.cli", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    return result.returncode, result.stderr.strip()


def bad_data(folder, kind):
    path = folder / f"{kind}.xyz"
    if kind == "empty":
        path.write_text("")
    elif kind == "garbage":
        path.write_text("this is not\na structure file\n")
    elif kind == "types":
        ase.io.write(str(path), ase.Atoms("Fe2", positions=[[0, 0, 0], [2, 0, 0]]))
    elif kind == "nan":
        ase.io.write(str(path), ase.Atoms("Cu2", positions=[[0, 0, 0], [np.nan, 0, 0]]))
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-model", "does not exist"),
        ("dir-model", r"model .*folder is a directory; give the model file \(.pt or .ckpt\)"),
        ("dir-data", r"data .*folder is a directory; give a structure file"),
        ("garbage-model", "could not be loaded"),
        ("empty", "could not be read|holds no structures"),
        ("garbage", "could not be read"),
        ("types", r"atomic types Fe \(26\) that the model does not know \(it knows H \(1\), "),
        ("nan", "NaN"),
        ("unknown-output", r"unknown output\(s\) dipole"),
        ("unknown-grid", "unknown grid 'cubic'"),
        (
            "axial-grid",
            "--grid: unknown grid 'so2' for atomistic models; expected one of estimate, auto, "
            "lebedev, tetrahedral, octahedral, icosahedral, random$",
        ),
        ("bad-layer", r"unknown layer\(s\) gnn_layers.9_node"),
        ("bad-device", "device 'tpu9' cannot be used"),
        ("labels-format", "--labels: expected OUTPUT=KEY, got 'energy'"),
        ("label-missing", r"cu.xyz frame 0 has no label 'nope' \(for energy\)"),
        ("label-unaudited", "labels given for dipole, which the audit does not evaluate"),
        ("label-size", "label 'forces' of energy in structure 0 has 24 values; the model gives 1"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(files, tmp_path, case, message):
    folder, model, data = files
    out = tmp_path / "out"
    extra = []
    if case == "missing-model":
        model = folder / "nope.pt"
    elif case in ("dir-model", "dir-data"):
        (tmp_path / "folder").mkdir()
        model, data = (
            (tmp_path / "folder", data) if case == "dir-model" else (model, tmp_path / "folder")
        )
    elif case == "garbage-model":
        model = tmp_path / "garbage.pt"
        model.write_bytes(b"not a model at all")
    elif case in ("empty", "garbage", "types", "nan"):
        data = bad_data(tmp_path, case)
    elif case == "unknown-output":
        extra = ["--outputs", "energy,dipole"]
    elif case == "unknown-grid":
        extra = ["--grid", "cubic"]
    elif case == "axial-grid":
        extra = ["--grid", "so2"]
    elif case == "bad-layer":
        extra = ["--layers", "gnn_layers.9_node"]
    elif case == "bad-device":
        extra = ["--device", "tpu9"]
    elif case.startswith("label"):
        extra = {
            "labels-format": ["--labels", "energy"],
            "label-missing": ["--labels", "energy=nope"],
            "label-unaudited": ["--labels", "dipole=energy"],
            "label-size": ["--labels", "energy=forces"],  # 8 atoms x 3 for one energy
        }[case]
    grid = [] if case == "axial-grid" else ["--grid", "octahedral"]
    code, stderr = run_cli("audit", model, data, "-o", out, *grid, *extra)
    assert code == 2, stderr
    assert len(stderr.splitlines()) == 1, stderr
    assert re.search(message, stderr), stderr
    assert not out.exists()


def test_labels_option_takes_multi_block_output_names():
    from equiscope.cli import BadInput, parse_labels

    text = "mtt::efg[o3_lambda=2,o3_sigma=1]=efg_l2, mtt::dipole=xtb_dipole"
    assert parse_labels(text) == {
        "mtt::efg[o3_lambda=2,o3_sigma=1]": "efg_l2",
        "mtt::dipole": "xtb_dipole",
    }
    assert parse_labels(None) == {}
    for bad in ("energy", "=key", "energy="):
        with pytest.raises(BadInput, match="--labels: expected OUTPUT=KEY"):
            parse_labels(bad)


def test_torchrun_without_a_gpu_for_the_rank_is_one_line(files, tmp_path, capsys, monkeypatch):
    import torch

    _, model, data = files
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)  # what torchrun sets for the second process
    if torch.cuda.is_available():  # a machine with GPUs: ask for more than it has
        monkeypatch.setenv("LOCAL_RANK", str(torch.cuda.device_count()))
    out = tmp_path / "out"
    assert main(["audit", str(model), str(data), "-o", str(out), "--device", "cuda"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("equiscope audit: error: --device: device 'cuda' cannot be used: ")
    assert not out.exists() and not torch.distributed.is_initialized()
