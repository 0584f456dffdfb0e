"""Measure batch-1 latency of the MobileNetV1 variants on this CPU with torch, and write profile CSV files.

A profile file starts with ``# key: value`` metadata lines (:data:`METADATA_KEYS`, in that order), then a CSV
header and one row per variant (:data:`PROFILE_COLUMNS`)::

    # name: x86_2threads
    # kind: measured
    ...
    model,median_ms,p10_ms,p90_ms,n_repeats
    mobilenet_v1_1.0_224,19.1,18.7,19.9,50

The files are rewritten atomically after every finished variant, so an interrupted run keeps every row it
finished. Measurement method: each variant gets a fresh untrained model (float32, or int8 by post-training
static quantization, see :mod:`orchlib.profiling.mobilenet`), ``warmup`` untimed forward passes, then ``repeats``
samples from ``torch.utils.benchmark.Timer.timeit(1)``; each sample is one timed batch-1 forward pass, which
that call precedes by two untimed passes of its own. Everything runs under ``torch.inference_mode()`` with
``torch.set_num_threads(threads)``.

**As served** (``idle_gap_ms > 0``, ``orchlib profile --as-served``): a server does not run passes back to back;
it answers sporadic requests, and between them other processes evict its weights from the caches of a shared
CPU. Each sample then follows ``idle_gap_ms`` of idle time and is one forward pass timed alone with
``time.perf_counter`` (no untimed passes right before it, which would warm the caches the gap cooled). The
gap is written to the file's metadata (``idle_gap_ms``). :data:`AS_SERVED_GAP_MS` is the default gap.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from orchlib.profiling.variants import parse_variant

if TYPE_CHECKING:
    import torch

# torch (about a second to import) and scipy.stats are imported inside the functions that measure or test: the
# command line reads this module's constants and checks before it runs anything.

#: Metadata keys every profile file starts with, in this order.
METADATA_KEYS: tuple[str, ...] = (
    "name",
    "kind",
    "machine",
    "cpu_model",
    "n_cores",
    "framework",
    "threads",
    "quantization_backend",
    "date",
    "command",
)

#: Least number of timed runs per variant: fewer cannot give a median with p10 and p90 around it.
MIN_REPEATS = 3

#: Default idle time before each timed pass "as served", ms: the mean gap between requests that one testbed
#: server sees in the simulator check's busiest setting (4 users x 2 requests/s spread over 3 tiers by the
#: random agent: 2.7 requests/s, 375 ms; rounded up to 400 ms, the gap of ``benchmarks/bench_testbed_cold.py``).
#: With fewer users the gaps are longer.
AS_SERVED_GAP_MS = 400.0


@dataclass(frozen=True)
class ProfileRow:
    """Latency of one variant: one row of a profile file."""

    model: str
    """Variant name, e.g. ``mobilenet_v1_1.0_224_quant``."""
    median_ms: float
    """Median batch-1 latency over the timed runs, milliseconds."""
    p10_ms: float
    """10th percentile of the timed runs, milliseconds."""
    p90_ms: float
    """90th percentile of the timed runs, milliseconds."""
    n_repeats: int
    """Number of timed runs."""


#: CSV columns of a profile file, in this order.
PROFILE_COLUMNS: tuple[str, ...] = tuple(field.name for field in fields(ProfileRow))


def measure_latency_ms(
    model: torch.nn.Module,
    example: torch.Tensor,
    threads: int,
    repeats: int,
    warmup: int,
    idle_gap_ms: float = 0.0,
) -> np.ndarray:
    """Time ``repeats`` forward passes of ``model(example)`` after ``warmup`` untimed ones.

    Args:
        model: the model to time (in eval mode).
        example: its input, e.g. a batch-1 image tensor.
        threads: torch intra-op threads during timing, >= 1.
        repeats: number of timed runs, >= :data:`MIN_REPEATS`.
        warmup: number of untimed runs first, >= 0.
        idle_gap_ms: 0 (back to back, ``torch.utils.benchmark.Timer``) or the idle time before each timed
            pass, ms, "as served" (module docstring): finite, >= 0.

    Returns:
        Array of ``repeats`` latencies, milliseconds, one per run, in measurement order.

    Raises:
        ValueError: if an argument is outside the range above.
    """
    _check_int("threads", threads, 1)
    _check_int("repeats", repeats, MIN_REPEATS)
    _check_int("warmup", warmup, 0)
    _check_gap(idle_gap_ms)
    import torch
    import torch.utils.benchmark as benchmark

    timer = benchmark.Timer(
        stmt="model(example)", globals={"model": model, "example": example}, num_threads=threads
    )
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(example)
            if idle_gap_ms > 0:
                seconds = []
                for _ in range(repeats):
                    time.sleep(idle_gap_ms / 1e3)
                    start = time.perf_counter()
                    model(example)
                    seconds.append(time.perf_counter() - start)
            else:
                seconds = [timer.timeit(number=1).times[0] for _ in range(repeats)]
    finally:
        torch.set_num_threads(previous_threads)
    return np.asarray(seconds, dtype=float) * 1e3


def profile_variants(
    variants: Sequence[str],
    threads: int,
    repeats: int,
    warmup: int,
    rng: np.random.Generator | int | None = None,
    progress: bool = True,
    on_row: Callable[[ProfileRow], None] | None = None,
    device: str = "cpu",
    idle_gap_ms: float = 0.0,
) -> list[ProfileRow]:
    """Measure the batch-1 latency of each named variant, one after the other.

    Each variant gets its own random stream (``rng.spawn``) for its weights, its int8 calibration images and
    its input image, so results do not depend on which other variants are measured.

    Args:
        variants: names from :func:`orchlib.profiling.mobilenet.variant_names`, no duplicates, at least one.
        threads: torch intra-op threads, 1 to ``os.cpu_count()``.
        repeats: timed runs per variant, >= :data:`MIN_REPEATS`.
        warmup: untimed runs per variant before timing, >= 0.
        rng: seed or generator.
        progress: show a tqdm progress bar (on stderr, or as a notebook widget).
        on_row: called with each row as soon as its variant is finished (e.g. to save it).
        device: ``"cpu"`` or ``"cuda"`` (a GPU, when torch sees one; float variants only, since the
            ``torch.ao`` int8 kernels run on the CPU).
        idle_gap_ms: idle time before each timed pass, ms (0: back to back; > 0: "as served", see the
            module docstring).

    Returns:
        One :class:`ProfileRow` per variant, in the order given.

    Raises:
        ValueError: if a variant name is unknown (listing the valid ones) or repeated, an argument is
            outside the range above, ``cuda`` is asked for without a GPU, or int8 variants on ``cuda``.
    """
    variants = _check_variants(variants)
    check_device(device, variants)
    _check_int("threads", threads, 1, os.cpu_count() or 1)
    _check_int("repeats", repeats, MIN_REPEATS)
    _check_int("warmup", warmup, 0)
    _check_gap(idle_gap_ms)
    import torch

    from orchlib.profiling.mobilenet import build_variant

    streams = np.random.default_rng(rng).spawn(len(variants))
    rows: list[ProfileRow] = []
    previous_threads = torch.get_num_threads()
    # Building and quantizing use the same thread count as timing, so nothing runs wider than asked.
    torch.set_num_threads(threads)
    try:
        with tqdm(
            variants, desc=f"profiling, {threads} thread(s)", unit="variant", disable=not progress
        ) as bar:
            for name, stream in zip(bar, streams, strict=True):
                bar.set_postfix_str(name)
                model = build_variant(name, rng=stream).to(device)
                resolution = parse_variant(name).resolution
                generator = torch.Generator().manual_seed(int(stream.integers(2**63 - 1)))
                example = (torch.rand((1, 3, resolution, resolution), generator=generator) * 2 - 1).to(device)
                latencies_ms = measure_latency_ms(model, example, threads, repeats, warmup, idle_gap_ms)
                p10_ms, median_ms, p90_ms = np.percentile(latencies_ms, [10, 50, 90])
                row = ProfileRow(name, float(median_ms), float(p10_ms), float(p90_ms), int(repeats))
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    finally:
        torch.set_num_threads(previous_threads)
    return rows


def check_device(device: str, variants: Sequence[str]) -> None:
    """Refuse a device torch cannot use here, or int8 variants on a GPU (named in the message).

    Raises:
        ValueError: ``device`` not ``"cpu"``/``"cuda"``, ``"cuda"`` without a visible GPU, or int8 variants on it.
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError(
                "device 'cuda' asked for, but torch sees no GPU (torch.cuda.is_available() is False)"
            )
        quantized = [name for name in variants if parse_variant(name).quantized]
        if quantized:
            raise ValueError(
                f"int8 variants run on the CPU only (torch.ao quantized kernels), got {quantized} on 'cuda'; "
                "choose float variants"
            )


