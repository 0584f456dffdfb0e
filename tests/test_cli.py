"""The command line's reproduce/notebooks split: figures without executing notebooks, notebooks on their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchlib import cli
from orchlib.study import reproduce as reproduce_module
from orchlib.study.notebooks import QUICK_ENV, RESULTS_ENV


def test_reproduce_does_not_execute_notebooks_unless_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # reproduce sets these for the notebook kernels; setting them here makes monkeypatch restore them after.
    monkeypatch.setenv(RESULTS_ENV, "unset")
    monkeypatch.setenv(QUICK_ENV, "0")
    calls: list[dict] = []
    monkeypatch.setattr(reproduce_module, "reproduce", lambda out, **kwargs: calls.append(kwargs) or {})
    assert cli.main(["reproduce", "--quick", "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["reproduce", "--quick", "--notebooks", "--out", str(tmp_path / "b")]) == 0
    assert [c["notebooks"] for c in calls] == [False, True]


def test_notebooks_subcommand_executes_into_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[tuple] = []
    monkeypatch.setattr(
        reproduce_module,
        "execute_notebooks",
        lambda out, quick, n_jobs: seen.append((out, quick, n_jobs)) or [],
    )
    assert cli.main(["notebooks", "--quick", "--jobs", "1", "--out", str(tmp_path)]) == 0
    assert seen == [(tmp_path, True, 1)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["notebooks", "--jobs", "0"], "--jobs: must be an integer >= 1, got 0"),
        (["notebooks", "--out", "FILE"], "exists and is not a folder"),
        (["reproduce", "--no-notebooks"], "unrecognized arguments: --no-notebooks"),
    ],
)
def test_bad_arguments_name_the_argument(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "FILE").write_text("")
    argv = [str(tmp_path / a) if a == "FILE" else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_the_command_line_starts_without_torch() -> None:
    """`orchlib --help` and every argument check answer without importing torch or scipy.stats (about 1.5 s);
    the subcommands that measure import them when they run."""
    code = "import sys; import orchlib.cli; print(sorted(m for m in ('torch', 'scipy.stats') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
