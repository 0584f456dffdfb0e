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
from orchlib.study.experiments import SOTA, operating_point
from orchlib.study.reproduce import (
    PAPER_NUMBERS,
    PAPER_QUOTES,
    _markdown,
    format_estimate,
    summary_glitches,
    summary_table,
    targets_rows,
)


def _comparison_columns(values: dict[str, float]) -> dict[str, list[float]]:
    return {
        f"{name}{end}": [value + offset]
        for name, value in values.items()
        for end, offset in (("", 0.0), ("_low", -0.0213), ("_high", 0.0231))
    }


def _inputs() -> tuple:
    """Small made-up inputs of the shapes summary_table reads (the numbers only need to be distinct)."""
    runs = pd.DataFrame(
        {
            "agent": ["q_learning"] * 3 + ["sota_location_only"] * 3,
            "mean_latency_ms": [60.0, 61.0, 62.5, 90.0, 91.0, 93.0],
            "mean_accuracy_pct": [68.1, 68.2, 68.0, 70.6, 70.6, 70.6],
        }
    )
    values = {
        "time_reduction": 0.3345,
        "speedup_ratio": 0.5027,
        "accuracy_loss_pp": 2.5123,
        "accuracy_loss_rel_pct": 3.5555,
    }
    comparison = pd.DataFrame({"agent": ["q_learning"], **_comparison_columns(values)})
    second_half = pd.DataFrame({"agent": ["q_learning"] * 3, "latency_ratio_to_oracle": [1.05, 1.07, 1.06]})
    settle = pd.DataFrame(
        {
            "world": ["paper", "paper"],
            "agent": ["q_learning", "hybrid"],
            "final_ratio": [1.4, 1.1],
            "settle_request": [9001.0, 57.0],
            "settle_request_low": [7000.0, 40.0],
            "settle_request_high": [11000.0, 90.0],
            "n_runs": [10, 10],
            "window": [20, 20],
            "growth": [0.1, 0.1],
            "tolerance": [0.05, 0.05],
        }
    )
    accel = pd.DataFrame(
        {
            "world": ["paper"],
            "reference": ["q_learning"],
            "reference_requests": [9001.0],
            "agent_requests": [57.0],
            "acceleration": [157.9],
            "acceleration_low": [90.1],
            "acceleration_high": [240.2],
            "reached": [True],
        }
    )
    values = {
        "time_reduction": 0.21,
        "speedup_ratio": 0.27,
        "accuracy_loss_pp": 0.61,
        "accuracy_loss_rel_pct": 0.86,
    }
    operating = pd.DataFrame(
        {
            "agent": ["q_learning"] * 2,
            "tolerance_pp": [0.9, 1.0],
            "budget_pp": [0.9, 0.9],
            "chosen": [True, False],
            **{k: v * 2 for k, v in _comparison_columns(values).items()},
        }
    )
    return runs, comparison, second_half, (settle, None, accel), operating


def test_summary_quotes_the_papers_exactly() -> None:
    summary = summary_table(*_inputs())
    text = _markdown(summary, experiments.QUICK, {"total": 1.0}, quick=True)
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}

    def paper_cells(prefix: str) -> list[str]:
        return [
            line.split(" | ")[3].rstrip(" |")
            for quantity, line in rows.items()
            if quantity.startswith(prefix) and "relative %" not in quantity
        ]

    # the operating point and the unconstrained pair both stand beside the paper's claim
    assert paper_cells("q_learning response-time reduction") == ["35%", "35%"]
    assert paper_cells("q_learning accuracy loss vs stand-in, at the paper's accuracy budget") == ["< 0.9%"]
    assert paper_cells("q_learning accuracy loss vs stand-in, unconstrained") == ["< 0.9%"]
    assert paper_cells("[paper, steady Wi-Fi] hybrid learning acceleration") == ["up to 166.6x"]
    assert "| 167 |" not in text and "| 0.9 |" not in text
    assert "tolerates 0.9 pp" in text and "158 | [90, 240]" in text
    # the CSV keeps the numbers for computing, beside the quotes
    quoted = summary[summary["paper_quote"] != ""]
    assert set(quoted["paper"]) == set(PAPER_NUMBERS.values())
    assert set(quoted["paper_quote"]) == set(PAPER_QUOTES.values())
    assert summary_glitches(text) == []