def profile_to_csv(
    path: str | os.PathLike[str],
    variants: Sequence[str],
    threads: int,
    repeats: int,
    warmup: int,
    metadata: Mapping[str, str],
    rng: np.random.Generator | int | None = None,
    progress: bool = True,
    on_row: Callable[[ProfileRow], None] | None = None,
    device: str = "cpu",
    idle_gap_ms: float = 0.0,
) -> list[ProfileRow]:
    """Run :func:`profile_variants` and rewrite the profile file at ``path`` after every finished variant.

    If the run is interrupted (e.g. KeyboardInterrupt, also when raised by ``on_row``), the file holds every
    finished row and the exception propagates. If no variant finished, an existing file is left unchanged.

    Args:
        path: output ``.csv`` file; its folder must exist.
        variants, threads, repeats, warmup, rng, progress, device, idle_gap_ms: as for
            :func:`profile_variants`.
        metadata: as for :func:`write_profile`.
        on_row: called with each row after it has been written to ``path``.

    Returns:
        The rows, in the order of ``variants``.

    Raises:
        ValueError: for a bad path or metadata (before any measurement), or as :func:`profile_variants`.
    """
    path = _check_output_path(path)
    _check_metadata(metadata)
    _check_gap(idle_gap_ms)
    rows: list[ProfileRow] = []

    def save_then_report(row: ProfileRow) -> None:
        rows.append(row)
        write_profile(path, rows, metadata)
        if on_row is not None:
            on_row(row)

    return profile_variants(
        variants,
        threads,
        repeats,
        warmup,
        rng,
        progress=progress,
        on_row=save_then_report,
        device=device,
        idle_gap_ms=idle_gap_ms,
    )


