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

``import orchlib`` registers the Gymnasium ids (one per scenario preset, e.g.
``orchlib/Orchestration-paper-v0``; see :mod:`orchlib.envs.registration`), so
``import orchlib; gymnasium.make("orchlib/Orchestration-tiny-v0")`` works with no other call. It imports
gymnasium for that, but not torch.
"""

from __future__ import annotations

import importlib
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
# Gymnasium 1.x has no plugin entry point: packages register their ids when imported, as this does. It imports
# gymnasium (a few hundred ms, with numpy) but not the environment itself: entry points are strings.
from orchlib.envs.registration import register as _register  # noqa: E402

_register()
