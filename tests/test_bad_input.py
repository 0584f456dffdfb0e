"""Bad input everywhere gives a clear error naming the file, row, field or argument and what is valid:
loaders, the scenario JSON, the command line and the sweep cache (which recomputes instead of failing)."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from orchlib import cli
from orchlib.agents.base import Agent
from orchlib.envs.orchestration import OrchestrationEnv
from orchlib.study import runner
from orchlib.study.runner import CacheWarning, RunSpec, run_sweep
from orchlib.system.profiles import DataError, load_network_levels, load_profile, load_trace, load_variants
from orchlib.system.scenario import Scenario, paper, tiny

from .conftest import TOY_VARIANTS

PROFILE = "# name: p\nmodel,median_ms,p10_ms,p90_ms,n_repeats\nbig,5,4,6,10\nsmall,2,1,3,10\n"
LEVELS = "name,uplink_mbps,downlink_mbps,rtt_ms,source\nwifi,20,50,10,test\n"
LOADERS = {
    "variants": (load_variants, TOY_VARIANTS),
    "profile": (load_profile, PROFILE),
    "levels": (load_network_levels, LEVELS),
}


def _with_extra_field(text: str, row: int) -> str:
    """``text`` with one more comma-separated field on data row ``row`` (1-based, comments skipped)."""
    lines = text.splitlines()
    data = [i for i, line in enumerate(lines) if not line.startswith("#")][1:]
    lines[data[row - 1]] += ",surplus"
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- loaders


@pytest.mark.parametrize("kind", sorted(LOADERS))
@pytest.mark.parametrize("row", [1, 2])
def test_a_row_with_more_fields_than_the_header_is_named(tmp_path: Path, kind: str, row: int) -> None:
    load, good = LOADERS[kind]
    if row > good.count("\n") - good.count("#") - 1:
        good += good.splitlines()[-1].replace("wifi", "4g") + "\n"  # the levels file has one row
    path = tmp_path / "file.csv"
    path.write_text(_with_extra_field(good, row))
    with pytest.raises(DataError) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message
    assert f"row {row} (line " in message and "fields but the header has" in message, message


@pytest.mark.parametrize("kind", [*sorted(LOADERS), "trace"])
def test_a_file_that_is_not_text_is_refused_naming_it(tmp_path: Path, kind: str) -> None:
    load = load_trace if kind == "trace" else LOADERS[kind][0]
    path = tmp_path / ("file.log" if kind == "trace" else "file.csv")
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    with pytest.raises(DataError, match="not a UTF-8 text file") as info:
        load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("kind", [*sorted(LOADERS), "trace"])
def test_a_byte_order_mark_and_windows_line_ends_are_read_as_plain_text(tmp_path: Path, kind: str) -> None:
    load, text = (load_trace, "0 1.5\n1 2.5\n") if kind == "trace" else LOADERS[kind]
    plain, windows = tmp_path / "plain.csv", tmp_path / "windows.csv"
    plain.write_text(text)
    windows.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    a, b = load(plain), load(windows)
    if kind == "trace":
        np.testing.assert_array_equal(a.mbps, b.mbps)
    elif kind == "levels":
        assert list(a.values()) == list(b.values())
    else:
        pd.testing.assert_frame_equal(a.frame, b.frame)


# ----------------------------------------------------------------------------------------- scenario JSON


def _set(path: str, value: object):
    def edit(data: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return edit


def _drop(path: str):
    def edit(data: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        del data[last]

    return edit


SCENARIO_CASES = [
    (_drop("n_users"), "scenario: missing field(s) ['n_users']; Scenario requires ['name', 'n_users'"),
    (_drop("access.rtt_ms"), "scenario.access: missing field(s) ['rtt_ms']; LinkSpec requires"),
    (_set("colour", "blue"), "scenario: unknown field(s) ['colour']; valid fields of Scenario: ['name'"),
    (_set("edge.gpus", 1), "scenario.edge: unknown field(s) ['gpus']; valid fields of TierSpec: ['profile'"),
    (_set("n_users", "8"), "scenario.n_users: expected a whole number, got '8'"),
    (_set("n_users", True), "scenario.n_users: expected a whole number, got True"),
    (_set("n_users", 2.5), "scenario.n_users: expected a whole number, got 2.5"),
    (_set("access.rtt_ms", "fast"), "scenario.access.rtt_ms: expected a number, got 'fast'"),
    (
        _set("arrivals.process", "bursty"),
        "scenario.arrivals.process: expected one of 'poisson', 'closed_loop'",
    ),
    (_set("accuracy.levels_pct", 60), "scenario.accuracy.levels_pct: expected a list of a number, got 60"),
    (_set("accuracy.levels_pct", [0, "x"]), "scenario.accuracy.levels_pct[1]: expected a number, got 'x'"),
    (_set("variant_subset", "mobilenet"), "scenario.variant_subset: expected a list of a text or null"),
    (_set("access.changes", [[1.0, 0.5, 2.0]]), "scenario.access.changes[0]: expected a list of 2 items"),
    (_set("wan", 5), "scenario.wan: expected an object with fields ['uplink_mbps'"),
    (_set("compute_jitter", "yes"), "scenario.compute_jitter: expected true or false, got 'yes'"),
    (_set("n_users", 0), "scenario: Scenario.n_users must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize(("edit", "message"), SCENARIO_CASES)
def test_scenario_json_with_a_bad_field_names_it_and_what_is_valid(edit, message: str) -> None:
    data = json.loads(tiny().to_json())
    edit(data)
    with pytest.raises(ValueError) as info:
        Scenario.from_dict(data)
    assert message in str(info.value)


def test_scenario_json_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match=r"scenario: expected an object with fields \['name'"):
        Scenario.from_dict([1, 2])  # type: ignore[arg-type]


def test_hand_written_scenario_json_with_whole_numbers_and_lists_loads() -> None:
    data = json.loads(paper().to_json())
    assert Scenario.from_dict(copy.deepcopy(data)) == paper()
    data["access"]["rtt_ms"] = int(data["access"]["rtt_ms"])  # 10, not 10.0
    data["accuracy"]["probabilities"] = [0.25, 0.25, 0.25, 0.25]
    loaded = Scenario.from_dict(data)
    assert loaded == paper().replace(access=paper().access)  # the same scenario
    assert isinstance(loaded.access.rtt_ms, float)


# ------------------------------------------------------------------------------------------ command line


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("x")
    return path


CLI_CASES = [
    (["profile", "--threads", "1", "--repeats", "3", "--out", "p.csv", "--seed", "-1"], "--seed"),
    (["profile", "--threads", "1", "--repeats", "3", "--out", "p.csv", "--machine", ""], "--machine"),
    (["profile", "--threads", "1", "--repeats", "3", "--out", "folder.csv"], "--out"),
    (["reproduce", "--out", "{file}"], "--out"),
    (["reproduce", "--out", "{file}/inside"], "--out"),
    (["reproduce", "--jobs", "0"], "--jobs"),
    (["reproduce", "--jobs", "two"], "--jobs"),
    (["notebooks", "--out", "{file}/inside"], "--out"),
    (["sanity", "--out", "folder.csv"], "--out"),
    (["sanity", "--out", "missing/s.md"], "--out"),
    (["sanity", "--requests", "10", "--out", "s.md"], "--requests"),
]


@pytest.mark.parametrize(("argv", "named"), CLI_CASES)
def test_cli_refuses_a_bad_argument_naming_it(
    argv: list[str],
    named: str,
    a_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.csv").mkdir()
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main([part.replace("{file}", str(a_file)) for part in argv])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {named}:" in error and "Traceback" not in error
    assert sorted(tmp_path.rglob("*")) == before  # nothing written


# ------------------------------------------------------------------------------------------- sweep cache


class First(Agent):
    """The first valid action: deterministic, so a recomputed run must equal the cached one."""

    def reset(self, rng=None) -> None:
        self.rng_ = np.random.default_rng(rng)

    def act(self, obs, mask, info) -> int:
        return int(np.flatnonzero(mask)[0])

    def learn(self, obs, action, reward, next_obs, next_mask, info) -> None:
        pass


def first(env: OrchestrationEnv) -> Agent:
    return First(env.observation_space, env.action_space)


@pytest.fixture
def cached_sweep(tmp_path: Path):
    specs = [
        RunSpec(scenario=tiny().replace(n_requests=100), agent="first", seed=0, replicate=r) for r in (0, 1)
    ]
    result = run_sweep(specs, tmp_path, factory=first, progress=False)
    return specs, result


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble(path: Path) -> None:
    path.write_bytes(b"\x00\xff not json \x00")


def _drop_summary(path: Path) -> None:
    record = json.loads(path.read_text())
    del record["summary"]
    path.write_text(json.dumps(record))


def _short_table(path: Path) -> None:
    pd.read_parquet(path).iloc[:10].to_parquet(path, index=False)


DAMAGE = [
    ("parquet", _truncate, "cached table cannot be read"),
    ("parquet", _garble, "cached table cannot be read"),
    ("parquet", _short_table, "cached table has 10 rows"),
    ("json", _truncate, "cached result is not valid JSON"),
    ("json", _garble, "cached result is not valid JSON"),
    ("json", _drop_summary, "lacks its summary"),
]


@pytest.mark.parametrize(("suffix", "damage", "why"), DAMAGE)
def test_a_damaged_cached_run_is_recomputed_with_a_warning_naming_the_file(
    cached_sweep, tmp_path: Path, suffix: str, damage, why: str
) -> None:
    specs, before = cached_sweep
    path = tmp_path / f"{before.keys[1]}.{suffix}"
    damage(path)
    with pytest.warns(CacheWarning, match=why) as caught:
        after = run_sweep(specs, tmp_path, factory=first, progress=False)
    assert any(str(path) in str(w.message) for w in caught)
    assert after.n_computed == 1
    pd.testing.assert_frame_equal(after.requests, before.requests)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: the next call reads the cache silently
        assert run_sweep(specs, tmp_path, factory=first, progress=False).n_computed == 0


def test_results_of_an_older_format_are_ignored_with_one_message(
    cached_sweep, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs, before = cached_sweep
    monkeypatch.setattr(runner, "RESULT_FORMAT", runner.RESULT_FORMAT + 1)
    monkeypatch.setattr(runner, "_REPORTED_FORMATS", set())
    with pytest.warns(CacheWarning) as caught:
        after = run_sweep(specs, tmp_path, factory=first, progress=False)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1
    assert f"2 of format {runner.RESULT_FORMAT - 1}" in messages[0] and str(tmp_path) in messages[0]
    assert after.n_computed == 2 and not set(after.keys) & set(before.keys)
    pd.testing.assert_frame_equal(after.requests, before.requests)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.pop("seed"), r"missing field\(s\) \['seed'\]"),
        (lambda d: d.update(sede=1), r"unknown field\(s\) \['sede'\]"),
        (lambda d: d["scenario"].pop("wan"), r"scenario: missing field\(s\) \['wan'\]"),
        (lambda d: d.update(seed=-1), "RunSpec.seed must be an integer >= 0"),
    ],
)
def test_a_saved_run_spec_with_a_bad_field_names_it(edit, message: str) -> None:
    data = json.loads(RunSpec(scenario=tiny(), agent="random", seed=0, replicate=0).to_json())
    edit(data)
    with pytest.raises(ValueError, match=message):
        RunSpec.from_dict(data)


def test_a_checkout_that_was_never_installed_finds_the_data_beside_the_package(monkeypatch) -> None:
    from orchlib.system import profiles

    def not_installed(package: str):
        raise ModuleNotFoundError(f"No module named {package!r}")

    monkeypatch.setattr(profiles.importlib.resources, "files", not_installed)
    assert profiles.data_dir() == Path(profiles.__file__).resolve().parents[2] / "data"
    assert (profiles.data_dir() / "models" / "mobilenet_v1.csv").is_file()