def write_profile(
    path: str | os.PathLike[str], rows: Sequence[ProfileRow], metadata: Mapping[str, str]
) -> None:
    """Write a profile file atomically: a temporary file in the same folder, then ``os.replace``.

    Args:
        path: output ``.csv`` file; its folder must exist.
        rows: the measured rows.
        metadata: one value per key of :data:`METADATA_KEYS` (written first, in that order), then any extra
            keys; keys are identifiers, values are single lines.

    Raises:
        ValueError: if ``path`` is not a ``.csv`` file in an existing folder, or a metadata key is missing or
            malformed.
        TypeError: if a row is not a :class:`ProfileRow`.
    """
    path = _check_output_path(path)
    _check_metadata(metadata)
    for row in rows:
        if not isinstance(row, ProfileRow):
            raise TypeError(f"rows must hold ProfileRow objects, got {type(row).__name__}")
    keys = [*METADATA_KEYS, *(key for key in metadata if key not in METADATA_KEYS)]
    header = "".join(f"# {key}: {metadata[key]}\n" for key in keys)
    table = pd.DataFrame([asdict(row) for row in rows], columns=list(PROFILE_COLUMNS))
    _write_text_atomic(path, header + table.to_csv(index=False, float_format="%.4f", lineterminator="\n"))


def _write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        # mkstemp creates the file private (0600); give it the permissions a plain open() would.
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a stray temporary file next to the profile.
        Path(temporary).unlink(missing_ok=True)
        raise


