"""Loading and configuration reject malformed input with a message naming the file/field and what is valid."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchlib.system.profiles import (
    DataError,
    load_network_levels,
    load_payload_table,
    load_profile,
    load_trace,
    load_variants,
)
from orchlib.system.scenario import AccuracyRequirement, Arrivals, LinkSpec, Scenario, TierSpec
from orchlib.system.simulator import build_system

from .conftest import TOY_VARIANTS

GOOD_PROFILE = "# name: p\nmodel,median_ms,p10_ms,p90_ms,n_repeats\nbig,5,4,6,10\nsmall,2,1,3,10\n"
GOOD_LEVELS = "name,uplink_mbps,downlink_mbps,rtt_ms,source\nwifi,20,50,10,test\n"


def write(tmp_path: Path, text: str, name: str = "file.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


PROFILE_CASES = [
    ("", "is empty"),
    ("model,median_ms,p10_ms,n_repeats\nbig,5,4,10\n", "missing column(s) ['p90_ms']"),
    ("model,median_ms,p10_ms,p90_ms,n_repeats\n", "no rows"),
    ("model,median_ms,p10_ms,p90_ms,n_repeats\nbig,fast,4,6,10\n", "column 'median_ms': expected a number"),
    ("model,median_ms,p10_ms,p90_ms,n_repeats\nbig,,4,6,10\n", "NaN"),
    ("model,median_ms,p10_ms,p90_ms,n_repeats\nbig,nan,4,6,10\n", "NaN"),
    ("model,median_ms,p10_ms,p90_ms,n_repeats\nbig,-5,4,6,10\n", "must be > 0"),
    ("model,median_ms,p10_ms,p90_ms,n_repeats\nbig,0,0,0,10\n", "must be > 0"),
    ("model,median_ms,p10_ms,p90_ms,n_repeats\nbig,5,6,7,10\n", "p10_ms <= median_ms <= p90_ms"),
    ("model,median_ms,p10_ms,p90_ms,n_repeats\nbig,5,4,6,10\nbig,5,4,6,10\n", "duplicate model"),
    ("model,median_ms,p10_ms,p90_ms,n_repeats\nbig,5,4,6,-1\n", "'n_repeats': got -1, must be >= 0"),
]


@pytest.mark.parametrize(("text", "message"), PROFILE_CASES)
def test_malformed_profile_is_refused_naming_the_file(tmp_path, text, message) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_profile(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_profile_with_unknown_variant_names_it(tmp_path, toy_files) -> None:
    path = write(tmp_path, GOOD_PROFILE + "mobilenet_v9,1,1,1,1\n")
    with pytest.raises(DataError, match=r"unknown variant name\(s\) \['mobilenet_v9'\]"):
        load_profile(path, load_variants(toy_files["variants"]))


def test_profile_missing_a_variant_names_it(tmp_path, toy_files) -> None:
    path = write(tmp_path, "model,median_ms,p10_ms,p90_ms,n_repeats\nbig,5,4,6,10\n")
    with pytest.raises(DataError, match=r"no row for variant\(s\) \['small'\]"):
        load_profile(path, load_variants(toy_files["variants"]))


def test_missing_profile_name_lists_available(tmp_path) -> None:
    with pytest.raises(DataError, match="available in"):
        load_profile("no_such_profile")


VARIANT_CASES = [
    (TOY_VARIANTS.replace("false", "maybe"), "expected true or false"),
    (TOY_VARIANTS.replace(",224,", ",22.4,"), "expected a whole number"),
    (TOY_VARIANTS.replace("70.0,89.0", "170.0,89.0"), "must be in (0, 100] percent"),
    (TOY_VARIANTS.replace(",1000,100", ",0,100"), "'input_bytes': got 0.0, must be > 0"),
    (TOY_VARIANTS.replace("top5_pct,", ""), "missing column"),
    (TOY_VARIANTS + TOY_VARIANTS.splitlines()[-1] + "\n", "duplicate model"),
]


@pytest.mark.parametrize(("text", "message"), VARIANT_CASES)
def test_malformed_variant_table_is_refused(tmp_path, text, message) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_variants(path)
    assert str(path) in str(info.value) and message in str(info.value)


TRACE_CASES = [
    ("", "trace is empty"),
    ("0.0 1.0\n1.0\n", "line 2: expected two numbers"),
    ("0.0 1.0\n1.0 fast\n", "line 2: expected two numbers"),
    ("0.0 1.0\n1.0 2.0\n1.0 3.0\n", "line 3: time 1.0 s is not after"),
    ("0.0 1.0\n2.0 2.0\n1.0 3.0\n", "times must increase"),
    # zero samples are outages and load (issue 12); negative ones and an all-zero trace do not
    ("0.0 1.0\n1.0 -2.0\n", "line 2: throughput must be a finite number >= 0"),
    ("0.0 1.0\n1.0 nan\n", "throughput must be a finite number >= 0"),
    ("0.0 0.0\n1.0 0\n", "every throughput sample is 0"),
]


@pytest.mark.parametrize(("text", "message"), TRACE_CASES)
def test_malformed_trace_is_refused(tmp_path, text, message) -> None:
    path = write(tmp_path, text, "trace.log")
    with pytest.raises(DataError) as info:
        load_trace(path)
    assert str(path) in str(info.value) and message in str(info.value)


LEVEL_CASES = [
    (GOOD_LEVELS.replace(",20,", ",-20,"), "'uplink_mbps': got -20.0, must be > 0"),
    (GOOD_LEVELS.replace(",10,", ",nan,"), "NaN"),
    (GOOD_LEVELS + "wifi,1,1,1,dup\n", "duplicate name"),
]


@pytest.mark.parametrize(("text", "message"), LEVEL_CASES)
def test_malformed_network_levels_are_refused(tmp_path, text, message) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_network_levels(path)
    assert str(path) in str(info.value) and message in str(info.value)


CONFIG_CASES = [
    (lambda: TierSpec("p", n_workers=0), "TierSpec.n_workers must be an integer >= 1"),
    (
        lambda: LinkSpec(uplink_mbps=0.0, downlink_mbps=1.0, rtt_ms=1.0),
        "LinkSpec.uplink_mbps must be a finite number > 0",
    ),
    (lambda: LinkSpec(uplink_mbps=float("nan"), downlink_mbps=1.0, rtt_ms=1.0), "LinkSpec.uplink_mbps"),
    (
        lambda: LinkSpec(uplink_mbps=1.0, downlink_mbps=1.0, rtt_ms=-1.0),
        "LinkSpec.rtt_ms must be a finite number >= 0",
    ),
    (lambda: LinkSpec(1.0, 1.0, 1.0, changes=((5.0, 0.0),)), "LinkSpec.changes factor"),
    (lambda: Arrivals("bursty"), "Arrivals.process must be 'poisson' or 'closed_loop'"),
    (lambda: Arrivals(rate_per_s=0.0), "Arrivals.rate_per_s"),
    (lambda: AccuracyRequirement((60.0, 50.0), (0.5, 0.5)), "strictly increasing"),
    (lambda: AccuracyRequirement((60.0,), (0.5,)), "must sum to 1"),
    (lambda: AccuracyRequirement((60.0, 70.0), (1.0,)), "2 levels_pct but 1 probabilities"),
    (lambda: AccuracyRequirement((101.0,), (1.0,)), "must be in [0, 100]"),
]


@pytest.mark.parametrize(("make", "message"), CONFIG_CASES)
def test_bad_configuration_is_refused_naming_the_field(make, message) -> None:
    with pytest.raises(ValueError) as info:
        make()
    assert message in str(info.value)


def test_zero_users_is_refused(toy_scenario) -> None:
    with pytest.raises(ValueError, match=r"Scenario\.n_users must be an integer >= 1, got 0"):
        dataclasses.replace(toy_scenario, n_users=0)


def test_unmeetable_accuracy_requirement_is_refused(toy_scenario) -> None:
    scenario = dataclasses.replace(toy_scenario, accuracy=AccuracyRequirement((0.0, 75.0), (0.5, 0.5)))
    with pytest.raises(
        DataError, match=r"requirement\(s\) \[75.0\] % top-1 cannot be met by any offered variant"
    ):
        build_system(scenario)


def test_unknown_variant_in_subset_is_refused(toy_scenario) -> None:
    with pytest.raises(ValueError, match=r"unknown variant\(s\) \['huge'\]"):
        build_system(dataclasses.replace(toy_scenario, variant_subset=("big", "huge")))


def test_scenario_round_trips_through_a_plain_dict(toy_scenario) -> None:
    scenario = dataclasses.replace(toy_scenario, access=LinkSpec(1.0, 2.0, 3.0, changes=((1.0, 0.5),)))
    assert Scenario.from_dict(scenario.to_dict()) == scenario


def test_profiler_output_round_trips_through_the_loader(tmp_path) -> None:
    from orchlib.profiling.profiler import ProfileRow, profile_metadata, write_profile

    rows = [ProfileRow(model="mobilenet_v1_0.25_128", median_ms=2.5, p10_ms=2.0, p90_ms=3.0, n_repeats=5)]
    path = tmp_path / "mine.csv"
    write_profile(path, rows, profile_metadata("mine", threads=1, command="test"))
    profile = load_profile(path)
    assert profile.name == "mine"
    assert profile.metadata["threads"] == "1"
    assert profile.frame.loc[
        "mobilenet_v1_0.25_128", ["median_ms", "p10_ms", "p90_ms", "n_repeats"]
    ].tolist() == [2.5, 2.0, 3.0, 5.0]


@pytest.mark.parametrize("name", ["pixel3_cpu4", "rpi4_cpu4", "x86_1thread", "x86_2threads"])
def test_shipped_profiles_cover_every_variant(name) -> None:
    variants = load_variants()
    profile = load_profile(name, variants)
    for key in ("machine", "framework", "threads", "date"):
        assert profile.metadata.get(key), f"{name} lacks '{key}' metadata"


def test_a_table_is_read_again_when_its_bytes_change_and_each_read_is_its_own_copy(tmp_path) -> None:
    """Tables are parsed once per content (a sweep builds its world for every scenario): a file rewritten in
    place, even at once and to the same size, gives its new values, and changing what one read returned
    changes nothing that a later read returns."""
    path = tmp_path / "edge.csv"
    rows = "model,median_ms,p10_ms,p90_ms,n_repeats\nbig,{0},{0},{0},10\nsmall,4.0,4.0,4.0,10\n"
    path.write_text("# name: edge\n" + rows.format("20.0"))
    first = load_profile(path)
    path.write_text("# name: edge\n" + rows.format("30.0"))  # same size, same second
    assert load_profile(path).frame.loc["big", "median_ms"] == 30.0
    first.frame.loc["big", "median_ms"] = -1.0
    path.write_text("# name: edge\n" + rows.format("20.0"))
    assert load_profile(path).frame.loc["big", "median_ms"] == 20.0
    path.write_text("# name: edge\n" + rows.format("2x.0"))  # a bad file read after good ones is refused
    with pytest.raises(DataError, match="expected a number"):
        load_profile(path)
    # a loader that hands out the parsed table itself: a changed copy leaves the next read as the file says
    table = load_payload_table()
    first_median = float(table["median_bytes"].iloc[0])
    table.loc[table.index[0], "median_bytes"] = -1.0
    assert float(load_payload_table()["median_bytes"].iloc[0]) == first_median > 0
