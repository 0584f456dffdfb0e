"""Build orchlib's data folder from the reference files (facts published or measured by others).

Every derived number in ``data/`` comes from this script; nothing there is typed by hand. Numbers that
cannot be computed from the reference folder (the Raspberry Pi 4 measurement, the steady network levels)
are written below as named constants, each next to the public source it was read from, or marked as an
assumption with its reason.

Usage (from the repository root)::

    .venv/bin/python data/build_data.py --reference ../shared/reference
    .venv/bin/python data/build_data.py --out /tmp/data   # write elsewhere (used by the tests)

Outputs, relative to ``--out`` (default: this script's folder, i.e. ``data/``):

- ``models/mobilenet_v1.csv``: the 32 MobileNetV1 variants, accuracy, MACs, parameters, payload sizes.
- ``profiles/pixel3_cpu4.csv``: published Pixel 3 TFLite CPU latencies (4 threads).
- ``profiles/rpi4_cpu4.csv``: Raspberry Pi 4 latencies derived from the Pixel 3 profile and a published
  Raspberry Pi 4 MobileNetV1 measurement.
- ``traces/``: a curated subset of the throughput traces, copied byte for byte, plus ``traces/index.csv``.
- ``network/levels.csv``: named steady network conditions.

All inputs are read and checked and all outputs computed before the first file is written, so a bad
input leaves the output folder untouched; each file is then written atomically (temp file + os.replace).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).resolve().parent
REPO_ROOT = DATA_DIR.parent
DEFAULT_REFERENCE = REPO_ROOT.parent / "shared" / "reference"

TFSLIM_FILE = "mobilenet_v1_tfslim.csv"
TFLITE_FILE = "tflite_hosted_models_pixel3.csv"
TRACES_DIR = "network_traces"

TFSLIM_COLUMNS = (
    "model",
    "width_multiplier",
    "resolution",
    "quantized",
    "million_macs",
    "million_params",
    "top1",
    "top5",
)
TFLITE_COLUMNS = (
    "model",
    "family",
    "width_multiplier",
    "resolution",
    "quantized",
    "top1",
    "top5",
    "cpu4_ms",
    "gpu_ms",
    "nnapi_ms",
)
MODEL_COLUMNS = (
    "model",
    "width_multiplier",
    "resolution",
    "quantized",
    "million_macs",
    "million_params",
    "top1_pct",
    "top5_pct",
    "top1_tflite_pct",
    "top5_tflite_pct",
    "input_bytes",
    "result_bytes",
)
PROFILE_COLUMNS = ("model", "median_ms", "p10_ms", "p90_ms", "n_repeats")
INDEX_COLUMNS = (
    "file",
    "kind",
    "source",
    "duration_s",
    "n_samples",
    "mean_mbps",
    "median_mbps",
    "p10_mbps",
    "p90_mbps",
)
LEVEL_COLUMNS = ("name", "uplink_mbps", "downlink_mbps", "rtt_ms", "source")
PAYLOAD_COLUMNS = ("resolution", "quality", "median_bytes", "p10_bytes", "p90_bytes", "n_images")

N_VARIANTS = 32
# The payload is the raw 8-bit RGB input tensor at the model's own resolution: the device resizes
# before sending, so a smaller-resolution variant also costs less to upload.
BYTES_PER_PIXEL = 3
# TF-slim MobileNetV1 heads have 1001 classes (1000 ImageNet classes + background); the result sent
# back is their float32 score vector.
N_CLASSES = 1001
BYTES_PER_SCORE = 4

# Decimal places kept in written files: latencies to the microsecond, throughputs to the bit/s.
MS_DECIMALS = 3
MBPS_DECIMALS = 6

THREEG_KINDS = ("bus", "car", "ferry", "metro", "train", "tram")
FCC_KIND = "broadband_fcc"
THREEG_SOURCE = "Riiser et al. MMSys 2013 (3G/HSDPA commutes; Norway) as cooked by hongzimao/pensieve"
FCC_SOURCE = "FCC Measuring Broadband America 2016 raw data as cooked by hongzimao/pensieve"
# How many traces of each kind to keep, and the shortest acceptable trace (s).
N_TRACES_PER_3G_KIND = 2
N_TRACES_FCC = 4
#: FCC traces with outages (zero-throughput samples), kept apart so the subset above stays as it was.
FCC_OUTAGE_KIND = "broadband_fcc_outages"
N_TRACES_FCC_OUTAGES = 2
MIN_TRACE_DURATION_S = 200.0

# --- Published Raspberry Pi 4 measurement (google/XNNPACK README, "Performance > Raspberry Pi") -------
# Multi-threaded end2end-bench on the 4 Cortex-A72 cores, models with random weights, benchmarked on
# Feb 8, 2022. We use the ARM64 column because the Pixel 3 numbers are from an arm64 build too.
XNNPACK_README = (
    "https://github.com/google/XNNPACK/blob/master/README.md (section Performance > Raspberry Pi)"
)
RPI4_FP32_MOBILENET_V1_MS = 77.0  # "FP32 MobileNet v1 1.0X", column "RPi 4 (BCM2711, ARM64), ms"
RPI4_INT8_MOBILENET_V1_MS = 24.0  # "INT8 MobileNet v1 1.0X" (per-channel quantized), same column
RPI4_FP32_MOBILENET_V1_32BIT_MS = 72.0  # same table, 32-bit Raspbian column (reported, not used)
RPI4_INT8_MOBILENET_V1_32BIT_MS = 29.0  # same table, 32-bit Raspbian column (reported, not used)
RPI4_REFERENCE_FLOAT = "mobilenet_v1_1.0_224"
RPI4_REFERENCE_QUANT = "mobilenet_v1_1.0_224_quant"

# --- MLPerf Inference v0.5 results (mlcommons/inference_results_v0.5, commit f5acb8be3da3) -------------
MLPERF_V05 = "mlcommons/inference_results_v0.5 (commit f5acb8be3da3ebc13cf6ba783cce371f96d275ac)"
# Open division, dividiti, system "rpi4-tflite-v1.15" (Raspberry Pi 4, 4x Cortex-A72 at 1.5 GHz, TFLite
# v1.15.0-rc2, 32-bit Raspbian Buster; open/dividiti/systems/rpi4-tflite-v1.15.json), SingleStream, one
# directory per variant: open/dividiti/results/rpi4-tflite-v1.15/mobilenet-v1-<width>-<resolution>[-quantized]/
# singlestream/performance/run_1/mlperf_log_summary.txt, lines "50.00 percentile latency (ns)" and
# "90.00 percentile latency (ns)". Copied from those files by a script, not typed.
MLPERF_RPI4_TFLITE115_NS = {  # model: (p50 ns, p90 ns), performance/run_1/mlperf_log_summary.txt
    "mobilenet_v1_0.25_128": (17643169, 22215820),
    "mobilenet_v1_0.25_128_quant": (11632931, 11743001),
    "mobilenet_v1_0.25_160": (28777403, 33006254),
    "mobilenet_v1_0.25_160_quant": (18035552, 18338414),
    "mobilenet_v1_0.25_192": (38065216, 44268092),
    "mobilenet_v1_0.25_192_quant": (25135783, 26404675),
    "mobilenet_v1_0.25_224": (53450738, 61970130),
    "mobilenet_v1_0.25_224_quant": (34510042, 37981116),
    "mobilenet_v1_0.50_128": (50306169, 56765577),
    "mobilenet_v1_0.50_128_quant": (27160169, 29271774),
    "mobilenet_v1_0.50_160": (73816396, 81892183),
    "mobilenet_v1_0.50_160_quant": (43033285, 51467895),
    "mobilenet_v1_0.50_192": (110817974, 127635583),
    "mobilenet_v1_0.50_192_quant": (60260664, 71101125),
    "mobilenet_v1_0.50_224": (144369961, 159875071),
    "mobilenet_v1_0.50_224_quant": (81654505, 96162314),
    "mobilenet_v1_0.75_128": (103735214, 113677839),
    "mobilenet_v1_0.75_128_quant": (49068817, 58146673),
    "mobilenet_v1_0.75_160": (142129559, 153687997),
    "mobilenet_v1_0.75_160_quant": (77316478, 90400015),
    "mobilenet_v1_0.75_192": (178330785, 193162356),
    "mobilenet_v1_0.75_192_quant": (108057837, 125479302),
    "mobilenet_v1_0.75_224": (231014819, 245996069),
    "mobilenet_v1_0.75_224_quant": (148666754, 166375960),
    "mobilenet_v1_1.0_128": (169017893, 184357742),
    "mobilenet_v1_1.0_128_quant": (76257206, 89956381),
    "mobilenet_v1_1.0_160": (219849196, 243050060),
    "mobilenet_v1_1.0_160_quant": (120478841, 137936197),
    "mobilenet_v1_1.0_192": (292478633, 312331932),
    "mobilenet_v1_1.0_192_quant": (168172591, 185245525),
    "mobilenet_v1_1.0_224": (376554636, 394599296),
    "mobilenet_v1_1.0_224_quant": (239154985, 254926877),
}
# Closed division, NVIDIA, system "Xavier" (Jetson AGX Xavier, TensorRT, int8), benchmark "mobilenet"
# (MobileNetV1 1.0/224), SingleStream: closed/NVIDIA/results/Xavier/mobilenet/SingleStream/performance/run_1/
# mlperf_log_summary.txt, "50.00 percentile latency (ns) : 571933", "90.00 percentile latency (ns) : 584509".
XAVIER_INT8_MOBILENET_V1_P50_NS = 571933
XAVIER_INT8_MOBILENET_V1_P90_NS = 584509
XAVIER_REFERENCE = "mobilenet_v1_1.0_224_quant"

# --- Payload photographs (scikit-image sample data, encoded with Pillow) -----------------------------
#: natural colour photographs shipped inside scikit-image (no download); see data/README.md.
PAYLOAD_IMAGES = ("astronaut", "chelsea", "coffee", "rocket")
#: square crops per image: the largest centred square and four corner squares of 80 % of the short side.
PAYLOAD_CROP_FRACTION = 0.8
#: JPEG qualities: Pillow's default (75) and a high-quality setting (90).
PAYLOAD_QUALITIES = (75, 90)
PAYLOAD_RESOLUTIONS = (128, 160, 192, 224)

# --- Published network figures used for levels that the traces cannot give --------------------------
OOKLA_SEP2020 = (
    "Ookla Speedtest Global Index September 2020 global means (speedtest.net/global-index; as reported at "
    "my-financial-wealth.com/2020/10/25/the-global-mobile-and-broadband-internet-speed-ranking/)"
)
OOKLA_MOBILE_DOWN_MBPS = 35.96
OOKLA_MOBILE_UP_MBPS = 11.22
OOKLA_MOBILE_LATENCY_MS = 40.0
OOKLA_FIXED_DOWN_MBPS = 85.73
OOKLA_FIXED_UP_MBPS = 45.74
OOKLA_FIXED_LATENCY_MS = 21.0
OOKLA_CONSISTENCY = (
    "Ookla Consistency thresholds (share of mobile results with at least 5 Mbps down and 1 Mbps up) as "
    "quoted from Ookla's Q3 2021 US mobile report at androidcentral.com/"
    "t-mobile-extends-its-download-speed-lead-ooklas-q3-mobile-report"
)
OOKLA_CONSISTENCY_DOWN_MBPS = 5.0
OOKLA_CONSISTENCY_UP_MBPS = 1.0
PENSIEVE_ENV = (
    "hongzimao/pensieve sim/env.py LINK_RTT = 80 ms (the RTT Pensieve's simulator adds to these traces)"
)
PENSIEVE_LINK_RTT_MS = 80.0
TS25306 = "3GPP TS 25.306 peak rates: HSDPA category 10 = 14.0 Mbit/s and HSUPA category 6 = 5.76 Mbit/s"
HSDPA_CAT10_MBPS = 14.0
HSUPA_CAT6_MBPS = 5.76
# Edge-to-cloud WAN: no per-path public median was found (see docs/assumptions.md).
WAN_MBPS = 1000.0
WAN_RTT_MS = 30.0
AWS_BANDWIDTH_DOC = "docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-instance-network-bandwidth.html"


@dataclass(frozen=True)
class Outputs:
    """Everything the script writes, computed before anything is written.

    Attributes:
        csv_files: Relative output path -> full text of the file (comment header + CSV).
        copies: Relative output path -> source file to copy byte for byte.
    """

    csv_files: dict[str, str]
    copies: dict[str, Path]
    #: relative output path -> bytes computed by the script (the sample JPEG payloads).
    binary_files: dict[str, bytes] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------
# Reading and checking the reference files
# ----------------------------------------------------------------------------------------------------


def read_reference_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """Read one reference CSV (``#`` comment lines allowed) and check its columns.

    Args:
        path: The CSV file.
        required: Column names that must be present.

    Returns:
        The table.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If a required column is missing.
    """
    if not path.is_file():
        raise FileNotFoundError(f"reference file not found: {path}")
    table = pd.read_csv(path, comment="#")
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected at least {list(required)}")
    return table


def read_trace(path: Path) -> pd.DataFrame:
    """Read one throughput trace: two whitespace-separated columns, time (s) and throughput (Mbit/s).

    Args:
        path: The trace file.

    Returns:
        A table with float columns ``time_s`` and ``throughput_mbps``.

    Raises:
        ValueError: If the file does not have exactly two numeric columns, is empty, has negative
            throughput or decreasing time stamps.
    """
    expected = f"{path}: expected two whitespace-separated numeric columns (time_s, throughput_mbps)"
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, comment="#")
    except pd.errors.EmptyDataError:
        raise ValueError(f"{expected}; the file is empty") from None
    if table.shape[0] == 0 or table.shape[1] != 2:
        raise ValueError(f"{expected}; got {table.shape[1]} column(s)")
    table.columns = ["time_s", "throughput_mbps"]
    try:
        table = table.astype(float)
    except ValueError:
        raise ValueError(f"{expected}; found a non-numeric value") from None
    if (table["throughput_mbps"] < 0).any():
        raise ValueError(f"{path}: negative throughput_mbps")
    if (np.diff(table["time_s"].to_numpy()) < 0).any():
        raise ValueError(f"{path}: time_s must be non-decreasing")
    return table


def trace_kind(file_name: str) -> str:
    """Classify a trace by its file name.

    Args:
        file_name: Base name, e.g. ``bus.ljansbakken-oslo-report.2010-09-28_1407CEST.log`` or
            ``trace_10322_http---edition.cnn.com``.

    Returns:
        ``3g_<mode>`` for the Norwegian 3G traces, ``broadband_fcc`` for the FCC traces.

    Raises:
        ValueError: If the name matches neither family.
    """
    if file_name.startswith("trace_"):
        return FCC_KIND
    mode = file_name.split(".", 1)[0]
    if mode in THREEG_KINDS:
        return f"3g_{mode}"
    raise ValueError(
        f"unknown trace family for file {file_name!r}: expected trace_* or one of {THREEG_KINDS}"
    )


def trace_stats(table: pd.DataFrame) -> dict[str, float | int]:
    """Summary statistics of one trace.

    ``duration_s`` is the span of the time stamps (last minus first); percentiles use numpy's default
    linear interpolation.

    Args:
        table: A trace as returned by :func:`read_trace`.

    Returns:
        ``duration_s``, ``n_samples``, ``mean_mbps``, ``median_mbps``, ``p10_mbps``, ``p90_mbps``.
    """
    time_s = table["time_s"].to_numpy()
    rate = table["throughput_mbps"].to_numpy()
    return {
        "duration_s": round(float(time_s[-1] - time_s[0]), MS_DECIMALS),
        "n_samples": len(rate),
        "mean_mbps": round(float(np.mean(rate)), MBPS_DECIMALS),
        "median_mbps": round(float(np.median(rate)), MBPS_DECIMALS),
        "p10_mbps": round(float(np.percentile(rate, 10)), MBPS_DECIMALS),
        "p90_mbps": round(float(np.percentile(rate, 90)), MBPS_DECIMALS),
    }


def read_all_traces(folder: Path) -> dict[str, pd.DataFrame]:
    """Read every trace in the reference trace folder.

    Args:
        folder: ``<reference>/network_traces``.

    Returns:
        File name -> trace table, sorted by file name.

    Raises:
        FileNotFoundError: If the folder does not exist or holds no file.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"trace folder not found: {folder}")
    paths = sorted(p for p in folder.iterdir() if p.is_file())
    if not paths:
        raise FileNotFoundError(f"trace folder is empty: {folder}")
    return {p.name: read_trace(p) for p in paths}


