"""pytest plugin: run only the tests that a baseline commit also has, for a same-work ``make test`` comparison.

When two commits' suites differ in size, a ratio of their ``make test`` times mixes the speed of the first contact and
of the tests with the work of the tests one side added. With this plugin the current side runs only the tests whose
file and function name exist at the baseline (every parametrization of them; the rest are deselected), in a fresh
clone of the current commit (benchmarks/RESULTS.md section 7)::

    git clone -q REPO /tmp/head && cd /tmp/head
    PYTHONPATH=REPO/benchmarks PYTEST_ADDOPTS="-p same_tests" ORCHLIB_SAME_TESTS_AS=597b4cd make test

The baseline commit must be in the clone's history (``git show BASELINE:tests/...`` is read).
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest


def baseline_tests(commit: str, root: str) -> set[str]:
    """``file::function`` of every ``def test_...`` at module level in ``tests/*.py`` at ``commit``."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout

    names = set()
    for path in git("ls-tree", "--name-only", commit, "tests/").split():
        if path.endswith(".py"):
            source = git("show", f"{commit}:{path}")
            names.update(f"{path.split('/')[-1]}::{m}" for m in re.findall(r"^def (test_\w+)", source, re.M))
    return names


@pytest.hookimpl(tryfirst=True)  # before the project's conftest orders what is left
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    commit = os.environ.get("ORCHLIB_SAME_TESTS_AS")
    if not commit:
        raise pytest.UsageError("same_tests: set ORCHLIB_SAME_TESTS_AS to the baseline commit")
    known = baseline_tests(commit, str(config.rootpath))
    keep, drop = [], []
    for item in items:
        name = getattr(item, "originalname", None) or item.name.split("[")[0]
        (keep if f"{item.path.name}::{name}" in known else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
