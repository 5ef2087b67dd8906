"""examples/06_jet_tagging.py runs end to end on tiny files and writes its table."""

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[3] / "examples" / "06_jet_tagging.py"


def test_tagging_example_on_tiny_files(tmp_path, jet_files):
    top, qcd = jet_files
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            "--top",
            str(top),
            "--qcd",
            str(qcd),
            "--n",
            "20",
            "--epochs",
            "1",
            "--max-constituents",
            "8",
            "--width",
            "8",
            "--depth",
            "1",
            "--audit-jets",
            "2",
            "--audit-groups",
            "so2-axis,boost-beam",
            "--models",
            "transformer,invariant",
            "--no-progress",
            "-o",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": ""},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "comparison.json").read_text())
    assert list(rows) == [
        "unconstrained",
        "unconstrained + average head (C8 about jet axis)",
        "unconstrained + canonical jet frame",
        "exactly invariant",
    ]
    assert rows["exactly invariant"]["invariance"]["so3"] < 1e-6
    assert rows["unconstrained + canonical jet frame"]["invariance"]["so2-beam"] < 1e-6
    assert "| unconstrained |" in (tmp_path / "comparison.md").read_text()
    assert (tmp_path / "jets_tagging.png").is_file()
    assert (tmp_path / "audit" / "report.json").is_file()
