"""The core is a library on its own: it imports no plugin, and plugins reach it only
through entry points (no import circle between packages)."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ("equiscope_atoms", "equiscope_ase", "equiscope_jets", "equiscope_metatrain")

# a meta-path finder refusing the plugin packages: as if they were not installed
BLOCK = """
import sys
before = set(sys.modules)  # (site's .pth hooks may have run already)
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {plugins!r}:
            raise ImportError(f"blocked plugin {{name}}")
sys.meta_path.insert(0, Block())
"""


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_core_source_imports_no_plugin():
    offenders = []
    for path in sorted((ROOT / "src" / "equiscope").rglob("*.py")):
        for name in _imported_modules(path):
            if name.split(".")[0] in PLUGINS:
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_core_runs_without_the_plugins():
    """``equiscope --help`` and ``equiscope grid`` work with every plugin unimportable,
    and an audit then says that no adapter reads the model, in one line."""
    script = (
        BLOCK.format(plugins=PLUGINS)
        + f"""
import equiscope, equiscope.audit, equiscope.cli
from equiscope.cli import main
try:
    main(["--help"])
except SystemExit as exit:
    assert exit.code == 0, exit.code
assert main(["grid", "octahedral"]) == 0
assert main(["audit", "model.pt", "data.xyz", "-o", "out"]) == 2
loaded = set(sys.modules) - before
print("plugins loaded:", sorted(m for m in loaded if m.split(".")[0] in {PLUGINS!r}))
"""
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "plugins loaded: []" in done.stdout
    assert "COMMAND" in done.stdout  # the help was printed
    errors = [line for line in done.stderr.splitlines() if "equiscope audit: error" in line]
    assert len(errors) == 1 and "does not exist" in errors[0]


def test_plugins_register_through_entry_points():
    from equiscope.audit import adapter_plugins

    names = [plugin.name for plugin in adapter_plugins()]
    assert names[:2] == ["jets", "metatomic"]  # taggers are recognised before other files


def test_no_import_circle_between_packages():
    """Plugins may use the core and each other, but never in a circle (the jet
    adapter, for one, imports nothing of the atomistic one)."""
    packages = ("equiscope", *PLUGINS)
    graph = {name: set() for name in packages}
    roots = {"equiscope": ROOT / "src" / "equiscope"}
    roots |= {name: ROOT / "plugins" / name for name in PLUGINS}
    for name, folder in roots.items():
        for path in folder.rglob("*.py"):
            for module in _imported_modules(path):
                top = module.split(".")[0]
                if top in graph and top != name:
                    graph[name].add(top)
    assert "equiscope_atoms" not in graph["equiscope_jets"]

    def reaches(start, goal, seen=()):
        return any(
            n == goal or (n not in seen and reaches(n, goal, (*seen, n))) for n in graph[start]
        )

    circles = [name for name in packages if reaches(name, name)]
    assert circles == [], graph
