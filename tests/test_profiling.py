"""Tests of the MobileNetV1 models, the latency profiler, its CSV files and the ``profile`` subcommand."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from orchlib import cli
from orchlib.profiling import profiler as profiling
from orchlib.profiling.mobilenet import (
    build_mobilenet_v1,
    build_variant,
    count_macs_and_params,
    parse_variant,
    quantize_int8,
    variant_names,
)
from orchlib.profiling.profiler import (
    METADATA_KEYS,
    PROFILE_COLUMNS,
    ProfileRow,
    profile_metadata,
    profile_to_csv,
    profile_variants,
    spearman_macs_latency,
    summarize_profile,
    write_profile,
)

REPO = Path(__file__).resolve().parents[1]
TINY = ["mobilenet_v1_0.25_128", "mobilenet_v1_0.25_128_quant"]


def published_table() -> pd.DataFrame:
    """The published TF-slim table: the project's copy if it exists, else the shared reference."""
    for path in (
        REPO / "data" / "models" / "mobilenet_v1.csv",
        Path("/work/shared/reference/mobilenet_v1_tfslim.csv"),
    ):
        if path.exists():
            return pd.read_csv(path, comment="#")
    pytest.skip("no published MobileNetV1 table found")


def read_profile_file(path: Path) -> tuple[dict[str, str], pd.DataFrame]:
    """Parse a profile file by hand: the ``# key: value`` lines, then the CSV rows."""
    metadata = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            key, separator, value = line[2:].partition(": ")
            assert separator, f"metadata line without ': ' in {path}: {line!r}"
            metadata[key] = value
    return metadata, pd.read_csv(path, comment="#")


def metadata_for(path: Path, threads: int = 1) -> dict[str, str]:
    return profile_metadata(name=path.stem, threads=threads, command="pytest")


# --- variant names -----------------------------------------------------------------------------------------


def test_variant_names_are_those_of_the_published_table() -> None:
    assert variant_names() == published_table()["model"].tolist()


def test_parse_variant_reads_width_resolution_and_precision() -> None:
    variant = parse_variant("mobilenet_v1_0.50_160_quant")
    assert (variant.width_multiplier, variant.resolution, variant.quantized) == (0.5, 160, True)
    assert not parse_variant("mobilenet_v1_1.0_224").quantized


@pytest.mark.parametrize("name", ["mobilenet_v1_0.5_160", "mobilenet_v1_1.0_96", "resnet50", ""])
def test_parse_variant_refuses_unknown_names_and_lists_valid_ones(name: str) -> None:
    with pytest.raises(ValueError, match=r"valid names: mobilenet_v1_1\.0_224, "):
        parse_variant(name)


# --- models ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "tolerance"), [("mobilenet_v1_1.0_224", 0.03), ("mobilenet_v1_0.25_128", 0.05)]
)
def test_macs_and_params_match_the_published_table(name: str, tolerance: float) -> None:
    published = published_table().set_index("model").loc[name]
    variant = parse_variant(name)
    model = build_mobilenet_v1(variant.width_multiplier, variant.resolution, rng=0)
    macs, params = count_macs_and_params(model, variant.resolution)
    assert macs == pytest.approx(published["million_macs"] * 1e6, rel=tolerance)
    assert params == pytest.approx(published["million_params"] * 1e6, rel=tolerance)


def test_int8_model_is_really_quantized_and_tracks_the_float_model() -> None:
    model = build_mobilenet_v1(0.25, 128, rng=1)
    quantized = quantize_int8(model, 128, n_calibration=4, rng=2)
    images = torch.rand((2, 3, 128, 128), generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.inference_mode():
        expected, actual = model(images), quantized(images)
    assert actual.shape == expected.shape == (2, 1001)
    assert isinstance(quantized.quant, torch.ao.nn.quantized.Quantize)
    assert isinstance(quantized.classifier, torch.ao.nn.quantized.Conv2d)
    n_quantized_convs = sum(isinstance(m, torch.ao.nn.quantized.Conv2d) for m in quantized.modules())
    assert n_quantized_convs == 1 + 2 * 13 + 1  # stem, 13 depthwise + 13 pointwise, classifier
    assert not any(type(m) in (nn.Conv2d, nn.BatchNorm2d) for m in quantized.modules())
    # Real int8 arithmetic on the same weights: close to the float logits, not equal to them.
    correlation = np.corrcoef(expected.flatten().numpy(), actual.flatten().numpy())[0, 1]
    assert 0.98 < correlation < 1.0
    assert not any(type(m).__module__.startswith("torch.ao") for m in model.features.modules())


def test_count_macs_and_params_refuses_a_quantized_model() -> None:
    quantized = build_variant("mobilenet_v1_0.25_128_quant", rng=0)
    with pytest.raises(ValueError, match="quantized"):
        count_macs_and_params(quantized, 128)


def test_same_seed_gives_the_same_models() -> None:
    images = torch.rand((1, 3, 128, 128), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        outputs = [build_variant("mobilenet_v1_0.25_128_quant", rng=seed)(images) for seed in (7, 7, 8)]
    assert torch.equal(outputs[0], outputs[1])
    assert not torch.equal(outputs[0], outputs[2])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width_multiplier": 0.01}, "width_multiplier"),
        ({"width_multiplier": 1.0, "resolution": 16}, "resolution"),
    ],
)
def test_build_refuses_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_mobilenet_v1(**kwargs)