def profile_metadata(
    name: str,
    threads: int,
    command: str,
    machine: str | None = None,
    date: datetime.date | None = None,
) -> dict[str, str]:
    """Describe this machine and run in the keys of :data:`METADATA_KEYS`.

    Args:
        name: profile name, usually the file name without ``.csv`` (e.g. ``x86_2threads``).
        threads: torch intra-op threads used.
        command: the command line that reproduces the file.
        machine: a generic description of the machine; by default built from the core count, the
            architecture and whether /proc/cpuinfo reports a hypervisor (never the host name).
        date: measurement date; today by default.
    """
    import torch

    n_cores = os.cpu_count() or 1
    if machine is None:
        kind = "virtual machine" if _running_under_hypervisor() else "machine"
        machine = f"{n_cores}-core {platform.machine()} {kind}"
    return {
        "name": name,
        "kind": "measured",
        "machine": machine,
        "cpu_model": _cpu_model_name(),
        "n_cores": str(n_cores),
        "framework": f"torch {torch.__version__}",
        "threads": str(threads),
        "quantization_backend": torch.backends.quantized.engine,
        "date": (date or datetime.date.today()).isoformat(),
        "command": command,
    }


def summarize_profile(profile_df: pd.DataFrame, macs_table: pd.DataFrame) -> pd.DataFrame:
    """Pair each float32 variant with its int8 twin and give their latency ratio.

    See :func:`spearman_macs_latency` for the rank correlation with the published MACs.

    Args:
        profile_df: a profile table with columns ``model`` and ``median_ms``.
        macs_table: the published table with columns ``model`` and ``million_macs`` (e.g. the TF-slim CSV).

    Returns:
        One row per width/resolution measured in both precisions, most MACs first, with columns ``model``
        (float32 name), ``width_multiplier``, ``resolution``, ``million_macs``, ``float32_median_ms``,
        ``int8_median_ms`` and ``float32_over_int8`` (> 1 when int8 is faster).

    Raises:
        ValueError: if a column is missing or a profiled model is not in ``macs_table``.
    """
    merged = _merge_macs(profile_df, macs_table)
    variants = [parse_variant(name) for name in merged["model"]]
    merged["quantized"] = [variant.quantized for variant in variants]
    merged["base_model"] = merged["model"].str.removesuffix("_quant")
    float32 = merged[~merged["quantized"]].set_index("base_model")
    int8 = merged[merged["quantized"]].set_index("base_model")
    common = [name for name in float32.index if name in int8.index]
    summary = pd.DataFrame(
        {
            "model": common,
            "width_multiplier": [parse_variant(name).width_multiplier for name in common],
            "resolution": [parse_variant(name).resolution for name in common],
            "million_macs": float32.loc[common, "million_macs"].to_numpy(),
            "float32_median_ms": float32.loc[common, "median_ms"].to_numpy(),
            "int8_median_ms": int8.loc[common, "median_ms"].to_numpy(),
        }
    )
    summary["float32_over_int8"] = summary["float32_median_ms"] / summary["int8_median_ms"]
    return summary.sort_values(["million_macs", "model"], ascending=[False, True], ignore_index=True)


def spearman_macs_latency(profile_df: pd.DataFrame, macs_table: pd.DataFrame) -> pd.DataFrame:
    """Spearman rank correlation between published MACs and measured median latency.

    Args:
        profile_df: a profile table with columns ``model`` and ``median_ms``.
        macs_table: the published table with columns ``model`` and ``million_macs``.

    Returns:
        One row per subset (``float32``, ``int8``, ``all``) with columns ``subset``, ``n_variants`` and
        ``spearman_rho`` (NaN when a subset has fewer than 2 variants). Tied MACs (a float32 variant and its
        int8 twin) get average ranks.

    Raises:
        ValueError: if a column is missing or a profiled model is not in ``macs_table``.
    """
    from scipy.stats import spearmanr

    merged = _merge_macs(profile_df, macs_table)
    quantized = np.array([parse_variant(name).quantized for name in merged["model"]], dtype=bool)
    records = []
    for subset, mask in (("float32", ~quantized), ("int8", quantized), ("all", np.ones_like(quantized))):
        part = merged[mask]
        rho = np.nan
        if len(part) >= 2:
            rho = float(spearmanr(part["million_macs"], part["median_ms"]).statistic)
        records.append({"subset": subset, "n_variants": len(part), "spearman_rho": rho})
    return pd.DataFrame.from_records(records)


