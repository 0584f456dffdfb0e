"""The reproduction summary quotes the papers exactly and gives our numbers the precision their CIs justify;
executing notebooks prints nothing but their own output (no kernel transport warning)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from orchlib.study import experiments
from orchlib.study.reproduce import PAPER_NUMBERS, PAPER_QUOTES, _markdown, format_estimate, summary_table


def _inputs() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Small made-up inputs of the shapes summary_table reads (the numbers only need to be distinct)."""
    runs = pd.DataFrame(
        {
            "agent": ["q_learning"] * 3 + ["sota_location_only"] * 3,
            "mean_latency_ms": [60.0, 61.0, 62.5, 90.0, 91.0, 93.0],
            "mean_accuracy_pct": [68.1, 68.2, 68.0, 70.6, 70.6, 70.6],
        }
    )
    comparison = pd.DataFrame(
        {
            "agent": ["q_learning"],
            **{
                f"{name}{end}": [value + offset]
                for name, value in (
                    ("time_reduction", 0.3345),
                    ("speedup_ratio", 0.5027),
                    ("accuracy_loss_pp", 2.5123),
                    ("accuracy_loss_rel_pct", 3.5555),
                )
                for end, offset in (("", 0.0), ("_low", -0.0213), ("_high", 0.0231))
            },
        }
    )
    second_half = pd.DataFrame({"agent": ["q_learning"] * 3, "latency_ratio_to_oracle": [1.05, 1.07, 1.06]})
    hybrid = pd.DataFrame(
        {
            "n_planning": [0, 0, 10, 10],
            "requests_to_reach": [9000.0, 11000.0, 1500.0, 1700.0],
            "target_latency_ms": [50.0] * 4,
            "reached": [True] * 4,
            "requests_to_converge": [8000.0, 9000.0, 1000.0, 1200.0],
            "converged": [True] * 4,
        }
    )
    return runs, comparison, second_half, hybrid


def test_summary_quotes_the_papers_exactly() -> None:
    summary = summary_table(*_inputs())
    text = _markdown(summary, experiments.QUICK, {"total": 1.0}, quick=True)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}

    def paper_cell(prefix: str) -> str:
        (line,) = (line for quantity, line in rows.items() if quantity.startswith(prefix))
        return line.rstrip(" |").rsplit(" | ", 1)[1]

    assert paper_cell("q_learning response-time reduction") == "35%"
    assert paper_cell("q_learning accuracy loss vs stand-in (percentage points)") == "< 0.9%"
    assert paper_cell("hybrid learning acceleration") == "up to 166.6x"
    assert "| 167 |" not in text and "| 0.9 |" not in text
    # the CSV keeps the numbers for computing, beside the quotes
    quoted = summary[summary["paper_quote"] != ""]
    assert sorted(quoted["paper"]) == sorted(PAPER_NUMBERS.values())
    assert sorted(quoted["paper_quote"]) == sorted(PAPER_QUOTES.values())


@pytest.mark.parametrize(
    ("value", "low", "high", "expected"),
    [
        (33.45, 31.32, 35.76, ("33.5", "[31.3, 35.8]")),  # half-width 2.2: two digits -> 0.1
        (0.4213, 0.4012, 0.4431, ("0.421", "[0.401, 0.443]")),  # half-width 0.021 -> 0.001
        (1512.3, 1100.0, 1900.0, ("1512", "[1100, 1900]")),  # half-width 400 -> whole numbers
        (166.61, np.nan, np.nan, ("167", "")),  # no CI: three significant digits
        (12345.6, np.nan, np.nan, ("12346", "")),
        (np.nan, np.nan, np.nan, ("", "")),
    ],
)
def test_our_numbers_keep_the_precision_their_ci_justifies(value, low, high, expected) -> None:
    assert format_estimate(value, low, high) == expected


def test_executing_a_notebook_prints_nothing_of_its_own(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("print(6 * 7)")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    code = textwrap.dedent(
        f"""
        from pathlib import Path
        from orchlib.study.notebooks import execute_notebook
        executed = execute_notebook(Path({str(path)!r}))
        print(executed.cells[0].outputs[0]["text"].strip())
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"
    assert result.stderr == ""  # over TCP the kernel warns "Kernel is running over TCP without encryption"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.ipynb"]  # no socket files left behind
