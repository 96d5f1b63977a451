"""Run every tutorial notebook headless on the sample study and leave rendered copies to read.

Writes the built-in sample study (``ctexplore.datasets.sample_study()``, cached), executes
each ``notebooks/NN_*.ipynb`` in a fresh ``python3`` kernel with ``notebooks/`` as working
directory, and writes the executed notebook and an HTML rendering of it into
``tutorials-output/`` (next to ``notebooks/``), plus ``index.html`` linking them. The
committed notebooks are never modified. Exits with status 1 if any notebook failed.

Usage::

    python notebooks/run_tutorials.py                 # all notebooks
    python notebooks/run_tutorials.py --only 03 04    # some of them
    python notebooks/run_tutorials.py --out /tmp/tut  # another output folder

Set ``CTEXPLORE_EXAMPLE`` to a DICOM folder or a fetcher key (``ge-hispeed-head``) to run them on real data
instead (``ctexplore.example_study``).
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent
REPO = NOTEBOOKS.parent
CELL_TIMEOUT_S = 120
# what the notebooks write beside themselves (07 copies the sample data set there)
WORK = NOTEBOOKS / "tutorial-work"


def find_notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered tutorial notebooks, in order; `only` keeps those whose number or name starts so.

    Examples
    --------
    >>> [p.name for p in find_notebooks(["01"])]
    ['01_dicom_file.ipynb']
    """
    found = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(p.name.startswith(prefix) for prefix in only)]
    return found


def notebook_goal(notebook: object) -> str:
    """The first sentence of the notebook's **Goal** paragraph (for the index page).

    Examples
    --------
    >>> import nbformat
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
    ...     "# 01 Title\\n\\n**Goal:** learn what a DICOM file holds. Then more.")])
    >>> notebook_goal(nb)
    'learn what a DICOM file holds.'
    """
    for cell in notebook.cells:  # type: ignore[attr-defined]
        if cell.cell_type != "markdown":
            continue
        for paragraph in cell.source.split("\n\n"):
            text = " ".join(paragraph.split())
            if text.startswith("**Goal"):
                text = text.split("**", 2)[-1].lstrip(":* ").strip()
                end = text.find(". ")
                return text if end < 0 else text[: end + 1]
    return ""


def run_notebook(path: Path, out: Path) -> tuple[bool, float, str]:
    """Execute one notebook into `out` (``.ipynb`` and ``.html``); return (ok, seconds, goal)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        extra_arguments=["--log-level=ERROR"],  # not the kernel's own start-up chatter
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    start = time.perf_counter()
    ok = True
    try:
        client.execute()
    except CellExecutionError as error:
        ok = False
        last_line = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()[-1]  # drop colour codes
        print(f"{path.name}: {last_line}", file=sys.stderr)
    except Exception as error:  # a dead kernel or a timeout: report it, render what ran
        ok = False
        print(f"{path.name}: {type(error).__name__}: {error}", file=sys.stderr)
    seconds = time.perf_counter() - start
    nbformat.write(notebook, out / path.name)
    body, _ = HTMLExporter().from_notebook_node(notebook)
    (out / path.with_suffix(".html").name).write_text(body, encoding="utf-8")
    return ok, seconds, notebook_goal(notebook)


def _study_label() -> str:
    from ctexplore.datasets import EXAMPLE_ENV

    return os.environ.get(EXAMPLE_ENV) or os.environ.get("CTEXPLORE_CQ500_STUDY") or "the built-in sample study"


def write_index(out: Path, rows: list[tuple[Path, bool, float, str]]) -> Path:
    """``index.html`` linking every rendered notebook with its goal and status."""
    items = "\n".join(
        f'<li><a href="{html.escape(p.with_suffix(".html").name)}">{html.escape(p.stem)}</a>'
        f" &mdash; {html.escape(goal)}"
        f" <small>({'ok' if ok else '<b>failed</b>'}, {seconds:.0f} s)</small></li>"
        for p, ok, seconds, goal in rows
    )
    page = (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>ctexplore tutorials</title>"
        "</head>\n<body><h1>ctexplore tutorials</h1>\n"
        f"<p>Executed on {html.escape(_study_label())}"
        f" at {time.strftime('%Y-%m-%d %H:%M')}.</p>\n<ol>\n{items}\n</ol>\n</body></html>\n"
    )
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def run_all(notebooks: list[Path], out: Path) -> list[tuple[Path, bool, float, str]]:
    """Run the notebooks; remove the temporary folders and the ``tutorial-work/`` they leave behind.

    The kernels inherit ``TMPDIR`` pointing at one scratch folder (their ``tempfile.mkdtemp()``
    calls land there), which is deleted afterwards, as is ``notebooks/tutorial-work/`` unless
    it was there before the run.
    """
    work_existed = WORK.exists()
    saved_tmpdir = os.environ.get("TMPDIR")
    rows = []
    with tempfile.TemporaryDirectory(prefix="ctexplore-tutorials-") as scratch:
        os.environ["TMPDIR"] = scratch
        tempfile.tempdir = None  # forget the cached default so that children and we agree
        try:
            for path in notebooks:
                ok, seconds, goal = run_notebook(path, out)
                rows.append((path, ok, seconds, goal))
                print(f"{path.stem:<24} {seconds:6.1f} s  {'ok' if ok else 'FAILED'}", flush=True)
        finally:
            if saved_tmpdir is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = saved_tmpdir
            tempfile.tempdir = None
    if not work_existed and WORK.exists():
        shutil.rmtree(WORK)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "tutorials-output",
        help="folder for executed notebooks and HTML (default: tutorials-output/)",
    )
    parser.add_argument(
        "--only", nargs="+", metavar="NN", help="run only notebooks whose name starts with these (e.g. 03 04)"
    )
    args = parser.parse_args(argv)

    notebooks = find_notebooks(args.only)
    if not notebooks:
        parser.error(f"no notebook in {NOTEBOOKS} matches {args.only}")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / ".gitignore").write_text("# written by notebooks/run_tutorials.py: nothing here is source\n*\n")
    # the kernel inherits this: figures render inline even where CI exports MPLBACKEND=Agg
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    from ctexplore import example_study

    print(f"study: {example_study()}")  # the sample is written once here, before the kernels start

    rows = run_all(notebooks, out)
    index = write_index(out, rows)
    failed = [p.name for p, ok, _, _ in rows if not ok]
    print(f"{len(rows) - len(failed)} of {len(rows)} notebooks ok; open {index}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
