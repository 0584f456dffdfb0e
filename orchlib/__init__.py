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
"""

from __future__ import annotations

import importlib
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
    from orchlib.study.runner import grid, run_sweep
    from orchlib.system.scenario import Scenario, paper, preset
    from orchlib.system.simulator import Simulator, System, build_system


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'orchlib' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
