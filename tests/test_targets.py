"""The issue-13 targets table runs end to end at a tiny size and reports every target with its CI."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orchlib.study.targets import COLUMNS, markdown_table, measure_targets


def test_targets_table_at_a_tiny_size(tmp_path: Path) -> None:
    table = measure_targets(str(tmp_path), n_requests=300, n_replicates=2, progress=False, window=25)
    assert list(table.columns) == list(COLUMNS)
    ideal = table[table["world"] == "ideal"]
    q = ideal[ideal["measure"] == "Q-learning latency / oracle, second half"].iloc[0]
    assert q["value"] >= 1.0 and q["target"] == "<= 1.10" and q["met"] in (True, False)
    assert ideal["measure"].str.contains("acceleration").any()
    assert ideal["measure"].str.contains("probability of improvement").any()
    assert ideal["measure"].str.startswith("IQM").sum() == 4
    # grounded-world rows exist whether or not that world can be measured yet
    assert (table["world"] == "grounded paper").sum() >= 3
    text = markdown_table(table)
    assert text.count("\n") == len(table) + 2
    again = measure_targets(str(tmp_path), n_requests=300, n_replicates=2, progress=False, window=25)
    np.testing.assert_array_equal(table["value"].to_numpy(float), again["value"].to_numpy(float))