def _merge_macs(profile_df: pd.DataFrame, macs_table: pd.DataFrame) -> pd.DataFrame:
    """Return ``profile_df[["model", "median_ms"]]`` with the published ``million_macs`` of each model."""
    for label, table, columns in (
        ("profile_df", profile_df, ("model", "median_ms")),
        ("macs_table", macs_table, ("model", "million_macs")),
    ):
        missing = [column for column in columns if column not in table.columns]
        if missing:
            raise ValueError(f"{label} lacks column(s) {missing}; it has {list(table.columns)}")
    unknown = sorted(set(profile_df["model"]) - set(macs_table["model"]))
    if unknown:
        raise ValueError(f"macs_table has no row for profiled model(s) {unknown}")
    return profile_df[["model", "median_ms"]].merge(
        macs_table[["model", "million_macs"]], on="model", how="left", validate="one_to_one"
    )


def _check_variants(variants: Sequence[str]) -> list[str]:
    """Return ``variants`` as a list after checking each name is known and none repeats."""
    if isinstance(variants, str):
        raise TypeError("variants must be a sequence of names, not a single string")
    variants = list(variants)
    if not variants:
        raise ValueError("variants must name at least one variant")
    for name in variants:
        parse_variant(name)
    repeated = sorted({name for name in variants if variants.count(name) > 1})
    if repeated:
        raise ValueError(f"variants repeats {repeated}")
    return variants


def _check_int(label: str, value: int, low: int, high: int | None = None) -> None:
    """Raise ValueError unless ``value`` is an integer in ``[low, high]`` (no upper bound if None)."""
    valid = f"in [{low}, {high}]" if high is not None else f">= {low}"
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool)
    if not is_int or value < low or (high is not None and value > high):
        raise ValueError(f"{label} must be an integer {valid}, got {value!r}")


def _check_gap(idle_gap_ms: float) -> None:
    """Raise ValueError unless ``idle_gap_ms`` is a finite number >= 0."""
    ok = (
        isinstance(idle_gap_ms, int | float)
        and not isinstance(idle_gap_ms, bool)
        and math.isfinite(idle_gap_ms)
    )
    if not ok or idle_gap_ms < 0:
        raise ValueError(f"idle_gap_ms must be a finite number >= 0 (ms), got {idle_gap_ms!r}")


def _check_output_path(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path after checking it ends in ``.csv`` and its folder exists."""
    path = Path(path)
    if path.suffix != ".csv":
        raise ValueError(f"profile path must end in .csv, got {str(path)!r}")
    if not path.parent.is_dir():
        raise ValueError(f"folder {str(path.parent)!r} of profile path does not exist")
    return path


def _check_metadata(metadata: Mapping[str, str]) -> None:
    """Raise ValueError unless every key of METADATA_KEYS is present and every key/value fits on one line."""
    missing = [key for key in METADATA_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"metadata lacks key(s) {missing}; required: {list(METADATA_KEYS)}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"metadata key {key!r} must be an identifier such as 'cpu_model'")
        if not isinstance(value, str) or "\n" in value or "\r" in value:
            raise ValueError(f"metadata value of {key!r} must be a one-line string, got {value!r}")


def _current_umask() -> int:
    """Return the process umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _cpu_model_name() -> str:
    """Return the "model name" of /proc/cpuinfo, else ``platform.processor()``, else ``"unknown"``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass  # not Linux: fall back below
    return platform.processor() or "unknown"


def _running_under_hypervisor() -> bool:
    """True if /proc/cpuinfo lists the ``hypervisor`` CPU flag (x86 guests); False if unknown."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            return any(line.startswith("flags") and " hypervisor" in line for line in file)
    except OSError:
        return False


# --- JPEG decoding on the serving tier ----------------------------------------------------------------------

#: CSV columns of a decode profile (``data/profiles/*_jpeg_decode.csv``), in this order.
DECODE_COLUMNS: tuple[str, ...] = ("resolution", "quality", "median_ms", "p10_ms", "p90_ms", "n_repeats")


def decode_to_tensor(jpeg: bytes) -> np.ndarray:
    """What a server does with a received JPEG before inference: decode, to float32 CHW in [0, 1].

    The device already resized the image to the model's resolution (the payload table encodes it at that
    size), so no resize is needed here; the conversion to the model's input layout is included.
    """
    import io

    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)) / 255.0


