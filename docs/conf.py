"""Sphinx configuration of the textenv docs: ``sphinx-build -W --keep-going -n docs docs/_build/html``.

Pages are MyST Markdown (readable on GitHub too); the API reference is autodoc on the Google-style
docstrings (napoleon), whose Sphinx roles (:class:`~textenv.TextGenEnv`, :func:`...`) Sphinx resolves
natively; ``-n`` (nitpicky) with ``-W`` turns a reference that does not resolve into a failed build.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's packages, as the tests import them
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

from api_pages import third_party_targets  # noqa: E402

project = "textenv"
author = "textenv contributors"
copyright = "textenv contributors"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
    "api_pages",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]
root_doc = "index"

# --- MyST: Markdown pages with $math$, ```{directive} fences and heading anchors -------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# --- autodoc + napoleon: the Google-style docstrings -------------------------------------------------
autodoc_default_options = {"show-inheritance": True}
autoclass_content = "both"  # the class docstring and __init__'s (some document Args there)
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
autosummary_generate = False  # the pages are written by api_pages
# napoleon's config and member filter, with its Google-style conversion run by api_pages (which reads
# attribute docstrings as plain docstrings), so napoleon's own conversion is off here.
napoleon_google_docstring = False
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = [("Assets", "params_style")]  # textenv.assets lists its names as fields
napoleon_attr_annotations = False  # string annotations (TYPE_CHECKING imports) do not resolve there

# --- strictness: a reference that does not resolve fails the build (with -n -W) --------------------
nitpicky = True
nitpick_ignore_regex = third_party_targets()

# --- HTML -------------------------------------------------------------------------------------------
html_theme = "furo"
html_title = "textenv"
html_static_path: list[str] = []
