"""Sphinx configuration of the equiscope documentation."""

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# document this checkout, not whatever equiscope is installed
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "plugins"), str(DOCS / "_ext")]

import equiscope_docs  # noqa: E402

equiscope_docs.generate()

project = "equiscope"
author = "the equiscope developers"
copyright = "2026, the equiscope developers"
try:
    from importlib.metadata import version as _version

    release = _version("equiscope")
except Exception:
    release = ""

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "equiscope_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "measurements", "figures", "Thumbs.db", ".DS_Store"]

html_theme = "furo"
html_title = "equiscope"
html_static_path = []

# Markdown pages: $...$ maths, definition lists, anchors for "#section" links
myst_enable_extensions = ["dollarmath", "deflist", "colon_fence"]
myst_heading_anchors = 3

autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = True

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # executed with small settings (equiscope_docs.EXAMPLE_ARGUMENTS); the others are
    # shown as code only, because they train models (02-04, 06, 07) or generate
    # thousands of jets (06): 02 alone took 1-3.5 min on a shared 2-core machine
    "filename_pattern": r"/0[15]_",
    "ignore_pattern": r"__init__\.py|make_data\.py",
    "reset_argv": "equiscope_docs.reset_argv",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "abort_on_example_error": True,
    "write_computation_times": True,
}
