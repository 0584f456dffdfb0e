"""Gymnasium convention: importing orchlib registers one id per scenario preset, and gym.make needs no other
call; importing orchlib stays cheap (no torch, and the environment module is imported only by gym.make)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from orchlib.envs.orchestration import ENV_ID, OrchestrationEnv
from orchlib.envs.registration import env_id, env_ids
from orchlib.system.scenario import PRESETS


def _python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_every_preset_has_an_id() -> None:
    assert {env_id(name) for name in PRESETS} | {ENV_ID} == set(env_ids())
    assert env_id("paper") == "orchlib/Orchestration-paper-v0"
    assert set(env_ids()) <= set(gym.registry)


@pytest.mark.parametrize("name", env_ids())
def test_gymnasium_env_checker_passes_on_every_registered_id(name: str) -> None:
    # check_env samples the whole action space: in the grounded worlds some actions cannot run for some
    # requests (docs/assumptions.md E8), which must be a failed request, not an exception
    for kwargs in ({}, {"observation": "box", "accuracy_mode": "penalty"}):
        check_env(gym.make(name, **kwargs).unwrapped, skip_render_check=True)


def test_gym_make_builds_the_preset_and_truncates_after_its_requests() -> None:
    env = gym.make(env_id("tiny"))
    assert isinstance(env.unwrapped, OrchestrationEnv)
    assert env.unwrapped.scenario.name == "tiny"
    assert env.unwrapped.max_steps == env.unwrapped.scenario.n_requests
    short = gym.make(env_id("tiny"), max_episode_steps=3, observation="box")
    short.reset(seed=0)
    assert [short.step(0)[3] for _ in range(3)] == [False, False, True]


@pytest.mark.parametrize("order", ["orchlib first", "gymnasium first"])
def test_a_fresh_interpreter_can_make_the_env_after_import(order: str) -> None:
    imports = (
        "import orchlib\nimport gymnasium as gym"
        if order == "orchlib first"
        else ("import gymnasium as gym\nimport orchlib")
    )
    out = _python(
        f"""
        {imports.splitlines()[0]}
        {imports.splitlines()[1]}
        env = gym.make("orchlib/Orchestration-tiny-v0")
        obs, info = env.reset(seed=1)
        print(type(env.unwrapped).__name__, sorted(k for k in gym.registry if k.startswith("orchlib/"))[0])
        """
    )
    assert out == "OrchestrationEnv orchlib/Orchestration-ideal-v0"


def test_import_orchlib_registers_without_importing_torch_or_the_environment() -> None:
    out = _python(
        """
        import sys
        import orchlib
        print(sorted(m for m in ("torch", "pandas", "orchlib.envs.orchestration") if m in sys.modules))
        """
    )
    assert out == "[]"
