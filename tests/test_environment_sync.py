"""environment.yml (conda users) must name the same packages, with the same version ranges, as pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]

#: conda-forge names that differ from the PyPI distribution names.
CONDA_TO_PYPI = {"pytorch-cpu": "torch"}
#: conda entries that are not Python dependencies of orchlib.
NOT_DEPENDENCIES = {"python", "pip"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_requirements(text: str) -> dict[str, SpecifierSet]:
    """Runtime dependencies plus the ``test`` extra, keyed by canonical name."""
    project = tomllib.loads(text)["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["test"]
    return {_canonical(Requirement(line).name): Requirement(line).specifier for line in lines}


def environment_requirements(text: str) -> dict[str, SpecifierSet]:
    """Conda and pip dependencies of environment.yml, keyed by canonical PyPI name."""
    found: dict[str, SpecifierSet] = {}
    for entry in yaml.safe_load(text)["dependencies"]:
        if isinstance(entry, dict):
            for line in entry.get("pip", []):
                if line.startswith("-e "):
                    continue
                req = Requirement(line)
                found[_canonical(req.name)] = req.specifier
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*(.*)", entry.strip())
        if match is None:
            raise ValueError(f"environment.yml: cannot parse dependency {entry!r}")
        name, spec = match.groups()
        if name in NOT_DEPENDENCIES:
            continue
        spec = spec.strip()
        if spec and spec[0].isdigit():  # conda's bare "1.2" means "==1.2.*"
            spec = f"=={spec}.*" if not spec.endswith("*") else f"=={spec}"
        found[_canonical(CONDA_TO_PYPI.get(name, name))] = SpecifierSet(spec)
    return found


def compare(pyproject_text: str, environment_text: str) -> list[str]:
    """Human-readable differences between the two files (empty when they agree)."""
    py = pyproject_requirements(pyproject_text)
    env = environment_requirements(environment_text)
    problems = [
        f"{name}: in pyproject.toml, missing from environment.yml" for name in sorted(py.keys() - env.keys())
    ]
    problems += [
        f"{name}: in environment.yml, missing from pyproject.toml" for name in sorted(env.keys() - py.keys())
    ]
    problems += [
        f"{name}: pyproject.toml says '{py[name]}', environment.yml says '{env[name]}'"
        for name in sorted(py.keys() & env.keys())
        if py[name] != env[name]
    ]
    return problems


def test_environment_yml_matches_pyproject() -> None:
    problems = compare((ROOT / "pyproject.toml").read_text(), (ROOT / "environment.yml").read_text())
    assert problems == [], "\n".join(problems)


def test_environment_yml_installs_the_package_with_its_test_extra() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_lines = next(entry["pip"] for entry in env["dependencies"] if isinstance(entry, dict))
    assert "-e .[test]" in pip_lines


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda text: text.replace("  - seaborn>=0.13\n", ""), "seaborn: in pyproject.toml, missing"),
        (lambda text: text.replace("scipy>=1.11", "scipy>=1.9"), "scipy: pyproject.toml says"),
        (lambda text: text.replace("  - pip:\n", "  - rich>=13\n  - pip:\n"), "rich: in environment.yml"),
        (
            lambda text: text.replace("pytorch-cpu>=2.3,<2.14", "pytorch-cpu>=2.3"),
            "torch: pyproject.toml says",
        ),
    ],
)
def test_sync_check_catches_a_difference(edit, expected: str) -> None:
    environment_text = (ROOT / "environment.yml").read_text()
    edited = edit(environment_text)
    assert edited != environment_text, "the edit did not apply: update this test's edit"
    problems = compare((ROOT / "pyproject.toml").read_text(), edited)
    assert any(expected in p for p in problems), problems
