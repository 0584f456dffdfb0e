"""orchlib: online orchestration of DNN inference in multi-user end-edge-cloud networks.

The package is grouped by layer; a module imports only from its own layer or the ones listed before it:

- :mod:`orchlib.system`: the modelled world (scenario, data loaders, latency formulas, the simulator).
- :mod:`orchlib.envs`: the Gymnasium view of the system (states, actions, rewards).
- :mod:`orchlib.agents`: the agent interface, one module per algorithm family, the catalogue, the oracle.
- :mod:`orchlib.profiling`: MobileNetV1 in torch and the profiler that measures it (beside the others).
- :mod:`orchlib.study`: sweeps, metrics, experiments, plots and ``reproduce``.
- :mod:`orchlib.ui`: the notebook widgets.

The names most code needs are re-exported here and imported on first use, so ``import orchlib`` stays cheap
(it does not import torch)::

    from orchlib import Scenario, make_agent, run_sweep, OrchestrationEnv

Gymnasium ids (one per scenario preset, e.g. ``orchlib/Orchestration-paper-v0``; see
:mod:`orchlib.envs.registration`) are registered as soon as both ``orchlib`` and ``gymnasium`` are imported,
in either order, so ``import orchlib; gymnasium.make("orchlib/Orchestration-tiny-v0")`` works with no other
call. ``import orchlib`` itself imports neither gymnasium nor torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

#: public name -> the module that defines it (imported lazily, PEP 562).
_EXPORTS: dict[str, str] = {
    "Scenario": "orchlib.system.scenario",
    "preset": "orchlib.system.scenario",
    "paper": "orchlib.system.scenario",
    "System": "orchlib.system.simulator",
    "Simulator": "orchlib.system.simulator",
    "build_system": "orchlib.system.simulator",
    "OrchestrationEnv": "orchlib.envs.orchestration",
    "OrchestrationParallelEnv": "orchlib.envs.parallel",
    "Agent": "orchlib.agents.base",
    "AGENT_NAMES": "orchlib.agents.catalogue",
    "make_agent": "orchlib.agents.catalogue",
    "run_sweep": "orchlib.study.runner",
    "grid": "orchlib.study.runner",
}

__all__ = [
    "AGENT_NAMES",
    "Agent",
    "OrchestrationEnv",
    "OrchestrationParallelEnv",
    "Scenario",
    "Simulator",
    "System",
    "build_system",
    "grid",
    "make_agent",
    "paper",
    "preset",
    "run_sweep",
]

if TYPE_CHECKING:
    from orchlib.agents.base import Agent
    from orchlib.agents.catalogue import AGENT_NAMES, make_agent
    from orchlib.envs.orchestration import OrchestrationEnv
    from orchlib.envs.parallel import OrchestrationParallelEnv
    from orchlib.study.runner import grid, run_sweep
    from orchlib.system.scenario import Scenario, paper, preset
    from orchlib.system.simulator import Simulator, System, build_system


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'orchlib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | {"__version__"})


def _version() -> str:
    """The installed distribution's version; for a checkout that was never installed, its pyproject's."""
    # importlib.metadata is imported here, on first use of __version__, to keep `import orchlib` cheap.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("orchlib")
    except PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        if pyproject.is_file():
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
            if project.get("name") == "orchlib" and "version" in project:
                return f"{project['version']}+checkout"
        return "0+unknown"


# --- Gymnasium registration --------------------------------------------------------------------------------
# Gymnasium 1.x has no plugin entry point: packages register their ids when imported. Importing gymnasium here
# would make `import orchlib` about 30 times slower (numpy and gymnasium for code that may never use them), so
# the ids are registered the moment gymnasium is imported (or at once, if it already is).


def _register_environments() -> None:
    from orchlib.envs.registration import register

    register()


class _RegisterWhenGymnasiumLoads:
    """A ``sys.meta_path`` finder that lets gymnasium load normally, then registers orchlib's ids once."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "gymnasium":
            return None
        sys.meta_path.remove(self)  # the real finders locate gymnasium; this hook fires once
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            load(module)
            _register_environments()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


if "gymnasium" in sys.modules:
    _register_environments()
elif not any(isinstance(finder, _RegisterWhenGymnasiumLoads) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenGymnasiumLoads())