def test_without_a_tolerance_within_budget_the_row_says_so() -> None:
    runs, comparison, second_half, hybrid, operating = _inputs()
    summary = summary_table(runs, comparison, second_half, hybrid, operating.assign(chosen=False))
    assert summary["quantity"].str.contains("no tolerance of figure 6's sweep keeps").sum() == 1
    assert not summary["quantity"].str.contains("at the paper's accuracy budget \\(every").any()


def test_glitch_finder_flags_the_fragments_of_issue_24() -> None:
    bad = [
        "| [ideal] Q-learning with the textbook defaults (target (before); ) | 2.088 | [2.067, 2.115] | nan |",
        "| [ideal] IQM of score (target (higher is better; 1 = oracle); ) | 0.9 | | |",
        "| x () | 1 | | |",
        "| x | None | | |",
    ]
    good = "| [paper] hybrid mean response time, ms (target lower, CIs apart; met) | 21.7 | [19.7, 24.1] |  |"
    assert summary_glitches("\n".join([*bad, good])) == bad


def test_targets_rows_read_without_glitches() -> None:
    learning = pd.DataFrame(
        {
            "world": ["ideal", "ideal", "ideal"],
            "measure": ["Q / oracle", "textbook Q / oracle", "acceleration"],
            "target": ["<= 1.10", "(no target: the defaults before issue 13)", ">= 100x"],
            "value": [1.08, 2.09, 40.0],
            "ci95_low": [1.07, 2.07, 30.0],
            "ci95_high": [1.1, 2.1, 50.0],
            "met": [True, None, None],
            "note": ["", "", "q settles at request 4000, the hybrid at 100"],
        }
    )
    rows = targets_rows(learning)
    assert rows["quantity"].tolist() == [
        "[ideal] Q / oracle (target <= 1.10; met)",
        "[ideal] textbook Q / oracle (no target: the defaults before issue 13)",
        "[ideal] acceleration (target >= 100x; undetermined) q settles at request 4000, the hybrid at 100",
    ]
    assert (rows["paper_quote"] == "").all()


def test_operating_point_is_the_largest_tolerance_within_the_budget() -> None:
    rows = []
    # mean loss of Q-learning below the stand-in's 70.9 %: 0.0, 0.5, 0.85 and 1.4 pp at tolerances 0, 0.5, 0.9, 1
    for tolerance, loss in ((0.0, 0.0), (0.5, 0.5), (0.9, 0.85), (1.0, 1.4)):
        for replicate in range(3):
            for agent, latency, accuracy in (
                ("q_learning", 40.0 - 10 * tolerance, 70.9 - loss),
                (SOTA, 50.0, 70.9),
            ):
                rows.append(
                    {
                        "agent": agent,
                        "scenario": f"tolerance_{tolerance:g}pp",
                        "replicate": replicate,
                        "tolerance_pp": tolerance,
                        "mean_latency_ms": latency + replicate,
                        "mean_accuracy_pct": accuracy + 0.01 * replicate,
                    }
                )
    table = operating_point(pd.DataFrame(rows))
    assert table["tolerance_pp"].tolist() == [0.0, 0.5, 0.9, 1.0]
    assert table.loc[table["chosen"], "tolerance_pp"].tolist() == [0.9]
    chosen = table[table["chosen"]].iloc[0]
    assert chosen["time_reduction"] == pytest.approx(1 - (31 + 1) / (50 + 1))
    assert table.loc[table["chosen"], "accuracy_loss_pp"].item() == pytest.approx(0.85)
    assert not operating_point(pd.DataFrame(rows), budget_pp=0.4)["chosen"][1:].any()
    with pytest.raises(ValueError, match="budget_pp"):
        operating_point(pd.DataFrame(rows), budget_pp=0.0)


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
