"""The package layout shows the architecture: every module imports only from its own layer or a lower one, and
the module import graph is acyclic (issue: a layout grouped by layer)."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

import orchlib

PACKAGE = Path(orchlib.__file__).parent

#: layer -> rank. A module may import from its own layer or from a layer of strictly lower rank.
#: ``system`` and ``profiling`` are independent peers at the bottom; ``cli`` is the command line on top.
LAYER_RANK = {
    "system": 0,
    "profiling": 0,
    "envs": 1,
    "agents": 2,
    "study": 3,
    "testbed": 4,
    "ui": 5,
    "cli": 6,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _imports(path: Path) -> set[str]:
    """Every orchlib module a file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("orchlib")}
        elif (
            isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("orchlib")
        ):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(
                    candidate
                    if (PACKAGE.parent / (candidate.replace(".", "/") + ".py")).exists()
                    or (PACKAGE.parent / candidate.replace(".", "/")).is_dir()
                    else node.module
                )
    return found


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_known_layer() -> None:
    unknown = {m for m in MODULES if _layer(m) not in LAYER_RANK and m not in {"orchlib", "orchlib.__main__"}}
    assert not unknown, f"modules outside the layers {sorted(LAYER_RANK)}: {sorted(unknown)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) in LAYER_RANK))
def test_no_module_imports_from_a_layer_above_or_beside_it(module: str) -> None:
    own = _layer(module)
    for imported in _imports(MODULES[module]):
        other = _layer(imported)
        if other is None or other == own:
            continue
        assert LAYER_RANK[other] < LAYER_RANK[own], f"{module} ({own}) imports {imported} ({other})"


def test_the_module_import_graph_is_acyclic() -> None:
    graph = {m: {i for i in _imports(p) if i in MODULES and i != m} for m, p in MODULES.items()}
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from orchlib.study.runner import run_sweep\n")
    assert "orchlib.study.runner" in _imports(bad)
    assert LAYER_RANK[_layer("orchlib.study.runner")] > LAYER_RANK["system"]


def test_public_api_is_reexported_at_the_top() -> None:
    from orchlib import OrchestrationEnv, Scenario, make_agent, run_sweep

    assert Scenario.__module__ == "orchlib.system.scenario"
    assert OrchestrationEnv.__module__ == "orchlib.envs.orchestration"
    assert callable(make_agent) and callable(run_sweep)
    assert set(orchlib.__all__) == set(orchlib._EXPORTS) <= set(dir(orchlib))
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        orchlib.nonexistent  # noqa: B018
