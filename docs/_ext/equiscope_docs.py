"""Pages generated at build time: the CLI reference, the ``experimental.equiscope``
hyperparameters and the list of raw measurement logs; and the arguments the gallery
passes to the examples it executes."""

from __future__ import annotations

import argparse
import ast
import os
import re
import tempfile
import textwrap
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
GENERATED = DOCS / "_generated"

# small settings for the examples the gallery executes (``filename_pattern`` in conf.py)
FIGURES = Path(tempfile.gettempdir()) / "equiscope-docs-gallery"
EXAMPLE_ARGUMENTS = {
    "01_grids_and_spectra.py": [str(FIGURES / "grids_and_spectra.png")],
    "05_jet_physics.py": ["--n", "200", "--output", str(FIGURES / "jets_mass.png")],
}


class ResetArgv:
    """``sys.argv[1:]`` of each executed example: small, fast settings."""

    def __repr__(self) -> str:
        return "ResetArgv"

    def __call__(self, gallery_conf: dict, script_vars: dict) -> list[str]:
        FIGURES.mkdir(parents=True, exist_ok=True)
        return list(EXAMPLE_ARGUMENTS.get(Path(script_vars["src_file"]).name, []))


reset_argv = ResetArgv()


def escape_bars(line: str) -> str:
    """Escape ``|`` (norms such as ``|b|^2`` in plain text) outside inline literals, so
    that reStructuredText does not read them as substitutions; table rows are kept."""
    if line.lstrip().startswith(("|", "+-", "+=")):
        return line
    parts = line.split("``")
    for index in range(0, len(parts), 2):  # even parts lie outside ``literals``
        parts[index] = re.sub(r"(?<!\\)\|", r"\\|", parts[index])
    return "``".join(parts)


def clean_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    """``autodoc-process-docstring``: plain-text norms, and a blank line after a field
    list that the docstring continues without one."""
    fields = False
    index = 0
    while index < len(lines):
        line = lines[index]
        lines[index] = escape_bars(line)
        stripped = line.strip()
        if stripped.startswith(":") and not line.startswith(" "):
            fields = True
        elif fields and stripped and not line.startswith(" "):
            lines.insert(index, "")
            index += 1
            fields = False
        elif not stripped:
            fields = False
        index += 1


