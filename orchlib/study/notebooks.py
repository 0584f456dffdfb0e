"""Run the project's notebooks headless (tests, ``orchlib reproduce``) and check how they are committed."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import nbformat

# nbformat and nbclient are imported where a notebook is read or run, not here: every notebook imports this module
# (for `is_quick` and `results_dir`), and nbformat's schema validation costs about a second to import.

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
#: environment variable the notebooks read to run at a tiny size (set by the tests).
QUICK_ENV = "ORCHLIB_QUICK"


#: environment variable naming the results folder whose cached runs notebooks reuse (set by ``reproduce``).
RESULTS_ENV = "ORCHLIB_RESULTS"


def results_dir() -> Path:
    """Where notebooks cache and read runs: ``$ORCHLIB_RESULTS``, else ``results/`` (``results/quick/`` in quick mode)."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV])
    root = NOTEBOOK_DIR.parent / "results"
    return root / "quick" if is_quick() else root


def is_quick() -> bool:
    """True when notebooks and ``reproduce`` should run at their tiny size (``ORCHLIB_QUICK=1``)."""
    return os.environ.get(QUICK_ENV, "0") == "1"


def notebook_paths(folder: Path = NOTEBOOK_DIR) -> list[Path]:
    """The project's notebooks in name order (checkpoints excluded)."""
    return sorted(p for p in folder.glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def execute_notebook(
    path: Path,
    out_path: Path | None = None,
    quick: bool = True,
    timeout_s: int = 120,
    results: Path | None = None,
) -> nbformat.NotebookNode:
    """Execute a notebook in a fresh kernel (its folder as working directory) and return it with outputs.

    Args:
        path: the notebook.
        out_path: where to write the executed copy (atomically); None: do not write.
        quick: run at the tiny size (sets ``ORCHLIB_QUICK=1`` for the kernel).
        timeout_s: per-cell timeout.
        results: results folder whose cached runs the notebook reuses (sets ``ORCHLIB_RESULTS`` for the
            kernel); None: leave the environment as it is.

    Raises:
        nbclient.exceptions.CellExecutionError: a cell raised; the message shows the cell and the error.
    """
    import nbformat
    from nbclient import NotebookClient
    from traitlets.config import Config

    nb = nbformat.read(path, as_version=4)
    settings = {QUICK_ENV: "1" if quick else "0"}
    if results is not None:
        settings[RESULTS_ENV] = str(Path(results).resolve())
    previous = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)  # the kernel inherits this process's environment
    try:
        # Local kernels talk over Unix sockets where there are any: over TCP every kernel prints a warning
        # that its traffic is unencrypted (true, and irrelevant on one machine), ten copies per reproduce.
        # The sockets live beside the connection file, in a folder removed afterwards.
        with tempfile.TemporaryDirectory(prefix="orchlib-kernel-") as runtime:
            kernel = {
                "transport": "ipc" if os.name == "posix" else "tcp",
                "connection_file": os.path.join(runtime, "kernel.json"),
            }
            client = NotebookClient(
                nb,
                config=Config(KernelManager=kernel),
                timeout=timeout_s,
                kernel_name="python3",
                resources={"metadata": {"path": str(path.parent)}},
            )
            client.execute()
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    if out_path is not None:
        from orchlib.study.runner import atomic_write

        out_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out_path, nbformat.writes(nb).encode("utf-8"))
    return nb


def count_images(nb: nbformat.NotebookNode) -> int:
    """Number of image outputs (PNG or SVG) in an executed notebook."""
    return sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if any(k in output.get("data", {}) for k in ("image/png", "image/svg+xml"))
    )


def commit_problems(path: Path) -> list[str]:
    """Why a notebook is not fit to commit: outputs, execution counts, or missing kernel metadata."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    problems = []
    kernelspec = nb.metadata.get("kernelspec", {})
    if kernelspec.get("name") != "python3":
        problems.append(
            f"{path.name}: kernelspec name must be 'python3' (JupyterLab would ask for a kernel), got {kernelspec!r}"
        )
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
            problems.append(
                f"{path.name}: cell {i} has outputs or an execution count; strip them (nbstripout)"
            )
    return problems
