"""The committed data files agree with the reference folder and with data/build_data.py.

Checks that need the reference folder (``../shared/reference`` relative to the repository root, as laid out
for developers and CI) are skipped with a reason when it is absent; the rest check the committed files
against each other.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT / "data"
REFERENCE = REPO_ROOT.parent / "shared" / "reference"
needs_reference = pytest.mark.skipif(
    not REFERENCE.is_dir(),
    reason=f"reference folder {REFERENCE} is absent (CI lays it at ../shared/reference)",
)

THREEG_KINDS = ("3g_bus", "3g_car", "3g_ferry", "3g_metro", "3g_train", "3g_tram")


def _load_build_data() -> ModuleType:
    """Import data/build_data.py (a script, not a package module)."""
    spec = importlib.util.spec_from_file_location("orchlib_build_data", DATA / "build_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is created
    spec.loader.exec_module(module)
    return module


build_data = _load_build_data()


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, comment="#")


def _comment_lines(path: Path) -> list[str]:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("# "):
            break
        lines.append(line[2:])
    return lines


def _metadata(path: Path) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in _comment_lines(path))


def _trace(path: Path) -> np.ndarray:
    return np.loadtxt(path, ndmin=2)


@pytest.fixture(scope="module")
def models() -> pd.DataFrame:
    return _read(DATA / "models" / "mobilenet_v1.csv")


# --------------------------------------------------------------------------------------------- models


def test_models_has_the_32_variants_with_the_documented_columns(models: pd.DataFrame) -> None:
    assert list(models.columns) == list(build_data.MODEL_COLUMNS)
    assert len(models) == 32
    assert models["model"].is_unique
    widths = sorted(models["width_multiplier"].unique())
    assert widths == [0.25, 0.5, 0.75, 1.0]
    assert sorted(models["resolution"].unique()) == [128, 160, 192, 224]
    assert models.groupby(["width_multiplier", "resolution", "quantized"]).size().eq(1).all()


def test_models_quantized_flag_matches_name(models: pd.DataFrame) -> None:
    text = (DATA / "models" / "mobilenet_v1.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO("\n".join(x for x in text.splitlines() if not x.startswith("#")))))
    assert {row["quantized"] for row in rows} == {"true", "false"}
    for row in rows:
        assert (row["quantized"] == "true") == row["model"].endswith("_quant")


def test_models_payload_sizes_follow_their_formulas(models: pd.DataFrame) -> None:
    assert (models["input_bytes"] == models["resolution"] ** 2 * 3).all()
    assert (models["result_bytes"] == 1001 * 4).all()


@needs_reference
def test_models_primary_accuracy_is_the_tfslim_table(models: pd.DataFrame) -> None:
    tfslim = _read(REFERENCE / "mobilenet_v1_tfslim.csv")
    assert list(models["model"]) == list(tfslim["model"])
    for column in ("million_macs", "million_params", "width_multiplier", "resolution"):
        np.testing.assert_array_equal(models[column].to_numpy(), tfslim[column].to_numpy())
    np.testing.assert_array_equal(models["top1_pct"].to_numpy(), tfslim["top1"].to_numpy())
    np.testing.assert_array_equal(models["top5_pct"].to_numpy(), tfslim["top5"].to_numpy())


@needs_reference
def test_models_comparison_accuracy_is_the_tflite_table(models: pd.DataFrame) -> None:
    tflite = _read(REFERENCE / "tflite_hosted_models_pixel3.csv").set_index("model")
    np.testing.assert_array_equal(models["top1_tflite_pct"], tflite.loc[models["model"], "top1"])
    np.testing.assert_array_equal(models["top5_tflite_pct"], tflite.loc[models["model"], "top5"])


# ------------------------------------------------------------------------------------------- profiles


@pytest.mark.parametrize("name", ["pixel3_cpu4", "rpi4_cpu4"])
def test_profile_format(name: str, models: pd.DataFrame) -> None:
    path = DATA / "profiles" / f"{name}.csv"
    meta = _metadata(path)
    for key in ("name", "kind", "machine", "framework", "threads", "date", "source", "spread", "n_repeats"):
        assert meta.get(key), f"{path}: metadata line '# {key}: ...' missing or empty"
    assert meta["name"] == name
    assert meta["threads"] == "4"
    profile = _read(path)
    assert list(profile.columns) == list(build_data.PROFILE_COLUMNS)
    assert list(profile["model"]) == list(models["model"])
    assert (profile["median_ms"] > 0).all()
    assert (profile["p10_ms"] == profile["median_ms"]).all()
    assert (profile["p90_ms"] == profile["median_ms"]).all()
    assert profile["n_repeats"].dtype.kind == "i"
    assert (profile["n_repeats"] == 0).all()


def test_pixel3_metadata_matches_the_loader_contract() -> None:
    meta = _metadata(DATA / "profiles" / "pixel3_cpu4.csv")
    assert meta["kind"] == "published"
    assert meta["machine"] == "Google Pixel 3 (Snapdragon 845, Android 10), CPU, 4 threads"
    assert meta["framework"] == "TensorFlow Lite"
    assert meta["source"].startswith("tensorflow/tensorflow tensorflow/lite/g3doc/guide/hosted_models.md")


@needs_reference
def test_pixel3_latencies_are_the_tflite_cpu4_column() -> None:
    profile = _read(DATA / "profiles" / "pixel3_cpu4.csv")
    tflite = _read(REFERENCE / "tflite_hosted_models_pixel3.csv").set_index("model")
    np.testing.assert_array_equal(profile["median_ms"], tflite.loc[profile["model"], "cpu4_ms"])


def test_rpi4_is_pixel3_scaled_by_one_ratio_per_precision(models: pd.DataFrame) -> None:
    pixel3 = _read(DATA / "profiles" / "pixel3_cpu4.csv").set_index("model")["median_ms"]
    rpi4 = _read(DATA / "profiles" / "rpi4_cpu4.csv").set_index("model")["median_ms"]
    quantized = models.set_index("model")["quantized"]
    expected_float = build_data.RPI4_FP32_MOBILENET_V1_MS / pixel3["mobilenet_v1_1.0_224"]
    expected_int8 = build_data.RPI4_INT8_MOBILENET_V1_MS / pixel3["mobilenet_v1_1.0_224_quant"]
    for model, value in rpi4.items():
        ratio = expected_int8 if quantized[model] else expected_float
        assert value == pytest.approx(pixel3[model] * ratio, abs=5e-4), model
    # The measured anchors come out exactly.
    assert rpi4["mobilenet_v1_1.0_224"] == build_data.RPI4_FP32_MOBILENET_V1_MS
    assert rpi4["mobilenet_v1_1.0_224_quant"] == build_data.RPI4_INT8_MOBILENET_V1_MS
    # A Raspberry Pi 4 is the weaker end device.
    assert (rpi4 > pixel3.loc[rpi4.index]).all()


# --------------------------------------------------------------------------------------------- traces


@pytest.fixture(scope="module")
def index() -> pd.DataFrame:
    return _read(DATA / "traces" / "index.csv")


def test_trace_index_lists_exactly_the_trace_files(index: pd.DataFrame) -> None:
    assert list(index.columns) == list(build_data.INDEX_COLUMNS)
    on_disk = {p.name for p in (DATA / "traces").iterdir() if p.is_file()} - {"index.csv"}
    assert on_disk == set(index["file"])


def test_trace_selection_counts(index: pd.DataFrame) -> None:
    counts = index["kind"].value_counts().to_dict()
    assert counts == {**dict.fromkeys(THREEG_KINDS, 2), "broadband_fcc": 4, "broadband_fcc_outages": 2}
    assert (index["duration_s"] >= 200).all()
    assert index["source"].str.len().gt(0).all()


def test_trace_index_statistics_recompute(index: pd.DataFrame) -> None:
    for row in index.itertuples(index=False):
        data = _trace(DATA / "traces" / row.file)
        assert data.shape[1] == 2, row.file
        time_s, rate = data[:, 0], data[:, 1]
        assert row.n_samples == len(rate)
        assert row.duration_s == pytest.approx(time_s[-1] - time_s[0], abs=1e-3)
        assert row.mean_mbps == pytest.approx(rate.mean(), abs=1e-6)
        assert row.median_mbps == pytest.approx(np.median(rate), abs=1e-6)
        assert row.p10_mbps == pytest.approx(np.percentile(rate, 10), abs=1e-6)
        assert row.p90_mbps == pytest.approx(np.percentile(rate, 90), abs=1e-6)
        if row.kind == build_data.FCC_OUTAGE_KIND:  # an FCC trace with outages, kept as its own kind
            assert build_data.trace_kind(row.file) == build_data.FCC_KIND and (rate == 0).any(), row.file
        else:
            assert row.kind == build_data.trace_kind(row.file)


@needs_reference
def test_traces_are_byte_for_byte_copies(index: pd.DataFrame) -> None:
    for name in index["file"]:
        committed = (DATA / "traces" / name).read_bytes()
        assert committed == (REFERENCE / "network_traces" / name).read_bytes(), name


# ----------------------------------------------------------------------------------------- net levels


@pytest.fixture(scope="module")
def levels() -> pd.DataFrame:
    return _read(DATA / "network" / "levels.csv")


def test_levels_have_the_required_rows(levels: pd.DataFrame) -> None:
    assert list(levels.columns) == list(build_data.LEVEL_COLUMNS)
    assert {"wifi", "4g_good", "4g_weak", "3g", "wan_edge_cloud", "broadband_fcc"} <= set(levels["name"])
    assert levels["name"].is_unique
    for column in ("uplink_mbps", "downlink_mbps", "rtt_ms"):
        assert (levels[column] > 0).all(), column
    assert levels["source"].str.len().gt(20).all()
    assert not levels["source"].str.contains(",").any()


def test_levels_are_ordered_by_quality(levels: pd.DataFrame) -> None:
    level = levels.set_index("name")
    assert level.loc["wifi", "downlink_mbps"] > level.loc["4g_good", "downlink_mbps"]
    assert level.loc["4g_good", "downlink_mbps"] > level.loc["4g_weak", "downlink_mbps"]
    assert level.loc["4g_weak", "downlink_mbps"] > level.loc["3g", "downlink_mbps"]
    assert (level["uplink_mbps"] <= level["downlink_mbps"]).all()


@needs_reference
def test_trace_based_levels_are_pooled_medians(levels: pd.DataFrame) -> None:
    level = levels.set_index("name")
    paths = sorted((REFERENCE / "network_traces").iterdir())
    threeg = np.concatenate([_trace(p)[:, 1] for p in paths if not p.name.startswith("trace_")])
    fcc = np.concatenate([_trace(p)[:, 1] for p in paths if p.name.startswith("trace_")])
    assert level.loc["3g", "downlink_mbps"] == pytest.approx(np.median(threeg), abs=1e-6)
    assert level.loc["broadband_fcc", "downlink_mbps"] == pytest.approx(np.median(fcc), abs=1e-6)


# ------------------------------------------------------------------------------------ reproducibility


# Measured profiles (written by the orchlib profiler, not by build_data.py) share data/profiles/.
SCRIPT_PROFILES = {
    "profiles/pixel3_cpu4.csv",
    "profiles/rpi4_cpu4.csv",
    "profiles/pixel3_gpu.csv",
    "profiles/pixel3_nnapi.csv",
    "profiles/rpi4_tflite115.csv",
    "profiles/cloud_gpu_int8.csv",
}


def _committed_outputs() -> set[str]:
    folders = ("models", "profiles", "traces", "network", "payloads")
    found = {p.relative_to(DATA).as_posix() for f in folders for p in (DATA / f).rglob("*") if p.is_file()}
    return {p for p in found if not p.startswith("profiles/") or p in SCRIPT_PROFILES}


@needs_reference
def test_build_data_reproduces_the_committed_files(tmp_path: Path) -> None:
    assert build_data.main(["--reference", str(REFERENCE), "--out", str(tmp_path)]) == 0
    produced = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert produced == _committed_outputs()
    for relative in sorted(produced):
        assert (tmp_path / relative).read_bytes() == (DATA / relative).read_bytes(), relative


def test_committed_data_loads_with_orchlib_loaders(index: pd.DataFrame) -> None:
    from orchlib.system import profiles

    variants = profiles.load_variants()
    assert len(variants.names) == 32
    for name in ("pixel3_cpu4", "rpi4_cpu4"):
        profile = profiles.load_profile(name, variants)
        assert profile.name == name
    assert {"wifi", "4g_good", "4g_weak", "3g", "wan_edge_cloud"} <= set(profiles.load_network_levels())
    for name in index["file"]:
        assert len(profiles.load_trace(name).mbps) == index.set_index("file").loc[name, "n_samples"]


# ---------------------------------------------------------------------------------------- bad inputs


def test_missing_reference_folder_is_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="reference folder not found"):
        build_data.main(["--reference", str(tmp_path / "nowhere"), "--out", str(out)])
    assert not out.exists()


@needs_reference
def test_bad_reference_table_names_file_and_column_and_writes_nothing(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    shutil.copytree(REFERENCE, reference)
    tfslim = _read(reference / "mobilenet_v1_tfslim.csv").drop(columns=["top1"])
    tfslim.to_csv(reference / "mobilenet_v1_tfslim.csv", index=False)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"mobilenet_v1_tfslim\.csv: missing column\(s\) \['top1'\]"):
        build_data.main(["--reference", str(reference), "--out", str(out)])
    assert not out.exists()


def test_bad_trace_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bus.bad.log"
    path.write_text("0.0 1.0 2.0\n1.0 1.0 2.0\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bus\.bad\.log: expected two whitespace-separated numeric columns"):
        build_data.read_trace(path)
    path.write_text("0.0 fast\n", encoding="utf-8")
    with pytest.raises(ValueError, match="non-numeric"):
        build_data.read_trace(path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(ValueError, match="empty"):
        build_data.read_trace(path)
    with pytest.raises(ValueError, match="unknown trace family"):
        build_data.trace_kind("wifi.home.log")


def test_outage_traces_have_outages_and_load(index: pd.DataFrame) -> None:
    from orchlib.system.profiles import load_trace

    for name in index.loc[index["kind"] == "broadband_fcc_outages", "file"]:
        trace = load_trace(DATA / "traces" / name)
        assert (trace.mbps == 0).any() and (trace.mbps > 0).any(), name
    for name in index.loc[index["kind"] != "broadband_fcc_outages", "file"]:
        assert (load_trace(DATA / "traces" / name).mbps > 0).all(), name