def _write(path: Path, text: str) -> None:
    """Write only when the text changed, so that Sphinx does not rebuild the page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _heading(text: str, character: str) -> str:
    return f"{text}\n{character * len(text)}\n\n"


# --------------------------------------------------------------------------- CLI


def _subcommands(parser: argparse.ArgumentParser, prefix: str):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix} {name}", sub
                yield from _subcommands(sub, f"{prefix} {name}")


def cli_reference() -> str:
    """Every ``--help`` of the ``equiscope`` command, as reStructuredText."""
    from equiscope.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"
    try:
        parser = build_parser()
        sections = [("equiscope", parser), *_subcommands(parser, "equiscope")]
        text = _heading("Command-line reference", "=")
        text += (
            "Generated from the ``equiscope`` command's own argument parser when the "
            "documentation is built, so it matches the installed version. Every command "
            "exits with code 2 and one line naming the problem on bad input.\n\n"
        )
        for name, sub in sections:
            text += _heading(f"``{name}``", "-")
            text += ".. code-block:: text\n\n"
            text += textwrap.indent(sub.format_help().rstrip(), "    ") + "\n\n"
        return text
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


# --------------------------------------------------------------- hyperparameters


def _typed_dicts(path: Path) -> dict[str, tuple[str, list[tuple[str, str, str, str]]]]:
    """{class: (docstring, [(field, annotation, default, docstring)])} of a file."""
    source = path.read_text()
    tree = ast.parse(source)
    classes = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        doc = ast.get_docstring(node) or ""
        fields = []
        body = node.body
        for index, item in enumerate(body):
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            following = body[index + 1] if index + 1 < len(body) else None
            field_doc = ""
            if (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                field_doc = textwrap.dedent(following.value.value).strip()
                # the first line of a docstring carries no indentation of its own
                lines = following.value.value.strip().splitlines()
                if len(lines) > 1:
                    rest = textwrap.dedent("\n".join(lines[1:]))
                    field_doc = lines[0].strip() + "\n" + rest
            annotation = ast.get_source_segment(source, item.annotation) or ""
            default = "" if item.value is None else ast.get_source_segment(source, item.value)
            fields.append((item.target.id, annotation, default or "", field_doc.strip()))
        classes[node.name] = (doc, fields)
    return classes


YAML = {"True": "true", "False": "false", "None": "null"}


def _annotation(annotation: str) -> str:
    """``Annotated[int, Field(ge=1)]`` -> ``int, >= 1``."""
    node = ast.parse(annotation, mode="eval").body
    if isinstance(node, ast.Subscript) and getattr(node.value, "id", "") == "Annotated":
        kind, *extras = node.slice.elts
        text = ast.unparse(kind)
        symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
        for extra in extras:
            if isinstance(extra, ast.Call):
                for keyword in extra.keywords:
                    if keyword.arg in symbols:
                        text += f", {symbols[keyword.arg]} {ast.unparse(keyword.value)}"
        return text
    return annotation


def hyperparameters() -> str:
    """The ``experimental.equiscope`` hypers from ``documentation.py``, as RST."""
    path = ROOT / "plugins" / "equiscope_metatrain" / "architecture" / "documentation.py"
    classes = _typed_dicts(path)
    text = _heading("metatrain hyperparameters", "=")
    text += (
        "Options of the metatrain architecture ``experimental.equiscope``, generated when "
        "the documentation is built from the typed dictionaries in "
        "``plugins/equiscope_metatrain/architecture/documentation.py`` (field docstrings "
        "and defaults), the same source metatrain validates the options file against. "
        "Keys left out take the default shown. An options file that sets a key to a "
        "value outside its range or to an unknown name stops ``mtt train`` with "
        "metatrain's validation error naming the key.\n\n"
    )
    module_doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    # the module docstring starts with its own title ("equiscope" underlined)
    body = module_doc.split("\n", 2)[2] if module_doc.count("\n") >= 2 else module_doc
    text += body.strip() + "\n\n"

    def section(title: str, name: str, inherited: str | None = None) -> str:
        doc, fields = classes[name]
        out = _heading(f"``{title}``", "-")
        out += doc.strip() + "\n\n"
        for field, annotation, default, field_doc in fields:
            out += f"``{field}``\n"
            kind = _annotation(annotation)
            nested = kind if kind in classes else None
            if nested:
                out += f"    *section* ``{title}.{field}``, see below.\n\n"
            else:
                shown = YAML.get(default, default) if default else "(required or none)"
                out += f"    *{kind}*, default ``{shown}``\n\n"
            if field_doc:
                field_doc = "\n".join(escape_bars(line) for line in field_doc.splitlines())
                out += textwrap.indent(field_doc, "    ") + "\n\n"
        if inherited:
            out += inherited
        return out

    def nested(title: str, name: str) -> list[tuple[str, str]]:
        found = []
        for field, annotation, _, _ in classes[name][1]:
            kind = _annotation(annotation)
            if kind in classes:
                found.append((f"{title}.{field}", kind))
                found.extend(nested(f"{title}.{field}", kind))
        return found

    text += section("architecture.model", "ModelHypers")
    for title, name in nested("architecture.model", "ModelHypers"):
        text += section(title, name)

    pet = _pet_trainer_fields()
    inherited = ""
    if pet:
        inherited = (
            "PET's trainer options, with PET's names and defaults (described in "
            "metatrain's documentation of the PET architecture):\n\n"
            ".. list-table::\n   :header-rows: 1\n\n   * - option\n     - default\n"
        )
        for field, default in pet:
            inherited += f"   * - ``{field}``\n     - ``{default}``\n"
        inherited += "\n"
    text += section("architecture.training", "TrainerHypers", inherited)
    for title, name in nested("architecture.training", "TrainerHypers"):
        text += section(title, name)
    return text


def _pet_trainer_fields() -> list[tuple[str, str]]:
    """(name, default) of metatrain PET's trainer hypers, read from its source."""
    try:
        import metatrain.pet.documentation as pet
    except ImportError:  # pragma: no cover - metatrain is a dependency
        return []
    classes = _typed_dicts(Path(pet.__file__))
    fields = []
    for field, _, default, _ in classes["TrainerHypers"][1]:
        shown = " ".join(default.split()) if default else "(not set)"
        shown = YAML.get(shown, shown)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        fields.append((field, shown))
    return fields


# ----------------------------------------------------------------- measurements


def measurement_logs() -> str:
    """One section per raw log in ``docs/measurements``."""
    text = _heading("Raw measurement logs", "=")
    text += (
        "The unedited output of the benchmarks and studies quoted in these pages. Most "
        "logs start with the command and the machine; for the others, the page that "
        "quotes the numbers names the script and the machine.\n\n"
    )
    for path in sorted((DOCS / "measurements").glob("*.txt")):
        text += _heading(path.name, "-")
        text += f".. literalinclude:: ../measurements/{path.name}\n   :language: text\n\n"
    return text


def setup(app) -> dict:
    """Sphinx extension: clean docstrings for autodoc."""
    app.connect("autodoc-process-docstring", clean_docstring)
    return {"parallel_read_safe": True}


def generate(app=None) -> None:
    """Write every generated page into ``docs/_generated``."""
    _write(GENERATED / "cli.rst", cli_reference())
    _write(GENERATED / "hyperparameters.rst", hyperparameters())
    _write(GENERATED / "logs.rst", measurement_logs())
