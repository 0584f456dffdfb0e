"""Every Makefile target the README names parses and plans (``make -n``), with no target defined twice."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PHONY = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()


def test_the_readme_commands_are_targets() -> None:
    assert {"reproduce", "test", "notebooks", "reproduce-quick", "bench", "browser-test", "lint"} <= set(
        PHONY
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", PHONY)
def test_target_plans_without_errors_or_overrides(target: str) -> None:
    # -n prints the commands without running them; a stray line breaks parsing ("missing separator") and a
    # target defined twice makes make warn "overriding recipe".
    done = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr.lower(), done.stderr