# --- profiling and profile files ---------------------------------------------------------------------------


def test_tiny_profile_writes_a_file_that_parses_back(tmp_path: Path) -> None:
    path = tmp_path / "tiny_1thread.csv"
    rows = profile_to_csv(
        path, TINY, threads=1, repeats=3, warmup=1, metadata=metadata_for(path), rng=0, progress=False
    )
    metadata, table = read_profile_file(path)
    assert list(metadata) == list(METADATA_KEYS)
    assert metadata["name"] == "tiny_1thread"
    assert metadata["kind"] == "measured"
    assert metadata["threads"] == "1"
    assert metadata["framework"] == f"torch {torch.__version__}"
    assert int(metadata["n_cores"]) == os.cpu_count()
    assert tuple(table.columns) == PROFILE_COLUMNS
    assert table["model"].tolist() == TINY == [row.model for row in rows]
    assert (table["n_repeats"] == 3).all()
    assert (table["p10_ms"] > 0).all()
    assert (table["p10_ms"] <= table["median_ms"]).all()
    assert (table["median_ms"] <= table["p90_ms"]).all()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_interrupt_after_the_first_row_keeps_that_row(tmp_path: Path) -> None:
    path = tmp_path / "interrupted.csv"

    def interrupt(row: ProfileRow) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile_to_csv(
            path, TINY, 1, 3, 0, metadata=metadata_for(path), rng=0, progress=False, on_row=interrupt
        )
    metadata, table = read_profile_file(path)
    assert metadata["name"] == "interrupted"
    assert table["model"].tolist() == TINY[:1]
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_profile_variants_reports_each_row_as_it_finishes() -> None:
    seen: list[str] = []
    rows = profile_variants(
        TINY[:1], threads=1, repeats=3, warmup=0, rng=0, progress=False, on_row=lambda r: seen.append(r.model)
    )
    assert seen == [row.model for row in rows] == TINY[:1]
    assert torch.get_num_threads() >= 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"variants": ["mobilenet_v1_0.5_128"]}, "valid names"),
        ({"variants": TINY[:1] * 2}, "repeats"),
        ({"variants": []}, "at least one"),
        ({"repeats": 2}, "repeats"),
        ({"threads": 0}, "threads"),
        ({"warmup": -1}, "warmup"),
        ({"idle_gap_ms": -1.0}, "idle_gap_ms"),
        ({"idle_gap_ms": float("nan")}, "idle_gap_ms"),
    ],
)
def test_profile_variants_refuses_bad_arguments(kwargs: dict, match: str) -> None:
    arguments = {"variants": TINY[:1], "threads": 1, "repeats": 3, "warmup": 0} | kwargs
    with pytest.raises(ValueError, match=match):
        profile_variants(**arguments, progress=False)


def test_write_profile_refuses_bad_metadata_and_paths_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    rows = [ProfileRow("mobilenet_v1_1.0_224", 2.0, 1.0, 3.0, 3)]
    metadata = metadata_for(path)
    with pytest.raises(ValueError, match="cpu_model"):
        write_profile(path, rows, {k: v for k, v in metadata.items() if k != "cpu_model"})
    with pytest.raises(ValueError, match="one-line"):
        write_profile(path, rows, metadata | {"machine": "two\nlines"})
    with pytest.raises(ValueError, match=r"\.csv"):
        write_profile(tmp_path / "p.txt", rows, metadata)
    with pytest.raises(ValueError, match="does not exist"):
        write_profile(tmp_path / "missing" / "p.csv", rows, metadata)
    assert list(tmp_path.iterdir()) == []


# --- summaries ---------------------------------------------------------------------------------------------


def small_profile() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": [
                "mobilenet_v1_1.0_224",
                "mobilenet_v1_0.25_128",
                "mobilenet_v1_1.0_224_quant",
                "mobilenet_v1_0.25_128_quant",
            ],
            "median_ms": [10.0, 1.0, 2.0, 0.5],
        }
    )


def test_summarize_profile_gives_float32_over_int8_per_variant() -> None:
    summary = summarize_profile(small_profile(), published_table())
    assert summary["model"].tolist() == ["mobilenet_v1_1.0_224", "mobilenet_v1_0.25_128"]
    assert summary["float32_over_int8"].tolist() == [5.0, 2.0]
    assert summary["resolution"].tolist() == [224, 128]


