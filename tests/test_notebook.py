"""notebooks/quickstart.ipynb: executed from a clean kernel, and its committed outputs checked.

The committed notebook keeps its outputs (the pictures show on the repository page); regenerate
them with `bash scripts/run_notebook.sh`. The execution test runs a temporary in-memory copy, so
the committed file is never rewritten by the tests.
"""

import base64
import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "quickstart.ipynb"
CELL_TIMEOUT_S = 300  # per cell; the whole notebook takes about a minute on 2 cores
MIN_IMAGES = 3
# The XLA:CPU flags of the test suite (tests/conftest.py via avips_jax, scripts/test.sh).
XLA_CPU_FLAGS = (
    "--xla_cpu_multi_thread_eigen=false",
    "--xla_cpu_enable_concurrency_optimized_scheduler=false",
)
# Prepended to the temporary copy only: fails unless the kernel received the flags before the
# notebook's first cell imports anything.
_CHECK_ENV_CELL = f"""\
import os
_flags = os.environ.get("XLA_FLAGS", "")
_missing = [f for f in {XLA_CPU_FLAGS!r} if f not in _flags]
assert not _missing, f"kernel started without XLA flags {{_missing}} (XLA_FLAGS={{_flags!r}})"
"""


def _read() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


def _code_cells(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _png_outputs(nb: nbformat.NotebookNode) -> list[bytes]:
    return [
        base64.b64decode(out["data"]["image/png"])
        for cell in _code_cells(nb)
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    ]


def _kernel_env() -> dict[str, str]:
    """This process's environment with the suite's XLA flags (the kernel inherits it)."""
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    missing = [f for f in XLA_CPU_FLAGS if f.split("=")[0] not in flags]
    env["XLA_FLAGS"] = " ".join([flags, *missing]).strip()
    env.setdefault("MPLBACKEND", "Agg")
    return env


def test_committed_notebook_is_valid_and_executed_in_order():
    nb = _read()
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    cells = _code_cells(nb)
    assert cells, "the notebook has no code cells"
    counts = [c.execution_count for c in cells]
    # 1..N: every code cell ran, top to bottom, in one fresh kernel (a cell added or re-run
    # afterwards breaks the sequence): re-run `bash scripts/run_notebook.sh`.
    assert counts == list(range(1, len(cells) + 1)), f"execution counts {counts}"
    errors = [o for c in cells for o in c.outputs if o.output_type == "error"]
    assert not errors, f"committed outputs hold errors: {[e.ename for e in errors]}"


def test_committed_notebook_has_pictures():
    pngs = _png_outputs(_read())
    assert len(pngs) >= MIN_IMAGES, f"{len(pngs)} PNG outputs, expected >= {MIN_IMAGES}"
    for png in pngs:
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_first_code_cell_holds_the_repository_url():
    first = _code_cells(_read())[0].source
    assert first.count("https://github.com/") == 1, "one REPO_URL constant in the first cell"
    assert "REPO_URL = " in first and "pip" in first and "git" in first


@pytest.mark.slow  # ~90 s; scripts/run_notebook.sh executes it whenever outputs change
def test_notebook_executes_from_a_clean_kernel():
    nb = _read()
    for cell in _code_cells(nb):  # start from a copy without outputs
        cell.outputs, cell.execution_count = [], None
    nb.cells.insert(0, nbformat.v4.new_code_cell(_CHECK_ENV_CELL))
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        record_timing=False,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # the kernel's cwd
    )
    client.execute(env=_kernel_env())  # raises CellExecutionError on the first failing cell
    counts = [c.execution_count for c in _code_cells(nb)]
    assert counts == list(range(1, len(counts) + 1))
    assert len(_png_outputs(nb)) >= MIN_IMAGES
