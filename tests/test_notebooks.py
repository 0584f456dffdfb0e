"""Every notebook runs headless at its tiny size, shows its figures, and is committed without outputs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from orchlib.study.notebooks import commit_problems, count_images, execute_notebook, notebook_paths

NOTEBOOKS = notebook_paths()


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 10, [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path) -> None:
    assert commit_problems(path) == []


@pytest.fixture
def results(reproduce_quick: Path, tmp_path: Path) -> Path:
    """A results folder of the test's own holding what this run's ``reproduce --quick`` wrote (hard links: the
    runner replaces files by renaming, never writes into one): the notebook reuses its cached runs, as ``make
    notebooks`` reuses ``make reproduce``'s, and computes what it asks beyond them. Never the checkout's
    ``results/``, whose runs an earlier version of the code may have computed."""
    folder = tmp_path / "results"
    shutil.copytree(reproduce_quick, folder, copy_function=os.link)
    return folder


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_quick_and_shows_its_figures(path: Path, results: Path) -> None:
    # The per-cell timeout only stops a runaway cell; each notebook's quick-mode time is measured in
    # benchmarks/ (speed is never asserted in tests).
    nb = execute_notebook(path, quick=True, timeout_s=120, results=results)
    assert count_images(nb) >= 1, f"{path.name} executed but shows no figure"
