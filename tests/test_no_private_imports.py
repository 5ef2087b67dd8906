"""equiscope uses other libraries through their public names only: no module of src/
or plugins/ imports a private module (``a._b``) or a private name (``from a import _b``)
of another package."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# (file, imported module) pairs that stay, with the reason: none
EXCEPTIONS: set[tuple[str, str]] = set()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import of another package's private module or name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [(node.module, [alias.name for alias in node.names])]
        else:
            continue
        for module, names in modules:
            if module.split(".")[0].startswith("equiscope"):
                continue
            if any(_private(part) for part in module.split(".")) or any(map(_private, names)):
                found.append((node.lineno, module))
    return found


def test_the_scan_finds_private_imports(tmp_path):
    source = tmp_path / "bad.py"
    source.write_text(
        "from __future__ import annotations\nimport os\nfrom equiscope._x import y\n"
        "from e3nn.o3._wigner import so3_generators\nimport torch._C\n"
        "from scipy.integrate import _quadrature\nfrom . import _local\n"
    )
    assert private_imports(source) == [
        (4, "e3nn.o3._wigner"),
        (5, "torch._C"),
        (6, "scipy.integrate"),
    ]


def test_no_private_imports_of_other_libraries():
    found = []
    for folder in ("src", "plugins"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for line, module in private_imports(path):
                if (relative, module) not in EXCEPTIONS:
                    found.append(f"{relative}:{line} imports {module}")
    assert found == []


def test_every_exception_is_still_needed():
    for relative, module in EXCEPTIONS:
        modules = [m for _, m in private_imports(ROOT / relative)]
        assert module in modules, f"{relative} no longer imports {module}: drop the exception"


def test_the_deprecated_quantity_table_matches_metatomic():
    """equiscope repeats metatomic's private table of deprecated output names (the
    aliases it adds to capabilities); the installed metatomic must agree with it."""
    from metatomic.torch import _quantities  # in a test only: checks the copy

    from equiscope_atoms.models import DEPRECATED_QUANTITIES, current_quantity_name

    assert _quantities.new_quantity_names() == DEPRECATED_QUANTITIES
    for name in ("non_conservative_forces", "features/x", "energy", "charges"):
        assert current_quantity_name(name) == _quantities.current_quantity_name(name)