# ----------------------------------------------------------------------------------------------------
# Models and compute profiles
# ----------------------------------------------------------------------------------------------------


def build_models(tfslim: pd.DataFrame, tflite: pd.DataFrame) -> pd.DataFrame:
    """Join the TF-slim table (primary accuracy) with the TFLite table (accuracy kept for comparison).

    Args:
        tfslim: ``mobilenet_v1_tfslim.csv``.
        tflite: ``tflite_hosted_models_pixel3.csv``.

    Returns:
        One row per variant, columns :data:`MODEL_COLUMNS`, in the TF-slim table's order.

    Raises:
        ValueError: If the TF-slim table does not hold exactly 32 distinct variants or a variant has no
            TFLite row.
    """
    if len(tfslim) != N_VARIANTS or tfslim["model"].nunique() != N_VARIANTS:
        raise ValueError(f"{TFSLIM_FILE}: expected {N_VARIANTS} distinct variants, got {len(tfslim)} rows")
    lite = tflite[tflite["family"] == "mobilenet_v1"].set_index("model")
    missing = sorted(set(tfslim["model"]) - set(lite.index))
    if missing:
        raise ValueError(f"{TFLITE_FILE}: no row for variant(s) {missing}")
    models = pd.DataFrame(
        {
            "model": tfslim["model"],
            "width_multiplier": tfslim["width_multiplier"].astype(float),
            "resolution": tfslim["resolution"].astype(int),
            "quantized": tfslim["quantized"].map(_as_bool),
            "million_macs": tfslim["million_macs"],
            "million_params": tfslim["million_params"].astype(float),
            "top1_pct": tfslim["top1"].astype(float),
            "top5_pct": tfslim["top5"].astype(float),
            "top1_tflite_pct": lite.loc[tfslim["model"], "top1"].to_numpy(dtype=float),
            "top5_tflite_pct": lite.loc[tfslim["model"], "top5"].to_numpy(dtype=float),
        }
    )
    models["input_bytes"] = models["resolution"] * models["resolution"] * BYTES_PER_PIXEL
    models["result_bytes"] = N_CLASSES * BYTES_PER_SCORE
    return models.reset_index(drop=True)


