"""Shared fixtures: a toy data set written to a temporary folder, with round numbers for exact cases."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib
import pytest
from filelock import FileLock

from orchlib.system.scenario import AccuracyRequirement, Arrivals, LinkSpec, Scenario, TierSpec

# Library tests draw figures off-screen. Notebooks are executed in their own kernels, which do not inherit
# this (they must keep their figure outputs; see tests/test_notebooks.py).
matplotlib.use("Agg")
os.environ.setdefault("ORCHLIB_TESTING", "1")

ROOT = Path(__file__).resolve().parents[1]


#: the engine's compilation, in a process the controller starts while pytest-xdist starts the workers.
_COMPILING = pytest.StashKey[subprocess.Popen]()
_COMPILE = "from orchlib.system.simulator import compile_engine; compile_engine()"


def pytest_configure(config: pytest.Config) -> None:
    """One compilation of the engine for the whole run: compiled (or loaded from numba's cache) once before the
    first test, so that the workers load the kernels instead of each compiling them at the same time (on a fresh
    clone or after an edit of a kernel).

    Under pytest-xdist the controller compiles in a child process while the workers start and collect (about 8 s
    of imports here), and holds the first test back until it is done
    (:func:`pytest_xdist_node_collection_finished`); without xdist it compiles here."""
    if hasattr(config, "workerinput"):
        return
    if getattr(config.option, "numprocesses", None):
        config.stash[_COMPILING] = subprocess.Popen([sys.executable, "-c", _COMPILE], cwd=ROOT)
    else:
        from orchlib.system.simulator import compile_engine

        compile_engine()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: object, ids: object) -> None:
    """The controller, when a worker has collected: wait for the engine's compilation before tests are sent."""
    config = getattr(node, "config", None)
    process = config.stash.get(_COMPILING, None) if config is not None else None
    if process is not None and process.wait() != 0:
        raise pytest.UsageError(f"compiling the engine failed (exit code {process.returncode}; see above)")


#: test files whose tests run for tens of seconds each, in groups that each start one worker's share (one group
#: per worker, in turn): the notebooks reuse the runs of ``reproduce --quick``, so they follow it on its worker.
LONG_GROUPS = (
    ("test_reproduce_quick.py", "test_notebooks.py"),  # about 35 s, then 12 notebooks in about 90 s
    ("test_testbed.py", "test_benchmarks.py"),  # about 60 s, then about 30 s
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order the run so that every worker starts on long tests and ends on short ones.

    ``make test`` runs ``pytest -n 2 --dist worksteal``: worker k starts on the k-th contiguous share of this order
    (shares as equal as counts allow), and a worker that runs out takes unstarted tests from the end of another's
    share, never its last two. So each share begins with its group of long files (:data:`LONG_GROUPS`, given to
    the shares in turn) and is filled up with the other tests, those marked ``slow`` first; the run then ends on
    short tests that either worker can take, not on a long one while the other worker idles."""
    workers = max(1, int(getattr(config, "workerinput", {}).get("workercount", 1)))
    shares: list[list[pytest.Item]] = [[] for _ in range(workers)]
    for index, files in enumerate(LONG_GROUPS):
        shares[index % workers].extend(
            sorted(
                (item for item in items if item.path.name in files), key=lambda i: files.index(i.path.name)
            )
        )
    long_files = {name for files in LONG_GROUPS for name in files}
    rest = sorted(
        (item for item in items if item.path.name not in long_files),
        key=lambda item: 0 if item.get_closest_marker("slow") else 1,
    )
    left = len(items)
    for k, share in enumerate(shares):  # pytest-xdist's first split: what is left, shared by the workers left
        size = left // (workers - k)
        left -= size
        take = max(0, size - len(share)) if k < workers - 1 else len(rest)
        share.extend(rest[:take])
        del rest[:take]
    items[:] = [item for share in shares for item in share]


@pytest.fixture(scope="session")
def built_once(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Callable[[Path], None]], Path]:
    """``built_once(name, build)``: a folder that ``build(folder)`` fills once per test run, by whichever
    pytest-xdist worker asks first; the others wait for it and get the same folder (pytest-xdist's recipe for a
    fixture that must run once: a file lock in the run's shared temporary root). For the costly fixtures whose
    tests the workers share (``reproduce --quick``, the benchmarks in quick mode), which each worker given one of
    their tests would otherwise build again. A build that raises leaves nothing, and the next asker builds."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by every worker of this run

    def get(name: str, build: Callable[[Path], None]) -> Path:
        folder, built = root / name, root / name / ".built"
        with FileLock(str(root / f"{name}.lock")):
            if not built.exists():
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                build(folder)
                built.touch()
        return folder

    return get


@pytest.fixture(scope="session")
def reproduce_quick(built_once: Callable[[str, Callable[[Path], None]], Path]) -> Path:
    """One ``reproduce --quick`` for the test run, whichever workers ask for it (about 35 s): its results folder
    (summary, tables, figures and the cached runs, which the notebook tests reuse). Read-only."""
    from orchlib.study.reproduce import reproduce

    return built_once(
        "reproduce_quick",
        lambda out: reproduce(out, quick=True, n_jobs=1, progress=False, log=lambda message: None),
    )


TOY_VARIANTS = """# toy variants for exact tests
model,width_multiplier,resolution,quantized,million_macs,million_params,top1_pct,top5_pct,input_bytes,result_bytes
big,1.0,224,false,500,4,70.0,89.0,1000,100
small,0.25,128,true,20,0.5,50.0,70.0,500,100
"""


def _profile(name: str, big_ms: float, small_ms: float, spread: float = 0.0) -> str:
    return (
        f"# name: {name}\n# kind: toy\n"
        "model,median_ms,p10_ms,p90_ms,n_repeats\n"
        f"big,{big_ms},{big_ms * (1 - spread)},{big_ms * (1 + spread)},10\n"
        f"small,{small_ms},{small_ms * (1 - spread)},{small_ms * (1 + spread)},10\n"
    )


@pytest.fixture(scope="session")
def toy_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Variant table and three profiles: end 50/10 ms, edge 20/4 ms, cloud 2/1 ms (big/small). Read-only."""
    tmp_path = tmp_path_factory.mktemp("toy_data")
    files = {
        "variants": tmp_path / "variants.csv",
        "end": tmp_path / "end.csv",
        "edge": tmp_path / "edge.csv",
        "cloud": tmp_path / "cloud.csv",
    }
    files["variants"].write_text(TOY_VARIANTS)
    files["end"].write_text(_profile("toy_end", 50, 10))
    files["edge"].write_text(_profile("toy_edge", 20, 4))
    files["cloud"].write_text(_profile("toy_cloud", 2, 1))
    return files


@pytest.fixture(scope="session")
def toy_scenario(toy_files: dict[str, Path]) -> Scenario:
    """Access link 1 Mbit/s both ways, RTT 10 ms; WAN 8 Mbit/s both ways, RTT 20 ms; 1 edge worker, 2 cloud."""
    return Scenario(
        name="toy",
        n_users=2,
        end=TierSpec(str(toy_files["end"])),
        edge=TierSpec(str(toy_files["edge"]), n_workers=1),
        cloud=TierSpec(str(toy_files["cloud"]), n_workers=2),
        access=LinkSpec(uplink_mbps=1.0, downlink_mbps=1.0, rtt_ms=10.0),
        wan=LinkSpec(uplink_mbps=8.0, downlink_mbps=8.0, rtt_ms=20.0),
        arrivals=Arrivals("poisson", rate_per_s=5.0),
        accuracy=AccuracyRequirement(levels_pct=(0.0, 60.0), probabilities=(0.5, 0.5)),
        n_requests=200,
        variants=str(toy_files["variants"]),
        compute_jitter=False,
    )
