"""orchlib installs anywhere: the wheel carries its data, finds it with importlib.resources, and runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import orchlib
from orchlib.system import profiles

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_lists_every_subpackage_and_maps_the_data_folder() -> None:
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "orchlib").rglob("__init__.py")}
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert set(setuptools["packages"]) == found | {"orchlib.data"}
    assert setuptools["package-dir"] == {"orchlib.data": "data"}


def test_data_is_found_through_the_package_in_this_install() -> None:
    assert profiles.data_dir() == ROOT / "data"  # editable install: orchlib.data is the data/ folder
    assert profiles.load_variants().path.is_relative_to(ROOT / "data")


def test_version_comes_from_the_installed_metadata() -> None:
    assert orchlib.__version__ == PYPROJECT["project"]["version"]


def test_the_wheel_carries_the_data_and_runs_from_another_folder(tmp_path: Path) -> None:
    # Build from a copy so that the build leaves nothing in the checkout (build/, *.egg-info).
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for folder in ("orchlib", "data"):
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    wheels, target = tmp_path / "wheels", tmp_path / "target"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", wheels, source],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("orchlib-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", target, wheel],
        check=True,
        capture_output=True,
    )
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        import numpy as np
        import orchlib
        from orchlib.envs.orchestration import OrchestrationEnv
        from orchlib.system import profiles, scenario

        target = Path({str(target)!r})
        assert Path(orchlib.__file__).is_relative_to(target), orchlib.__file__
        assert profiles.data_dir().is_relative_to(target), profiles.data_dir()
        assert orchlib.__version__ == {PYPROJECT["project"]["version"]!r}, orchlib.__version__
        env = OrchestrationEnv(scenario.paper().replace(n_requests=100))
        obs, info = env.reset(seed=0)
        latencies = []
        for _ in range(100):
            action = int(np.flatnonzero(info["action_mask"])[0])
            obs, reward, terminated, truncated, info = env.step(action)
            latencies.append(info["latency_ms"])
        assert truncated and np.all(np.isfinite(latencies)) and min(latencies) > 0
        print(len(latencies), env.system.data_files[0])
        """
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # numba's kernels interpreted: compiling them afresh for the installed copy took about 3 of this suite's
    # minutes, and the compiled kernels are these same files, which the rest of the suite runs compiled
    env = {**os.environ, "PYTHONPATH": str(target), "NUMBA_DISABLE_JIT": "1"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    count, first_file = result.stdout.split()
    assert count == "100" and Path(first_file).is_relative_to(target)


def test_citation_file_describes_this_version_and_cites_the_paper() -> None:
    import yaml

    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    for key in ("cff-version", "message", "title", "authors", "version", "references"):
        assert citation.get(key), f"CITATION.cff lacks {key!r}"
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert str(citation["version"]) == PYPROJECT["project"]["version"]
    assert citation["license"] == PYPROJECT["project"]["license"]
    paper = citation["references"][0]
    assert paper["doi"] == "10.1145/3520129" and paper["year"] == 2022
    assert "doi     = {10.1145/3520129}" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_changelog_has_this_version_and_the_rule_on_published_numbers() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in text
    assert f"## [{PYPROJECT['project']['version']}] - " in text
    assert "**Moves published numbers:**" in text  # the rule every entry follows
    assert "`orchlib.scenario`" in text and "`orchlib.system.scenario`" in text  # the layer move
