"""File references in the code and packaging point at files that exist in this repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = [
    "src",
    "plugins",
    "benchmarks",
    "tests",
    "examples",
    "docs",
    "README.md",
    "CHANGELOG.md",
    "pyproject.toml",
    "setup.py",
]
GENERATED = {"_build", "_generated", "auto_examples"}  # docs build output, not sources
SUFFIXES = {".py", ".toml", ".md", ".rst", ".txt", ".sh", ".pth", ".png", ".json", ".xyz"}
# a repository path: a top-level folder, then path characters, ending in a file suffix
REPO_PATH = re.compile(
    r"(?<![\w./-])((?:docs|examples|benchmarks|plugins|src|tests)/[\w./-]*\w\.\w+)"
)
# background files of the project's authors, not shipped: the product stands alone
OUTSIDE = re.compile(r"\b(?:science|design)\.md\b|\.\./shared\b|/work/")


def _scanned_files():
    """The scanned text files, this one (whose examples are made up) left out."""
    this = Path(__file__).resolve()
    for name in SCANNED:
        path = ROOT / name
        files = [path] if path.is_file() else sorted(path.rglob("*"))
        for file in files:
            if GENERATED & set(file.relative_to(ROOT).parts):
                continue
            if file.suffix in {".py", ".toml", ".sh", ".txt", ".md", ".cfg"} and file != this:
                yield file


def _references(text):
    for match in REPO_PATH.finditer(text):
        ref = match.group(1).rstrip(".")
        if Path(ref).suffix in SUFFIXES and "_build/" not in ref:
            yield text.count("\n", 0, match.start()) + 1, ref


def test_the_pattern_finds_repository_paths():
    text = "see docs/install.md and ``docs/jets.md``, (src/equiscope/cli.py), DIR/report.md"
    assert [ref for _, ref in _references(text)] == [
        "docs/install.md",
        "docs/jets.md",
        "src/equiscope/cli.py",
    ]
    assert OUTSIDE.search("(science.md section 6)")
    assert not OUTSIDE.search("from ase.md.verlet import VelocityVerlet; report.md")


def test_referenced_files_exist():
    missing = []
    for file in _scanned_files():
        for line, ref in _references(file.read_text(encoding="utf-8")):
            if not (ROOT / ref).exists():
                missing.append(f"{file.relative_to(ROOT)}:{line}: {ref}")
    assert missing == []


def test_no_pointers_outside_the_repository():
    found = [
        f"{file.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}: {match.group()}"
        for file in _scanned_files()
        for text in [file.read_text(encoding="utf-8")]
        for match in OUTSIDE.finditer(text)
    ]
    assert found == []
