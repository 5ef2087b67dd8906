import re
import subprocess
import sys
from pathlib import Path

import pytest

from equiscope.cli import main

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exit_:
        assert exit_.code == 0
    out = capsys.readouterr().out
    assert "demo" in out and "grid" in out and "audit" in out


def test_grid_command_prints_computed_exactness(capsys):
    assert main(["grid", "icosahedral", "--inversion"]) == 0
    out = capsys.readouterr().out
    assert "120 elements" in out
    assert "[1, 2, 3, 4, 5, 7, 8, 9, 11]" in out


def test_bad_grid_is_exit_code_2_with_one_line():
    result = subprocess.run(
        [sys.executable, "-m", "equiscope.cli", "grid", "hexagonal"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unknown grid 'hexagonal'" in result.stderr


def test_demo_rejects_bad_options(tmp_path, capsys):
    assert main(["demo", "--epochs", "0", "-o", str(tmp_path / "out")]) == 2
    assert "--epochs must be at least 1" in capsys.readouterr().err
    assert main(["demo", "--train", "3", "-o", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["demo", "-o", str(blocker)]) == 2


def test_no_command_is_bad_input(capsys):
    assert main([]) == 2


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (
            ["audit"],
            ["report folder (default: equiscope-audit)", "(default: auto)", "(default: 1)"],
        ),
        (["demo"], ["output folder (default: equiscope-demo)", "(default: 48)"]),
        (["grid"], ["seed for random grids (default: 0)"]),
        (["jets", "audit"], ["audit the first N jets (default: 64)", "(default: 512)"]),
        (["jets", "train"], ["epochs (default: 20)", "(default: 128)"]),
        (["jets", "generate"], ["(default: 1)"]),
    ],
)
def test_help_shows_defaults(command, shown, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # (help text wraps)
    for item in shown:
        assert item in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_version_prints_the_package_version():
    import equiscope

    result = subprocess.run(
        [sys.executable, "-m", "equiscope.cli", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout == f"equiscope {equiscope.__version__}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+", equiscope.__version__)


def test_version_has_one_source():
    """pyproject.toml reads the distribution's version from ``equiscope.__version__``
    instead of repeating it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "equiscope.__version__"}
