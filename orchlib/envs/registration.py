"""Gymnasium ids of orchlib's environment: one per scenario preset, registered when orchlib is imported.

``gymnasium.make("orchlib/Orchestration-<preset>-v0")`` builds :class:`~orchlib.envs.orchestration.OrchestrationEnv`
on the preset of that name (every name in :data:`orchlib.system.scenario.PRESETS`, so a new preset gets its id
without an edit here). ``orchlib/Orchestration-v0`` is kept as the ``paper`` preset's original id. Keyword
arguments of ``gymnasium.make`` go to the environment, e.g. ``observation="box"``.

Episodes end by truncation after the scenario's ``n_requests`` requests (the environment does this itself,
so no ``max_episode_steps`` is registered; pass one to ``gymnasium.make`` for shorter episodes).
"""

from __future__ import annotations

import gymnasium as gym

from orchlib.system.scenario import PRESETS

#: the environment's entry point, as a string so that registering imports neither it nor its dependencies.
ENTRY_POINT = "orchlib.envs.orchestration:OrchestrationEnv"
#: the first id of the environment, the ``paper`` preset (kept so that older code keeps working).
ENV_ID = "orchlib/Orchestration-v0"


def env_id(preset: str) -> str:
    """The Gymnasium id of the environment on scenario preset ``preset``."""
    return f"orchlib/Orchestration-{preset}-v0"


def env_ids() -> dict[str, str]:
    """Every registered id -> the scenario preset it builds."""
    return {ENV_ID: "paper", **{env_id(name): name for name in PRESETS}}


def register() -> None:
    """Register every id of :func:`env_ids` that is not registered yet (idempotent)."""
    for id_, preset in env_ids().items():
        if id_ not in gym.registry:
            gym.register(id=id_, entry_point=ENTRY_POINT, kwargs={"scenario": preset})
