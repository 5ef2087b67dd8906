"""The ASE-calculator path never imports metatensor or metatomic, so it works in any
import order (torch_geometric patches ``torch.index_select``, after which
metatensor-operations fails to script its functions)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys
{first}
import equiscope
import equiscope_ase.audit
from ase.build import bulk
from ase.calculators.emt import EMT
from equiscope_ase.audit import CalculatorAdapter, samples_from

adapter = CalculatorAdapter(EMT())
sample = samples_from([bulk("Cu", cubic=True)])[0]
result = adapter.evaluate(sample, equiscope.grid("octahedral", inversion=True),
                          outputs=adapter.outputs([sample], None))
assert set(result.responses) == {{"energy", "forces", "stress"}}
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("metatensor", "metatomic",
                "metatensor_torch", "metatomic_torch", "metatensor_operations"))
assert not loaded, loaded
print("ok")
"""


def run_fresh(first: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), str(ROOT / "plugins"), env.get("PYTHONPATH", "")]
    )
    return subprocess.run(
        [sys.executable, "-c", CHECK.format(first=first)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_the_ase_path_imports_no_metatensor():
    done = run_fresh()
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_the_ase_path_works_after_torch_geometric():
    # not pytest.importorskip: importing torch_geometric here would patch
    # torch.index_select in this process and break metatensor for later tests
    if importlib.util.find_spec("torch_geometric") is None:
        pytest.skip("torch_geometric is not installed")
    done = run_fresh("import torch_geometric")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


CLI = """
import sys
{first}
from equiscope.cli import main
code = main(["audit", "factories:emt", "{data}", "-o", "{out}", "--grid", "octahedral",
             "--convergence-structures", "0"])
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("metatensor", "metatomic"))
print("exit", code, "loaded", loaded)
"""

FACTORIES = "from ase.calculators.emt import EMT\n\n\ndef emt():\n    return EMT()\n"


@pytest.mark.parametrize("first", ["", "import torch_geometric"])
def test_the_cli_audits_a_calculator_without_metatensor(tmp_path, first):
    """``equiscope audit MODULE:FACTORY`` loads every plugin's entry point, none of
    which may import metatensor: plugins import it only when they run."""
    if first and importlib.util.find_spec("torch_geometric") is None:
        pytest.skip("torch_geometric is not installed")
    import ase.build
    import ase.io

    (tmp_path / "factories.py").write_text(FACTORIES)
    ase.io.write(tmp_path / "cu.xyz", ase.build.bulk("Cu", cubic=True))
    script = CLI.format(first=first, data=tmp_path / "cu.xyz", out=tmp_path / "out")
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exit 0 loaded []" in done.stdout
    assert (tmp_path / "out" / "report.json").is_file()


def test_the_metatomic_path_names_the_import_trap_in_one_line():
    if importlib.util.find_spec("torch_geometric") is None:
        pytest.skip("torch_geometric is not installed")
    script = "import torch_geometric\nfrom equiscope_atoms import audit\n"
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        timeout=300,
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: metatensor cannot load after torch_geometric"), last
    assert "before torch_geometric" in last