def measure_decode_ms(jpeg: bytes, repeats: int, warmup: int) -> np.ndarray:
    """Time ``repeats`` calls of :func:`decode_to_tensor` (one thread) after ``warmup`` untimed ones, ms.

    Raises:
        ValueError: ``repeats`` < :data:`MIN_REPEATS`, ``warmup`` < 0, or bytes that are not a JPEG.
    """
    _check_int("repeats", repeats, MIN_REPEATS)
    _check_int("warmup", warmup, 0)
    try:
        decode_to_tensor(jpeg)
    except Exception as exc:  # Pillow raises several types for bad data; one clear message for all
        raise ValueError(f"not a decodable JPEG ({type(exc).__name__}: {exc})") from None
    for _ in range(warmup):
        decode_to_tensor(jpeg)
    import torch.utils.benchmark as benchmark

    timer = benchmark.Timer(
        stmt="decode(data)", globals={"decode": decode_to_tensor, "data": jpeg}, num_threads=1
    )
    return np.asarray([timer.timeit(number=1).times[0] for _ in range(repeats)], dtype=float) * 1e3


def profile_decode(samples: Mapping[tuple[int, int], bytes], repeats: int, warmup: int) -> pd.DataFrame:
    """Decode cost of one sample JPEG per (resolution, quality): a table with :data:`DECODE_COLUMNS`.

    Args:
        samples: ``{(resolution, quality): jpeg bytes}``, e.g. from :func:`load_payload_samples`.
        repeats, warmup: as :func:`measure_decode_ms`.
    """
    rows = []
    for (resolution, quality), jpeg in sorted(samples.items()):
        times = measure_decode_ms(jpeg, repeats, warmup)
        rows.append(
            {
                "resolution": int(resolution),
                "quality": int(quality),
                "median_ms": round(float(np.median(times)), 4),
                "p10_ms": round(float(np.percentile(times, 10)), 4),
                "p90_ms": round(float(np.percentile(times, 90)), 4),
                "n_repeats": int(repeats),
            }
        )
    return pd.DataFrame(rows, columns=list(DECODE_COLUMNS))


def load_payload_samples(folder: str | os.PathLike[str]) -> dict[tuple[int, int], bytes]:
    """The sample JPEGs ``r<resolution>_q<quality>.jpg`` written by ``data/build_data.py``.

    Raises:
        ValueError: the folder has no such files (names the folder).
    """
    folder = Path(folder)
    samples = {}
    for path in sorted(folder.glob("r*_q*.jpg")):
        resolution, quality = path.stem[1:].split("_q")
        samples[(int(resolution), int(quality))] = path.read_bytes()
    if not samples:
        raise ValueError(
            f"{folder}: no sample JPEGs named r<resolution>_q<quality>.jpg (run data/build_data.py)"
        )
    return samples


def write_decode_profile(
    path: str | os.PathLike[str], table: pd.DataFrame, metadata: Mapping[str, str]
) -> Path:
    """Write a decode profile atomically: ``# key: value`` metadata lines, then the CSV."""
    out = _check_output_path(path)
    header = "".join(f"# {k}: {v}\n" for k, v in metadata.items())
    _write_text_atomic(out, header + table.to_csv(index=False, lineterminator="\n"))
    return out
