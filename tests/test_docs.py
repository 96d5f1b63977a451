"""The documentation site builds with warnings as errors, and every internal link resolves.

Builds once per session into a temporary folder (never into docs/_build of the checkout).
"""

from __future__ import annotations

import json
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import ctexplore

pytest.importorskip("sphinx")
pytest.importorskip("myst_nb")
pytest.importorskip("numpydoc")
pytest.importorskip("pydata_sphinx_theme")

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.docs


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(attributes["id"])
        if tag == "a" and attributes.get("name"):
            self.ids.add(attributes["name"])
        for key in ("href", "src"):
            if attributes.get(key) and tag in ("a", "img", "link", "script"):
                self.hrefs.append(attributes[key])


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-q", "-j", "2", "-b", "html", "docs", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def test_internal_links_and_anchors_resolve(site):
    # _static holds the theme's Jinja templates, not pages of the site
    pages = {page: _parse(page) for page in site.rglob("*.html") if "_static" not in page.parts}
    broken = []
    for page, links in pages.items():
        for href in links.hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith(("mailto:", "data:", "javascript:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not target.exists():
                broken.append(f"{page.relative_to(site)}: {href} (no file)")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(site)}: {href} (no anchor)")
    assert not broken, "\n".join(broken[:50])


def test_every_public_name_has_a_page(site):
    missing = []
    for name in ctexplore.__all__:
        if name.startswith("__"):
            continue
        page = site / "api" / f"ctexplore.{name}.html"
        if not page.exists() or f'id="ctexplore.{name}"' not in page.read_text(encoding="utf-8"):
            missing.append(name)
    assert not missing


def test_every_tutorial_is_on_the_site_with_its_outputs(site):
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks
    index = (site / "tutorials" / "index.html").read_text(encoding="utf-8")
    for notebook in notebooks:
        assert f"{notebook.stem}.html" in index, notebook.name
        html = (site / "tutorials" / f"{notebook.stem}.html").read_text(encoding="utf-8")
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        outputs = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])]
        assert outputs, f"{notebook.name} is committed without outputs"
        assert html.count('class="cell_output') >= 1, f"{notebook.name}: no outputs rendered"
        texts = [
            "".join(o["text"]).strip().splitlines()[0]
            for o in outputs
            if o.get("output_type") == "stream" and "".join(o["text"]).strip()
        ]
        if texts:
            assert texts[0] in unescape(html), f"{notebook.name}: {texts[0]!r} not shown"


def test_landing_page_is_the_readme(site):
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "Why another DICOM loader" in index
    assert (site / "_images" / "slice_grid.png").exists()