def test_spearman_macs_latency_on_a_hand_computed_case() -> None:
    rho = spearman_macs_latency(small_profile(), published_table()).set_index("subset")
    assert rho.loc["float32", "spearman_rho"] == pytest.approx(1.0)
    assert rho.loc["int8", "spearman_rho"] == pytest.approx(1.0)
    # MAC ranks (3.5, 1.5, 3.5, 1.5) against latency ranks (4, 2, 3, 1): 4 / (2 * sqrt(5)).
    assert rho.loc["all", "spearman_rho"] == pytest.approx(2 / math.sqrt(5))
    assert rho["n_variants"].tolist() == [2, 2, 4]


def test_summaries_refuse_models_missing_from_the_macs_table() -> None:
    table = published_table()
    with pytest.raises(ValueError, match=r"mobilenet_v1_0\.25_128_quant"):
        spearman_macs_latency(small_profile(), table[table["model"] != "mobilenet_v1_0.25_128_quant"])


def test_as_served_idles_before_every_timed_pass_and_times_it_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # As served: each timed pass follows the idle gap and nothing runs between the gap and the timed pass (the
    # back-to-back Timer runs untimed passes first, which would warm the caches the gap cooled).
    events: list[object] = []
    model = build_variant(TINY[0], rng=0)
    counted = lambda x: events.append("pass") or model(x)  # noqa: E731
    monkeypatch.setattr(profiling.time, "sleep", lambda s: events.append(s))
    example = torch.zeros((1, 3, 128, 128))
    latencies = profiling.measure_latency_ms(
        counted, example, threads=1, repeats=3, warmup=1, idle_gap_ms=250.0
    )
    assert events == ["pass", 0.25, "pass", 0.25, "pass", 0.25, "pass"]
    assert latencies.shape == (3,) and (latencies > 0).all()
    events.clear()
    profiling.measure_latency_ms(counted, example, threads=1, repeats=3, warmup=0)  # back to back: no sleep
    assert 0.25 not in events


def _quick_profile_argv(path: Path) -> list[str]:
    """``orchlib profile`` at the smallest size, writing ``path`` (add ``--variants`` and options)."""
    return [
        "profile",
        "--threads",
        "1",
        "--repeats",
        "3",
        "--warmup",
        "0",
        "--no-progress",
        "--out",
        str(path),
    ]


def test_cli_as_served_records_its_gap_in_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gaps = []
    measure = profiling.measure_latency_ms

    def recording(*args, **kwargs) -> np.ndarray:
        gaps.append(args[5] if len(args) > 5 else kwargs.get("idle_gap_ms", 0.0))
        return measure(*args[:5])  # timed back to back here: the gap itself is checked above

    monkeypatch.setattr(profiling, "measure_latency_ms", recording)
    path = tmp_path / "served.csv"
    argv = _quick_profile_argv(path)
    assert cli.main([*argv, "--variants", TINY[0], "--as-served"]) == 0
    metadata, _ = read_profile_file(path)
    assert gaps == [profiling.AS_SERVED_GAP_MS]
    assert metadata["idle_gap_ms"] == f"{profiling.AS_SERVED_GAP_MS:g}"
    assert metadata["command"].endswith(f"--as-served {profiling.AS_SERVED_GAP_MS:g} --out {path.as_posix()}")
    assert cli.main([*argv, "--variants", TINY[0], "--as-served", "50"]) == 0
    assert gaps[-1] == 50.0 and read_profile_file(path)[0]["idle_gap_ms"] == "50"


# --- command line ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--threads", "0"], "--threads"),
        (["--threads", str((os.cpu_count() or 1) + 1)], "--threads"),
        (["--threads", "one"], "--threads"),
        (["--repeats", "2"], "--repeats"),
        (["--variants", "mobilenet_v1_0.5_224"], "--variants"),
        (["--out", "no_such_folder/p.csv"], "--out"),
        (["--out", "profile.txt"], "--out"),
        (["--as-served", "-5"], "--as-served"),
        (["--as-served", "soon"], "--as-served"),
    ],
)
def test_cli_refuses_bad_arguments(
    arguments: list[str],
    named: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # relative --out paths resolve inside tmp_path
    options = {"--threads": "1", "--repeats": "3", "--out": "p.csv"}
    options |= dict(zip(arguments[::2], arguments[1::2], strict=True))
    argv = ["profile", *(part for item in options.items() for part in item)]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {named}:" in error
    assert "Traceback" not in error
    assert list(tmp_path.iterdir()) == []


def test_cli_ctrl_c_keeps_finished_rows_and_exits_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    measure = profiling.measure_latency_ms
    calls = []

    def measure_then_interrupt(*args, **kwargs) -> np.ndarray:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second variant is being timed
        return measure(*args, **kwargs)

    monkeypatch.setattr(profiling, "measure_latency_ms", measure_then_interrupt)
    path = tmp_path / "x86_1thread.csv"
    argv = _quick_profile_argv(path)
    assert cli.main([*argv, "--variants", *TINY]) == 130
    assert "interrupted: 1 of 2 variants finished" in capsys.readouterr().err
    metadata, table = read_profile_file(path)
    assert table["model"].tolist() == TINY[:1]
    assert metadata["command"].startswith("python -m orchlib profile --threads 1 --repeats 3 --warmup 0")
