"""Sphinx configuration for the ctexplore documentation site.

Build (from the repository root, no network, no notebook execution)::

    python -m sphinx -W -b html docs docs/_build/html

Why this stack: Sphinx + autodoc + numpydoc because every docstring is numpydoc
(the same format numpy, scipy and pydicom document with); myst-nb because it renders
the committed, already executed tutorials with their outputs (``nb_execution_mode =
"off"``) and lets the prose pages be Markdown; pydata-sphinx-theme because it is the
theme of the scientific-Python sites our users already read.

The API pages and the tutorial copies are generated at build time (``_generate``) from
``ctexplore.__all__`` and ``notebooks/*.ipynb``, so a public name or a tutorial added
later gets its page without editing the docs.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS))

from _generate import write_api_pages, write_tutorial_pages  # noqa: E402

import ctexplore  # noqa: E402

project = "ctexplore"
author = "ctexplore contributors"
copyright = "ctexplore contributors, MIT licence"
release = ctexplore.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_nb",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "images/README*", "**.ipynb_checkpoints"]
root_doc = "index"

# The tutorials are committed executed; the site shows those outputs as they are.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_typehints = "none"  # numpydoc's Parameters section already gives the types
autodoc_member_order = "bysource"
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

intersphinx_mapping = {}  # no network at build time

html_theme = "pydata_sphinx_theme"
html_title = f"ctexplore {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []
# the reader comparison is one wide table: no navigation column beside it
html_sidebars = {"comparison": []}

# Tutorial outputs contain widget state and matplotlib figures; nothing to warn about.
suppress_warnings = ["mystnb.unknown_mime_type"]

write_api_pages(DOCS / "api")
write_tutorial_pages(ROOT / "notebooks", DOCS / "tutorials")