def _as_bool(value: object) -> bool:
    """Parse a true/false cell (pandas may already have turned it into a bool)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError(f"quantized: expected true/false, got {value!r}")
    return text == "true"


def build_pixel3_profile(models: pd.DataFrame, tflite: pd.DataFrame) -> pd.DataFrame:
    """End-device profile from the TFLite table's ``cpu4_ms`` column (Pixel 3, 4 CPU threads).

    Args:
        models: Output of :func:`build_models` (fixes the variant order).
        tflite: ``tflite_hosted_models_pixel3.csv``.

    Returns:
        Columns :data:`PROFILE_COLUMNS`; the spread is not published, so p10 = p90 = median and
        ``n_repeats`` is 0.

    Raises:
        ValueError: If a variant has no ``cpu4_ms`` value.
    """
    cpu4 = tflite.set_index("model")["cpu4_ms"].loc[models["model"]].astype(float)
    if cpu4.isna().any() or (cpu4 <= 0).any():
        bad = list(cpu4[cpu4.isna() | (cpu4 <= 0)].index)
        raise ValueError(f"{TFLITE_FILE}: cpu4_ms missing or not positive for {bad}")
    return _profile(models["model"], cpu4.to_numpy())


def rpi4_ratios(pixel3: pd.DataFrame) -> tuple[float, float]:
    """RPi 4 / Pixel 3 latency ratios for float and int8 MobileNetV1 1.0/224.

    Args:
        pixel3: Output of :func:`build_pixel3_profile`.

    Returns:
        ``(ratio_float, ratio_int8)``: the XNNPACK README's Raspberry Pi 4 latency divided by the Pixel 3
        TFLite latency of the same precision.
    """
    median = pixel3.set_index("model")["median_ms"]
    return (
        RPI4_FP32_MOBILENET_V1_MS / float(median[RPI4_REFERENCE_FLOAT]),
        RPI4_INT8_MOBILENET_V1_MS / float(median[RPI4_REFERENCE_QUANT]),
    )


def build_rpi4_profile(models: pd.DataFrame, pixel3: pd.DataFrame) -> pd.DataFrame:
    """Raspberry Pi 4 profile: each Pixel 3 latency times the measured RPi 4 / Pixel 3 ratio.

    Float variants use the FP32 ratio, quantized variants the INT8 ratio; the ratio is assumed the
    same for every width and resolution (only 1.0/224 was measured on the Raspberry Pi 4).

    Args:
        models: Output of :func:`build_models`.
        pixel3: Output of :func:`build_pixel3_profile`.

    Returns:
        Columns :data:`PROFILE_COLUMNS`.
    """
    ratio_float, ratio_int8 = rpi4_ratios(pixel3)
    ratio = np.where(models["quantized"].to_numpy(dtype=bool), ratio_int8, ratio_float)
    return _profile(models["model"], pixel3["median_ms"].to_numpy(dtype=float) * ratio)


def _profile(names: pd.Series, median_ms: np.ndarray) -> pd.DataFrame:
    """A profile table with no published spread (p10 = p90 = median, n_repeats = 0)."""
    median = np.round(median_ms, MS_DECIMALS)
    return pd.DataFrame(
        {
            "model": names.to_numpy(),
            "median_ms": median,
            "p10_ms": median,
            "p90_ms": median,
            "n_repeats": np.zeros(len(median), dtype=int),
        }
    )


def build_pixel3_accelerator_profile(models: pd.DataFrame, tflite: pd.DataFrame, column: str) -> pd.DataFrame:
    """Pixel 3 profile on an accelerator: only the variants the published column reports.

    ``gpu_ms`` (GPU delegate) lists float variants only and ``nnapi_ms`` is used for the 8-bit variants only
    (the issue's device classes): a variant without a row cannot run on that class and is masked out.

    Raises:
        ValueError: a variant of the chosen precision has no positive value in the column.
    """
    want_quant = column == "nnapi_ms"
    chosen = models[models["quantized"].to_numpy(dtype=bool) == want_quant]
    values = tflite.set_index("model")[column].reindex(chosen["model"]).astype(float)
    if values.isna().any() or (values <= 0).any():
        raise ValueError(
            f"{TFLITE_FILE}: {column} missing or not positive for {list(values[values.isna()].index)}"
        )
    return _profile(chosen["model"], values.to_numpy())


def build_mlperf_rpi4_profile(models: pd.DataFrame) -> pd.DataFrame:
    """Raspberry Pi 4 with TFLite 1.15 (MLPerf v0.5 open, dividiti): measured p50 and p90 per variant.

    The summaries give p50 and p90 but no p10; p10 is the log-normal mirror ``p50**2 / p90`` (the compute-time
    noise model of the latency model, assumption L7).
    """
    missing = sorted(set(models["model"]) - set(MLPERF_RPI4_TFLITE115_NS))
    if missing:
        raise ValueError(f"MLPERF_RPI4_TFLITE115_NS lacks {missing}")
    p50 = np.array([MLPERF_RPI4_TFLITE115_NS[m][0] for m in models["model"]], dtype=float) / 1e6
    p90 = np.array([MLPERF_RPI4_TFLITE115_NS[m][1] for m in models["model"]], dtype=float) / 1e6
    median = np.round(p50, MS_DECIMALS)
    return pd.DataFrame(
        {
            "model": models["model"].to_numpy(),
            "median_ms": median,
            "p10_ms": np.round(p50**2 / p90, MS_DECIMALS),
            "p90_ms": np.round(p90, MS_DECIMALS),
            "n_repeats": np.zeros(len(median), dtype=int),
        }
    )


def build_cloud_accelerator_profile(models: pd.DataFrame, tflite: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """A server accelerator for the 8-bit variants, anchored at MLPerf v0.5's Jetson AGX Xavier result.

    Only MobileNetV1 1.0/224 int8 was measured (0.572 ms median). The other 8-bit variants keep the
    per-variant *shape* of the Pixel 3 NNAPI column (a published accelerator's fixed overhead plus per-MAC
    cost), scaled so 1.0/224 equals the Xavier median: ``median = nnapi_ms * (xavier / nnapi_1.0_224)``.
    Float variants have no accelerator measurement and are not offered on this tier.

    Returns:
        (profile, scale factor).
    """
    nnapi = build_pixel3_accelerator_profile(models, tflite, "nnapi_ms").set_index("model", drop=False)
    scale = XAVIER_INT8_MOBILENET_V1_P50_NS / 1e6 / float(nnapi.loc[XAVIER_REFERENCE, "median_ms"])
    p90_ratio = XAVIER_INT8_MOBILENET_V1_P90_NS / XAVIER_INT8_MOBILENET_V1_P50_NS
    median = np.round(nnapi["median_ms"].to_numpy(float) * scale, MS_DECIMALS + 1)
    profile = pd.DataFrame(
        {
            "model": nnapi["model"].to_numpy(),
            "median_ms": median,
            "p10_ms": np.round(median / p90_ratio, MS_DECIMALS + 1),
            "p90_ms": np.round(median * p90_ratio, MS_DECIMALS + 1),
            "n_repeats": np.zeros(len(median), dtype=int),
        }
    )
    return profile, scale


def _square_crops(image: np.ndarray) -> list[np.ndarray]:
    """The centred largest square and the four corner squares of PAYLOAD_CROP_FRACTION of the short side."""
    h, w = image.shape[:2]
    side = min(h, w)
    crops = [image[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]]
    small = round(side * PAYLOAD_CROP_FRACTION)
    for top, left in ((0, 0), (0, w - small), (h - small, 0), (h - small, w - small)):
        crops.append(image[top : top + small, left : left + small])
    return crops


def build_payloads() -> tuple[pd.DataFrame, dict[str, bytes]]:
    """JPEG sizes of real photographs at each model resolution and quality, and one sample file per cell.

    Each of :data:`PAYLOAD_IMAGES` (scikit-image's bundled sample photographs) gives five square crops; each
    crop is resized with Pillow's bicubic filter to the model's resolution and encoded with Pillow's JPEG
    encoder (4:2:0 chroma subsampling, Pillow's default). The table gives the median, p10 and p90 of the
    byte counts (numpy linear-interpolation percentiles); the sample is the encoding whose size is nearest
    the median (used by ``orchlib profile-decode`` to measure decoding).

    Raises:
        ImportError: scikit-image or Pillow is not installed (``pip install -e .[test]``).
    """
    import io

    from PIL import Image
    from skimage import data as skdata

    crops = [crop for name in PAYLOAD_IMAGES for crop in _square_crops(getattr(skdata, name)())]
    rows, samples = [], {}
    for resolution in PAYLOAD_RESOLUTIONS:
        for quality in PAYLOAD_QUALITIES:
            encoded = []
            for crop in crops:
                image = Image.fromarray(np.ascontiguousarray(crop[..., :3])).convert("RGB")
                image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
                buffer = io.BytesIO()
                image.save(buffer, format="JPEG", quality=quality)
                encoded.append(buffer.getvalue())
            sizes = np.array([len(b) for b in encoded], dtype=float)
            median = float(np.median(sizes))
            rows.append(
                {
                    "resolution": resolution,
                    "quality": quality,
                    "median_bytes": round(median, 1),
                    "p10_bytes": round(float(np.percentile(sizes, 10)), 1),
                    "p90_bytes": round(float(np.percentile(sizes, 90)), 1),
                    "n_images": len(sizes),
                }
            )
            nearest = int(np.argmin(np.abs(sizes - median)))
            samples[f"payloads/samples/r{resolution}_q{quality}.jpg"] = encoded[nearest]
    return pd.DataFrame(rows, columns=list(PAYLOAD_COLUMNS)), samples


# ----------------------------------------------------------------------------------------------------
# Traces and network levels
# ----------------------------------------------------------------------------------------------------


def trace_table(traces: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Statistics of every trace, one row per file.

    Returns:
        Columns :data:`INDEX_COLUMNS` plus ``loadable``: whether every throughput sample is > 0 and the
        time stamps strictly increase (what the trace loader required before issue 12; a few FCC traces hold
        zero-throughput samples), and ``outages``: time stamps increase, some samples are 0 but not all
        (what the loader accepts since issue 12, as outages).
    """
    rows = []
    for name, table in traces.items():
        kind = trace_kind(name)
        source = FCC_SOURCE if kind == FCC_KIND else THREEG_SOURCE
        loadable = bool(
            (table["throughput_mbps"] > 0).all() and (np.diff(table["time_s"].to_numpy()) > 0).all()
        )
        rate = table["throughput_mbps"]
        outages = bool(
            (rate == 0).any()
            and (rate > 0).any()
            and (rate >= 0).all()
            and (np.diff(table["time_s"].to_numpy()) > 0).all()
        )
        rows.append(
            {
                "file": name,
                "kind": kind,
                "source": source,
                **trace_stats(table),
                "loadable": loadable,
                "outages": outages,
            }
        )
    return pd.DataFrame(rows, columns=[*INDEX_COLUMNS, "loadable", "outages"])


def select_traces(stats: pd.DataFrame) -> pd.DataFrame:
    """Pick the curated subset: per kind, the traces whose mean throughput is nearest evenly spaced quantiles.

    For a kind with ``k`` picks, eligible traces are those at least :data:`MIN_TRACE_DURATION_S` long
    that orchlib's trace loader accepts (``loadable``); pick ``j`` (``j = 0..k-1``) is the not-yet-picked eligible trace whose mean throughput is nearest the
    ``(j + 0.5) / k`` quantile of the eligible traces' means (ties broken by file name). With ``k = 2``
    that is the 25th and 75th percentile trace: typical conditions, not the extremes.

    Args:
        stats: Output of :func:`trace_table`.

    Returns:
        The selected rows (columns :data:`INDEX_COLUMNS`), ordered by kind then file name.

    Raises:
        ValueError: If a kind has fewer eligible traces than picks.
    """
    wanted = {f"3g_{mode}": N_TRACES_PER_3G_KIND for mode in THREEG_KINDS}
    wanted[FCC_KIND] = N_TRACES_FCC
    wanted[FCC_OUTAGE_KIND] = N_TRACES_FCC_OUTAGES
    # FCC traces with outages form their own kind, picked by the same rule among those with outages.
    stats = stats.assign(
        kind=np.where((stats["kind"] == FCC_KIND) & stats["outages"], FCC_OUTAGE_KIND, stats["kind"])
    )
    picked: list[pd.DataFrame] = []
    for kind, n_pick in wanted.items():
        usable = stats["outages"] if kind == FCC_OUTAGE_KIND else stats["loadable"]
        eligible = stats[(stats["kind"] == kind) & (stats["duration_s"] >= MIN_TRACE_DURATION_S) & usable]
        eligible = eligible.sort_values("file")
        if len(eligible) < n_pick:
            raise ValueError(
                f"trace kind {kind}: {len(eligible)} trace(s) of at least {MIN_TRACE_DURATION_S} s, need {n_pick}"
            )
        means = eligible["mean_mbps"].to_numpy()
        chosen: list[int] = []
        for j in range(n_pick):
            target = np.quantile(means, (j + 0.5) / n_pick)
            distance = np.abs(means - target)
            distance[chosen] = np.inf
            chosen.append(int(np.argmin(distance)))  # argmin returns the first (alphabetical) tie
        picked.append(eligible.iloc[sorted(chosen)])
    selected = pd.concat(picked).sort_values(["kind", "file"]).reset_index(drop=True)
    return selected[list(INDEX_COLUMNS)]


def pooled_median_mbps(traces: dict[str, pd.DataFrame], predicate: Callable[[str], bool]) -> float:
    """Median throughput over all samples of the traces whose kind satisfies ``predicate``.

    Args:
        traces: File name -> trace table.
        predicate: Takes a trace kind (see :func:`trace_kind`) and says whether to include it.

    Returns:
        The pooled median in Mbit/s.
    """
    samples = [t["throughput_mbps"].to_numpy() for n, t in traces.items() if predicate(trace_kind(n))]
    return float(np.median(np.concatenate(samples)))


def build_levels(traces: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Named steady network conditions, computed from the traces where possible, else cited.

    Args:
        traces: Every reference trace (file name -> table).

    Returns:
        Columns :data:`LEVEL_COLUMNS`. ``source`` holds no comma.
    """
    threeg_down = pooled_median_mbps(traces, lambda kind: kind.startswith("3g_"))
    fcc_down = pooled_median_mbps(traces, lambda kind: kind == FCC_KIND)
    # HSPA devices send less than they receive; the peak-rate ratio of the common categories stands in
    # for the (unpublished) ratio of achieved rates on these commutes.
    hspa_ratio = HSUPA_CAT6_MBPS / HSDPA_CAT10_MBPS
    fixed_ratio = OOKLA_FIXED_UP_MBPS / OOKLA_FIXED_DOWN_MBPS
    rows = [
        (
            "wifi",
            OOKLA_FIXED_UP_MBPS,
            OOKLA_FIXED_DOWN_MBPS,
            OOKLA_FIXED_LATENCY_MS,
            f"{OOKLA_SEP2020}: fixed broadband upload/download/latency (tests over home Wi-Fi or cable)",
        ),
        (
            "4g_good",
            OOKLA_MOBILE_UP_MBPS,
            OOKLA_MOBILE_DOWN_MBPS,
            OOKLA_MOBILE_LATENCY_MS,
            f"{OOKLA_SEP2020}: mobile upload/download/latency (mostly 4G in 2020)",
        ),
        (
            "4g_weak",
            OOKLA_CONSISTENCY_UP_MBPS,
            OOKLA_CONSISTENCY_DOWN_MBPS,
            2.0 * OOKLA_MOBILE_LATENCY_MS,
            f"rates: {OOKLA_CONSISTENCY}; rtt: assumption: twice the 4g_good latency because weak "
            "coverage adds HARQ retransmissions and scheduling delay (no public median for weak LTE found)",
        ),
        (
            "3g",
            threeg_down * hspa_ratio,
            threeg_down,
            PENSIEVE_LINK_RTT_MS,
            "downlink: computed: median throughput over all samples of all 3G traces (bus/car/ferry/metro/"
            f"train/tram) in the reference folder; uplink: assumption: downlink x {HSUPA_CAT6_MBPS}/"
            f"{HSDPA_CAT10_MBPS} from {TS25306}; rtt: {PENSIEVE_ENV}",
        ),
        (
            "broadband_fcc",
            fcc_down * fixed_ratio,
            fcc_down,
            PENSIEVE_LINK_RTT_MS,
            "downlink: computed: median throughput over all samples of all FCC traces in the reference "
            "folder; uplink: assumption: downlink x fixed upload/download ratio of "
            f"{OOKLA_SEP2020}; rtt: {PENSIEVE_ENV}",
        ),
        (
            "wan_edge_cloud",
            WAN_MBPS,
            WAN_MBPS,
            WAN_RTT_MS,
            "assumption: symmetric 1 Gbit/s edge-site fibre uplink (below the 5 Gbit/s single-flow cap of "
            f"{AWS_BANDWIDTH_DOC}) and 30 ms RTT to a cloud region on the same continent; no per-path "
            "public median found; payloads here are at most 150 kB so the bandwidth choice barely matters",
        ),
    ]
    levels = pd.DataFrame(rows, columns=list(LEVEL_COLUMNS))
    for column in ("uplink_mbps", "downlink_mbps"):
        levels[column] = levels[column].round(MBPS_DECIMALS)
    levels["rtt_ms"] = levels["rtt_ms"].round(MS_DECIMALS)
    if levels["source"].str.contains(",").any():
        raise ValueError("levels.csv: a source text contains a comma")
    return levels


# ----------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------


def render_csv(comments: Sequence[str], table: pd.DataFrame) -> str:
    """File text: each comment as a ``# `` line, then the CSV with a header, ``\\n`` line ends."""
    header = "".join(f"# {line}\n" for line in comments)
    body = table.to_csv(index=False, lineterminator="\n")
    return header + body


def _bool_text(table: pd.DataFrame, column: str) -> pd.DataFrame:
    """Copy of ``table`` with a bool column written as true/false."""
    out = table.copy()
    out[column] = out[column].map({True: "true", False: "false"})
    return out


def compute_outputs(reference: Path) -> Outputs:
    """Read and check every reference input and compute every output, writing nothing.

    Args:
        reference: The reference folder (holds the two MobileNet tables and ``network_traces/``).

    Returns:
        The outputs to write.

    Raises:
        FileNotFoundError: If the folder or one of its inputs is missing.
        ValueError: If an input is malformed (the message names the file and field).
    """
    if not reference.is_dir():
        raise FileNotFoundError(f"reference folder not found: {reference}")
    tfslim = read_reference_csv(reference / TFSLIM_FILE, TFSLIM_COLUMNS)
    tflite = read_reference_csv(reference / TFLITE_FILE, TFLITE_COLUMNS)
    traces = read_all_traces(reference / TRACES_DIR)

    models = build_models(tfslim, tflite)
    pixel3 = build_pixel3_profile(models, tflite)
    rpi4 = build_rpi4_profile(models, pixel3)
    ratio_float, ratio_int8 = rpi4_ratios(pixel3)
    pixel3_median = pixel3.set_index("model")["median_ms"]
    pixel3_gpu = build_pixel3_accelerator_profile(models, tflite, "gpu_ms")
    pixel3_nnapi = build_pixel3_accelerator_profile(models, tflite, "nnapi_ms")
    rpi4_old = build_mlperf_rpi4_profile(models)
    cloud_gpu, cloud_scale = build_cloud_accelerator_profile(models, tflite)
    payloads, payload_samples = build_payloads()
    stats = trace_table(traces)
    selected = select_traces(stats)
    levels = build_levels(traces)

    derived = "derived_by: data/build_data.py (do not edit by hand; rerun the script)"
    csv_files = {
        "models/mobilenet_v1.csv": render_csv(
            [
                f"source: {TFSLIM_FILE} (tensorflow/models research/slim/nets/mobilenet_v1.md; table "
                "'Pre-trained Models') and "
                f"{TFLITE_FILE} (tensorflow/tensorflow tensorflow/lite/g3doc/guide/hosted_models.md)",
                "top1_pct/top5_pct: TF-slim table (primary: one evaluation pipeline for all 32 variants); "
                "top1_tflite_pct/top5_tflite_pct: TFLite hosted-models table (kept for comparison)",
                f"input_bytes: resolution * resolution * {BYTES_PER_PIXEL} (raw 8-bit RGB input tensor at the "
                "model's resolution; the device resizes before sending)",
                f"result_bytes: {N_CLASSES} * {BYTES_PER_SCORE} (float32 scores of the {N_CLASSES}-class "
                "TF-slim head)",
                "units: million_macs in millions of multiply-accumulates; million_params in millions; "
                "accuracy in percent (ImageNet top-1/top-5); bytes in bytes",
                derived,
            ],
            _bool_text(models, "quantized"),
        ),
        "profiles/pixel3_cpu4.csv": render_csv(
            [
                "name: pixel3_cpu4",
                "kind: published",
                "machine: Google Pixel 3 (Snapdragon 845, Android 10), CPU, 4 threads",
                "framework: TensorFlow Lite",
                "threads: 4",
                "date: as published in hosted_models.md",
                "source: tensorflow/tensorflow tensorflow/lite/g3doc/guide/hosted_models.md, column "
                '"CPU, 4 threads"',
                "spread: not published; p10_ms = p90_ms = median_ms (compute time treated as deterministic)",
                "n_repeats: 0 means not published",
                f"reference_file: {TFLITE_FILE} column cpu4_ms",
                derived,
            ],
            pixel3,
        ),
        "profiles/rpi4_cpu4.csv": render_csv(
            [
                "name: rpi4_cpu4",
                "kind: derived",
                "machine: Raspberry Pi 4 Model B (Broadcom BCM2711, 4x Cortex-A72 at 1.5 GHz, 64-bit OS), "
                "CPU, 4 threads",
                "framework: TensorFlow Lite CPU path (XNNPACK, the engine of TFLite's default CPU delegate); "
                "latencies scaled from the Pixel 3 TFLite table",
                "threads: 4",
                "date: RPi 4 measurement benchmarked on Feb 8 2022 (XNNPACK README); Pixel 3 base as "
                "published in hosted_models.md",
                f"source: {XNNPACK_README}, table 'multi-threaded performance ... Raspberry Pi boards', "
                'column "RPi 4 (BCM2711, ARM64), ms"',
                f"measured: FP32 MobileNet v1 1.0X = {RPI4_FP32_MOBILENET_V1_MS:g} ms; INT8 MobileNet v1 1.0X "
                f"(per-channel quantized) = {RPI4_INT8_MOBILENET_V1_MS:g} ms; (32-bit Raspbian column: "
                f"{RPI4_FP32_MOBILENET_V1_32BIT_MS:g} ms / {RPI4_INT8_MOBILENET_V1_32BIT_MS:g} ms; not used)",
                f"derivation: median_ms = pixel3_cpu4 median_ms * ratio; ratio_float = "
                f"{RPI4_FP32_MOBILENET_V1_MS:g} / {pixel3_median[RPI4_REFERENCE_FLOAT]:g} "
                f"(pixel3 {RPI4_REFERENCE_FLOAT}) = {ratio_float:.6f}; ratio_int8 = "
                f"{RPI4_INT8_MOBILENET_V1_MS:g} / {pixel3_median[RPI4_REFERENCE_QUANT]:g} "
                f"(pixel3 {RPI4_REFERENCE_QUANT}) = {ratio_int8:.6f}; the same ratio is assumed for every "
                "width and resolution of a precision",
                "caveat: XNNPACK end2end-bench uses random weights and a 2022 software stack while the Pixel 3 "
                "table is older TFLite; the ratio folds hardware and software differences together",
                "spread: not published; p10_ms = p90_ms = median_ms (compute time treated as deterministic)",
                "n_repeats: 0 means not published",
                derived,
            ],
            rpi4,
        ),
        "profiles/pixel3_gpu.csv": render_csv(
            [
                "name: pixel3_gpu",
                "kind: published",
                "machine: Google Pixel 3 (Snapdragon 845 Adreno 630 GPU, Android 10), TFLite GPU delegate",
                "framework: TensorFlow Lite GPU delegate",
                "threads: gpu",
                "date: as published in hosted_models.md",
                'source: tensorflow/tensorflow tensorflow/lite/g3doc/guide/hosted_models.md, column "GPU"',
                "variants: float only (the table has no GPU figure for 8-bit models); a variant without a row "
                "cannot run on this device class and is masked out",
                "spread: not published; p10_ms = p90_ms = median_ms (compute time treated as deterministic)",
                "n_repeats: 0 means not published",
                f"reference_file: {TFLITE_FILE} column gpu_ms",
                derived,
            ],
            pixel3_gpu,
        ),
        "profiles/pixel3_nnapi.csv": render_csv(
            [
                "name: pixel3_nnapi",
                "kind: published",
                "machine: Google Pixel 3 (Snapdragon 845, Android 10), Android NNAPI (Hexagon DSP for 8-bit)",
                "framework: TensorFlow Lite NNAPI delegate",
                "threads: nnapi",
                "date: as published in hosted_models.md",
                'source: tensorflow/tensorflow tensorflow/lite/g3doc/guide/hosted_models.md, column "NNAPI"',
                "variants: 8-bit only (issue 12: the NNAPI class runs the quantized variants); a variant "
                "without a row cannot run on this device class and is masked out",
                "spread: not published; p10_ms = p90_ms = median_ms (compute time treated as deterministic)",
                "n_repeats: 0 means not published",
                f"reference_file: {TFLITE_FILE} column nnapi_ms",
                derived,
            ],
            pixel3_nnapi,
        ),
        "profiles/rpi4_tflite115.csv": render_csv(
            [
                "name: rpi4_tflite115",
                "kind: published",
                "machine: Raspberry Pi 4 (4x Cortex-A72 at 1.5 GHz, 4 GiB, Armor case), 32-bit Raspbian "
                "Buster, CPU",
                "framework: TensorFlow Lite v1.15.0-rc2 (the 2019 software stack: slower than XNNPACK)",
                "threads: 4",
                "date: MLPerf Inference v0.5 (2019)",
                f"source: {MLPERF_V05} open/dividiti/results/rpi4-tflite-v1.15/mobilenet-v1-*/singlestream/"
                "performance/run_1/mlperf_log_summary.txt (SingleStream p50 and p90)",
                "spread: median_ms = p50 and p90_ms = p90 as measured; p10_ms = p50^2 / p90 (log-normal "
                "mirror; the summaries give no p10)",
                "n_repeats: 0 means not published (MLPerf ran at least 1024 queries per variant)",
                derived,
            ],
            rpi4_old,
        ),
        "profiles/cloud_gpu_int8.csv": render_csv(
            [
                "name: cloud_gpu_int8",
                "kind: derived",
                "machine: a server accelerator at least as fast as an NVIDIA Jetson AGX Xavier (TensorRT int8)",
                "framework: TensorRT int8 (MLPerf v0.5 closed NVIDIA Xavier)",
                "threads: gpu",
                "date: MLPerf Inference v0.5 (2019)",
                f"source: {MLPERF_V05} closed/NVIDIA/results/Xavier/mobilenet/SingleStream/performance/run_1/"
                f"mlperf_log_summary.txt: MobileNetV1 1.0/224 int8 p50 {XAVIER_INT8_MOBILENET_V1_P50_NS} ns, "
                f"p90 {XAVIER_INT8_MOBILENET_V1_P90_NS} ns",
                f"derivation: median_ms = pixel3_nnapi median_ms * {cloud_scale:.6f} (Xavier p50 / Pixel 3 "
                "NNAPI 1.0/224 int8): only 1.0/224 was measured, so the per-variant shape (fixed overhead plus "
                "per-MAC cost) is the published Pixel 3 NNAPI column's; p10/p90 = median / * the Xavier p90/p50 "
                "ratio",
                "variants: 8-bit only; no float measurement on this accelerator exists, so float variants are "
                "not offered on this tier",
                "n_repeats: 0 means not published",
                derived,
            ],
            cloud_gpu,
        ),
        "payloads/jpeg_sizes.csv": render_csv(
            [
                "source: scikit-image sample photographs "
                + ", ".join(f"skimage.data.{name}()" for name in PAYLOAD_IMAGES)
                + "; five square crops each (centred, and four corners at "
                f"{PAYLOAD_CROP_FRACTION:g} of the short side)",
                "encoding: Pillow, resize to resolution x resolution (bicubic), JPEG at the given quality "
                "(Pillow defaults otherwise: 4:2:0 subsampling, baseline)",
                "columns: median/p10/p90 of the encoded sizes in bytes over the n_images crops (numpy "
                "linear-interpolation percentiles); samples/r<resolution>_q<quality>.jpg = the encoding "
                "nearest the median (decoded by orchlib profile-decode)",
                derived,
            ],
            payloads,
        ),
        "traces/index.csv": render_csv(
            [
                f"source: {TRACES_DIR}/ of the reference folder ({THREEG_SOURCE}; {FCC_SOURCE}; MIT license)",
                "files: copied byte for byte; two whitespace-separated columns per line: time_s and "
                "throughput_mbps (measured as DOWNLOAD throughput; orchlib also uses them for the uplink)",
                f"selection: per kind {N_TRACES_PER_3G_KIND} (3G modes) or {N_TRACES_FCC} (FCC) traces at "
                f"least {MIN_TRACE_DURATION_S:g} s long with every throughput sample > 0, and "
                f"{N_TRACES_FCC_OUTAGES} FCC traces with outages (some samples 0; kind {FCC_OUTAGE_KIND}), "
                "whose mean throughput is nearest the (j + 0.5) / k quantiles of the eligible traces' means",
                "columns: duration_s = last minus first time stamp (s); n_samples = lines; mean/median/p10/p90 "
                "of throughput_mbps (Mbit/s; numpy linear-interpolation percentiles)",
                derived,
            ],
            selected,
        ),
        "network/levels.csv": render_csv(
            [
                "columns: uplink_mbps and downlink_mbps in Mbit/s (1e6 bit/s); rtt_ms = round-trip time in ms",
                "source: per row; 'computed' = from the reference traces by data/build_data.py; "
                "'assumption' = chosen without a measured source (reason given; see docs/assumptions.md)",
                derived,
            ],
            levels,
        ),
    }
    copies = {f"traces/{name}": reference / TRACES_DIR / name for name in selected["file"]}
    return Outputs(csv_files=csv_files, copies=copies, binary_files=payload_samples)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_outputs(outputs: Outputs, out: Path) -> list[Path]:
    """Write every output under ``out`` atomically.

    Args:
        outputs: Result of :func:`compute_outputs`.
        out: Output folder (created if missing).

    Returns:
        The written paths.
    """
    written = []
    for relative, text in outputs.csv_files.items():
        _write_atomic(out / relative, text.encode("utf-8"))
        written.append(out / relative)
    for relative, source in outputs.copies.items():
        _write_atomic(out / relative, source.read_bytes())
        written.append(out / relative)
    for relative, data in outputs.binary_files.items():
        _write_atomic(out / relative, data)
        written.append(out / relative)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reference",
        type=Path,
        default=DEFAULT_REFERENCE,
        help=f"reference folder (default: {DEFAULT_REFERENCE})",
    )
    parser.add_argument("--out", type=Path, default=DATA_DIR, help=f"output folder (default: {DATA_DIR})")
    args = parser.parse_args(argv)
    outputs = compute_outputs(args.reference.resolve())
    written = write_outputs(outputs, args.out)
    print(f"wrote {len(written)} files under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
