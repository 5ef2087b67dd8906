import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "examples"


def test_grids_and_spectra_example(tmp_path):
    figure = tmp_path / "figure.png"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "01_grids_and_spectra.py"), str(figure)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "icosahedral       60  [1, 2, 3, 4, 5, 7, 8, 9, 11]" in result.stdout
    assert "xyz  {'3,1': 0.009524}" in result.stdout
    assert figure.stat().st_size > 10_000


def test_md_example_runs_on_a_given_model(tmp_path):
    from _models import PairPotential, export

    model = export(PairPotential(), tmp_path / "lj.pt")
    figure = tmp_path / "md.png"
    result = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "02_md_with_heads.py"),
            "--model",
            str(model),
            "--steps",
            "3",
            "--output",
            str(figure),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    for head in ("raw", "random frame", "octahedral average", "icosahedral average"):
        assert head in result.stdout
    assert figure.stat().st_size > 10_000
