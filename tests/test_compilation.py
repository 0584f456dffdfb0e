"""Issue 22, first contact: the first compilation is announced, and one compilation serves every world."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from numba.core import event

from orchlib.envs.batch import BatchEnv
from orchlib.envs.orchestration import OrchestrationEnv
from orchlib.system import compilation
from orchlib.system.compilation import FIRST_COMPILE_NOTICE
from orchlib.system.scenario import ideal, paper, tiny
from orchlib.system.simulator import build_system, compile_engine


def _kernel(module: str):
    def add_one(x):
        return x + 1.0

    add_one.__module__ = module
    return numba.njit(cache=False)(add_one)


@pytest.fixture
def unannounced(monkeypatch: pytest.MonkeyPatch) -> None:
    """The listener registered, as if this process had not compiled any of orchlib's kernels yet."""
    compilation.announce_first_compilation()
    monkeypatch.setitem(compilation._state, "announced", False)


@pytest.mark.usefixtures("unannounced")
def test_the_first_compilation_of_an_orchlib_kernel_is_announced_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _kernel("orchlib.system.somewhere")(1.0)
    _kernel("orchlib.system.elsewhere")(1.0)
    assert capsys.readouterr().err.count(FIRST_COMPILE_NOTICE) == 1


@pytest.mark.usefixtures("unannounced")
def test_compiling_code_that_is_not_orchlibs_says_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    _kernel("my_own_package.kernels")(1.0)
    assert FIRST_COMPILE_NOTICE not in capsys.readouterr().err


class _Compiles(event.Listener):
    """Records the engine's kernels compiled while it is installed."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def on_start(self, ev: event.Event) -> None:
        func = ev.data["dispatcher"].py_func
        if func.__module__.startswith("orchlib.system"):
            self.names.append(func.__qualname__)

    def on_end(self, ev: event.Event) -> None:
        pass


@pytest.mark.parametrize("world", [paper, ideal, tiny], ids=["paper", "ideal", "tiny"])
def test_one_compilation_serves_every_world(world) -> None:
    """After ``compile_engine`` (one small grounded world), the env and the batched path on another world need
    no new compilation of the engine: the kernels take one set of argument types whatever the scenario."""
    compile_engine()
    compiles = _Compiles()
    with event.install_listener("numba:compile", compiles):
        env = OrchestrationEnv(world().replace(n_requests=60), oracle=True)
        _, info = env.reset(seed=1)
        for _ in range(50):
            _, _, _, _, info = env.step(int(np.flatnonzero(info["action_mask"])[-1]))
        sim = BatchEnv(build_system(world().replace(n_requests=60)), 3, rng=0)
        for _ in range(20):
            requests = sim.next_requests()
            sim.observe(requests)
            sim.evaluate(requests)
            sim.serve(requests, sim.best(requests)[0])
    assert compiles.names == []
