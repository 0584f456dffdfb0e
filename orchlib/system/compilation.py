"""The engine's first use on a machine: numba compiles its kernels for this CPU, once, and says so.

numba keeps compiled kernels in a cache keyed to the source files, the numba and Python versions and the CPU, so
the first use after an install, an upgrade or an edit of the engine compiles them (about 25 s of CPU; measured in
``benchmarks/bench_compile.py``) and every later process loads them (about a second). Here:

* :func:`announce_first_compilation`: a ``numba:compile`` listener (numba's event API; the event fires only when
  a kernel is compiled, never when it is loaded from the cache) that prints one line to standard error the
  first time a process compiles one of orchlib's kernels, saying what is compiling and roughly how long it
  takes, so the first minute is never a silent wait (scripts, ``reproduce``, notebooks and the env alike);
* :func:`orchlib.system.simulator.compile_engine` compiles (or loads) the engine's kernels up front, for a process
  that starts workers (``run_sweep``, the test suite's controller), so that they load one compilation instead of
  each compiling it.
"""

from __future__ import annotations

import sys
import threading

from numba.core import event

#: what the line says about the time: the first env's compilation took about 25 s of CPU on the developers' 2-core
#: machines (about 290 s before issue 22), every entry point's (``compile_engine``) about the same; more wall time
#: while other work runs (``benchmarks/bench_vs_baseline.py``, section 7; ``bench_compile.py``, section 11).
FIRST_COMPILE_NOTICE = (
    "orchlib: compiling the simulation engine's kernels for this CPU with numba (first use after an install, "
    "upgrade or edit; about 25 s on an idle 2-core machine, longer while other work runs; then cached)"
)

_lock = threading.Lock()
_state = {"registered": False, "announced": False}


class _FirstCompile(event.Listener):
    """Prints :data:`FIRST_COMPILE_NOTICE` when the process first compiles a kernel of orchlib's."""

    def on_start(self, ev: event.Event) -> None:
        dispatcher = ev.data.get("dispatcher") if isinstance(ev.data, dict) else None
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
        if not module.startswith("orchlib."):
            return
        with _lock:
            if _state["announced"]:
                return
            _state["announced"] = True
        print(FIRST_COMPILE_NOTICE, file=sys.stderr, flush=True)

    def on_end(self, ev: event.Event) -> None:
        pass


def announce_first_compilation() -> None:
    """Register the listener (once per process; the engine's module does it when imported)."""
    with _lock:
        if _state["registered"]:
            return
        _state["registered"] = True
    event.register("numba:compile", _FirstCompile())
