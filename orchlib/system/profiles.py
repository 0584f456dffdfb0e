"""Loaders: read the files in ``data/`` into typed objects, validating everything. File reading only.

Every problem raises :class:`DataError` naming the file, and where it applies the row and column, and what
is valid. Nothing here computes latencies; see :mod:`orchlib.system.latency`.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


class DataError(ValueError):
    """A data file (or a value read from one) is missing, malformed or out of range."""


def data_dir() -> Path:
    """The folder of orchlib's own data files (the repository's ``data/``, shipped as ``orchlib.data``).

    The wheel maps ``data/`` to the package ``orchlib.data`` (``pyproject.toml``, ``package-dir``), so
    :func:`importlib.resources.files` finds it in a normal install, in an editable install, and in a checkout
    whose folder is on ``sys.path`` with the package installed editable. A bare checkout that was never
    installed has no ``orchlib.data`` package; there the ``data/`` folder beside ``orchlib/`` is the same
    files.

    Raises:
        DataError: the package is imported from somewhere that is not a folder (e.g. a zip file).
    """
    try:
        root = importlib.resources.files("orchlib.data")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "data"
    if not isinstance(root, Path):
        raise DataError(
            f"orchlib's data ({root}) is not in a folder; install orchlib normally (pip install) rather than "
            "importing it from a zip file"
        )
    return root


#: orchlib's data folder (see :func:`data_dir`); a user's own files are read by path instead.
DATA_DIR = data_dir()


@dataclass(frozen=True, eq=False)
class VariantTable:
    """The model variants an orchestrator can choose from, in file order."""

    path: Path
    #: one row per variant, indexed by model name; columns as in data/README.md.
    frame: pd.DataFrame

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.frame.index)

    def column(self, name: str) -> np.ndarray:
        """One column as a float array in variant order."""
        return self.frame[name].to_numpy(dtype=float)


@dataclass(frozen=True, eq=False)
class DeviceProfile:
    """Measured or published compute latency of every variant on one device class."""

    path: Path
    name: str
    #: the ``# key: value`` lines at the top of the file (machine, framework, threads, date, source, ...).
    metadata: dict[str, str] = field(repr=False)
    #: indexed by model name; columns median_ms, p10_ms, p90_ms, n_repeats.
    frame: pd.DataFrame = field(repr=False)

    def aligned(self, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(median_ms, p10_ms, p90_ms) arrays in the order of ``names``.

        Raises:
            DataError: a variant in ``names`` has no row in this profile.
        """
        missing = [n for n in names if n not in self.frame.index]
        if missing:
            raise DataError(
                f"{self.path}: profile has no row for variant(s) {missing}; every variant of the model table needs one"
            )
        rows = self.frame.loc[list(names)]
        return (
            rows["median_ms"].to_numpy(float),
            rows["p10_ms"].to_numpy(float),
            rows["p90_ms"].to_numpy(float),
        )

    @property
    def partial(self) -> bool:
        """True if the file declares (``# variants: ...``) that it covers only the variants its device can run."""
        return "variants" in self.metadata

    def available(self, names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(median_ms, p10_ms, p90_ms, runnable) in the order of ``names``; ``inf`` latency where not runnable.

        A profile that declares ``# variants:`` may omit variants its device cannot run (a GPU delegate
        without 8-bit kernels, an int8-only accelerator); any other profile must have every row.

        Raises:
            DataError: a variant is missing from a profile that does not declare ``# variants:``.
        """
        if not self.partial:
            return (*self.aligned(names), np.ones(len(names), dtype=bool))
        runnable = np.array([n in self.frame.index for n in names], dtype=bool)
        out = [np.full(len(names), np.inf) for _ in range(3)]
        rows = self.frame.loc[[n for n in names if n in self.frame.index]]
        for array, column in zip(out, ("median_ms", "p10_ms", "p90_ms"), strict=True):
            array[runnable] = rows[column].to_numpy(float)
        return out[0], out[1], out[2], runnable


@dataclass(frozen=True, eq=False)
class Trace:
    """A measured throughput trace: sample times (s) and throughput (Mbit/s)."""

    path: Path
    times_s: np.ndarray
    mbps: np.ndarray

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class NetworkLevel:
    """A named steady network condition."""

    name: str
    uplink_mbps: float
    downlink_mbps: float
    rtt_ms: float
    source: str


VARIANT_COLUMNS = {
    "model": str,
    "width_multiplier": float,
    "resolution": int,
    "quantized": bool,
    "million_macs": float,
    "million_params": float,
    "top1_pct": float,
    "top5_pct": float,
    "input_bytes": float,
    "result_bytes": float,
}
PROFILE_COLUMNS = {"model": str, "median_ms": float, "p10_ms": float, "p90_ms": float, "n_repeats": int}
LEVEL_COLUMNS = {"name": str, "uplink_mbps": float, "downlink_mbps": float, "rtt_ms": float, "source": str}


def resolve(name_or_path: str | Path, subdir: str, suffix: str = ".csv") -> Path:
    """A path as given if it exists, else ``data/<subdir>/<name><suffix>``.

    Raises:
        DataError: neither exists; lists the names available in that folder.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    candidate = data_dir() / subdir / (path.name if path.suffix else f"{path.name}{suffix}")
    if candidate.is_file():
        return candidate
    folder = data_dir() / subdir
    available = (
        sorted(p.stem if suffix else p.name for p in folder.glob("*") if p.is_file())
        if folder.is_dir()
        else []
    )
    raise DataError(f"no file {str(name_or_path)!r} and no {candidate}; available in {folder}: {available}")


def read_metadata(path: Path) -> dict[str, str]:
    """The ``# key: value`` lines at the top of a CSV (comment lines without a colon are provenance text).

    Raises:
        DataError: the file is not UTF-8 text.
    """
    meta: dict[str, str] = {}
    for line in _text_lines(path):
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].partition(":")
        if sep and key.strip() and " " not in key.strip():
            meta[key.strip()] = value.strip()
    return meta


def _text_lines(path: Path, content: bytes | None = None) -> list[str]:
    """The lines of a UTF-8 text file (a byte-order mark is dropped), or DataError if it is not text.

    ``content``: the file's bytes, read already (None: read them)."""
    try:
        return (path.read_bytes() if content is None else content).decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not a UTF-8 text file (byte {exc.start} is {exc.object[exc.start : exc.start + 1]!r}); "
            "expected a text file with comma- or whitespace-separated columns"
        ) from None


def _check_field_counts(path: Path, lines: list[str]) -> None:
    """DataError naming the first data row that has more fields than the header.

    pandas reads such a file without complaint when the *first* data row is the long one (it takes the
    extra leading fields as an index), so the counts are checked here.
    """
    numbered = [
        (n, line) for n, line in enumerate(lines, start=1) if line.strip() and not line.startswith("#")
    ]
    parsed = list(csv.reader(line for _, line in numbered))
    if not parsed:
        return
    header = parsed[0]
    for row, ((line_number, _), fields) in enumerate(zip(numbered[1:], parsed[1:], strict=True), start=1):
        if len(fields) > len(header):
            raise DataError(
                f"{path}, row {row} (line {line_number}): {len(fields)} fields but the header has "
                f"{len(header)} ({', '.join(h.strip() for h in header)}); remove the extra fields (a stray comma?)"
            )


def _read_table(path: Path, columns: dict[str, type], key: str, unique: bool = True) -> pd.DataFrame:
    """Read a commented CSV and check columns, types, emptiness and (if ``unique``) duplicate keys.

    A file read before with the same bytes is not parsed and checked again (a sweep builds its world for every
    scenario, and a preset reads the same tables each time): the result is a copy of the earlier one."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    content = path.read_bytes()
    return _parse_table(path, content, tuple(columns.items()), key, unique).copy()


@functools.lru_cache(maxsize=128)
def _parse_table(
    path: Path, content: bytes, columns: tuple[tuple[str, type], ...], key: str, unique: bool
) -> pd.DataFrame:
    """:func:`_read_table` of the file ``path`` whose bytes are ``content`` (a DataError is not kept)."""
    lines = _text_lines(path, content)
    columns = dict(columns)
    try:
        frame = pd.read_csv(io.StringIO("\n".join(lines)), comment="#", skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty (expected a header with columns {list(columns)})") from None
    except pd.errors.ParserError as exc:
        _check_field_counts(path, lines)  # the usual cause, named by data row
        raise DataError(f"{path}: not a valid CSV ({str(exc).strip()})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; required columns are {list(columns)}")
    _check_field_counts(path, lines)
    if frame.empty:
        raise DataError(f"{path}: has a header but no rows")
    names = frame[key].tolist()

    def bad(row: int, column: str, problem: str) -> DataError:  # the message, built only for a bad value
        return DataError(f"{path}, row {row + 1} (model/name {names[row]!r}), column {column!r}: {problem}")

    for column, kind in columns.items():
        for row, value in enumerate(frame[column].tolist()):  # read_csv numbers the rows 0, 1, ...
            if kind is str:
                if not isinstance(value, str) or not value.strip():
                    raise bad(row, column, f"expected a non-empty text, got {value!r}")
            elif kind is bool:
                if str(value).strip().lower() not in {"true", "false"}:
                    raise bad(row, column, f"expected true or false, got {value!r}")
            else:
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    raise bad(row, column, f"expected a number, got {value!r}") from None
                if math.isnan(number):
                    raise bad(row, column, "is empty or NaN; a number is required")
                if kind is int and number != int(number):
                    raise bad(row, column, f"expected a whole number, got {value!r}")
    for column, kind in columns.items():
        if kind is bool:
            frame[column] = frame[column].astype(str).str.strip().str.lower() == "true"
        elif kind is not str:
            frame[column] = frame[column].astype(kind)
    duplicated = frame[key][frame[key].duplicated()].tolist() if unique else []
    if duplicated:
        raise DataError(f"{path}: duplicate {key} value(s) {duplicated}; each must appear once")
    return frame


def _require_positive(
    path: Path, frame: pd.DataFrame, key: str, columns: list[str], allow_zero: bool = False
) -> None:
    for column in columns:
        bad = frame[(frame[column] < 0) if allow_zero else (frame[column] <= 0)]
        if not bad.empty:
            row = int(bad.index[0])
            bound = ">= 0" if allow_zero else "> 0"
            raise DataError(
                f"{path}, row {row + 1} ({key} {bad[key].iloc[0]!r}), column {column!r}: "
                f"got {bad[column].iloc[0]}, must be {bound}"
            )


def load_variants(name_or_path: str | Path = "mobilenet_v1") -> VariantTable:
    """Load a model-variant table (default ``data/models/mobilenet_v1.csv``).

    Raises:
        DataError: missing file or columns, wrong types, duplicate models, non-positive sizes or MACs,
            accuracy outside (0, 100].
    """
    path = resolve(name_or_path, "models")
    frame = _read_table(path, VARIANT_COLUMNS, "model")
    _require_positive(
        path,
        frame,
        "model",
        ["million_macs", "million_params", "input_bytes", "result_bytes", "resolution", "width_multiplier"],
    )
    for column in ("top1_pct", "top5_pct"):
        bad = frame[(frame[column] <= 0) | (frame[column] > 100)]
        if not bad.empty:
            raise DataError(
                f"{path}, row {int(bad.index[0]) + 1} (model {bad['model'].iloc[0]!r}), column {column!r}: "
                f"got {bad[column].iloc[0]}, must be in (0, 100] percent"
            )
    # index by model but keep the column; the index is unnamed so "model" stays unambiguous in merges/groupbys
    return VariantTable(path=path, frame=frame.set_index("model", drop=False).rename_axis(None))


def load_profile(name_or_path: str | Path, variants: VariantTable | None = None) -> DeviceProfile:
    """Load a device profile (``data/profiles/<name>.csv`` or a path), as written by ``orchlib profile``.

    Args:
        name_or_path: a profile name in ``data/profiles`` or a CSV path.
        variants: when given, every model in the profile must be one of its variants and every variant must
            have a row.

    Raises:
        DataError: missing file or columns, wrong types, duplicate rows, latencies that are NaN, zero or
            negative, ``p10 > median`` or ``median > p90``, unknown or missing variant names.
    """
    path = resolve(name_or_path, "profiles")
    frame = _read_table(path, PROFILE_COLUMNS, "model")
    _require_positive(path, frame, "model", ["median_ms", "p10_ms", "p90_ms"])
    _require_positive(path, frame, "model", ["n_repeats"], allow_zero=True)
    order = frame[(frame["p10_ms"] > frame["median_ms"]) | (frame["median_ms"] > frame["p90_ms"])]
    if not order.empty:
        raise DataError(
            f"{path}, row {int(order.index[0]) + 1} (model {order['model'].iloc[0]!r}): "
            "needs p10_ms <= median_ms <= p90_ms"
        )
    if variants is not None:
        unknown = sorted(set(frame["model"]) - set(variants.names))
        if unknown:
            raise DataError(
                f"{path}: unknown variant name(s) {unknown}; valid names are those of {variants.path}"
            )
    frame = frame.set_index("model", drop=False).rename_axis(None)
    profile = DeviceProfile(
        path=path, name=read_metadata(path).get("name", path.stem), metadata=read_metadata(path), frame=frame
    )
    if variants is not None:
        profile.aligned(variants.names)
    return profile


def load_trace(name_or_path: str | Path) -> Trace:
    """Load a throughput trace: two whitespace-separated columns per line, time (s) and throughput (Mbit/s).

    Raises:
        DataError: missing or empty file, a line without two numbers, non-increasing time, a throughput that
            is NaN or negative, or a trace whose samples are all zero. Zero samples are outages (real traces
            have them): a transfer waits until the link comes back.
    """
    path = resolve(name_or_path, "traces", suffix="")
    times: list[float] = []
    rates: list[float] = []
    for number, line in enumerate(_text_lines(path), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        try:
            t, r = float(parts[0]), float(parts[1])
        except (IndexError, ValueError):
            raise DataError(
                f"{path}, line {number}: expected two numbers 'time_s throughput_mbps', got {line.strip()!r}"
            ) from None
        if not (math.isfinite(r) and r >= 0):
            raise DataError(
                f"{path}, line {number}: throughput must be a finite number >= 0 Mbit/s (0 = an outage), got {r}"
            )
        if not math.isfinite(t) or (times and t <= times[-1]):
            raise DataError(
                f"{path}, line {number}: time {t} s is not after the previous time {times[-1] if times else None} s; times must increase"
            )
        times.append(t)
        rates.append(r)
    if not times:
        raise DataError(f"{path}: trace is empty (expected lines 'time_s throughput_mbps')")
    if not any(rates):
        raise DataError(f"{path}: every throughput sample is 0; a trace needs at least one sample > 0 Mbit/s")
    return Trace(path=path, times_s=np.array(times), mbps=np.array(rates))


def load_network_levels(name_or_path: str | Path = "levels") -> dict[str, NetworkLevel]:
    """Load the named steady network conditions (default ``data/network/levels.csv``).

    Raises:
        DataError: missing file or columns, duplicate names, bandwidths or RTTs that are NaN, zero or negative.
    """
    path = resolve(name_or_path, "network")
    frame = _read_table(path, LEVEL_COLUMNS, "name")
    _require_positive(path, frame, "name", ["uplink_mbps", "downlink_mbps"])
    _require_positive(path, frame, "name", ["rtt_ms"], allow_zero=True)
    return {
        row.name: NetworkLevel(row.name, row.uplink_mbps, row.downlink_mbps, row.rtt_ms, row.source)
        for row in frame.itertuples(index=False)
    }


PAYLOAD_COLUMNS = {
    "resolution": int,
    "quality": int,
    "median_bytes": float,
    "p10_bytes": float,
    "p90_bytes": float,
    "n_images": int,
}
DECODE_COLUMNS = {
    "resolution": int,
    "quality": int,
    "median_ms": float,
    "p10_ms": float,
    "p90_ms": float,
    "n_repeats": int,
}


def _load_resolution_quality_table(
    path: Path, columns: dict[str, type], low: str, mid: str, high: str
) -> pd.DataFrame:
    """Read a table keyed by (resolution, quality) and check types, positivity, order and uniqueness."""
    frame = _read_table(path, columns, "resolution", unique=False)
    duplicated = frame[frame.duplicated(["resolution", "quality"])]
    if not duplicated.empty:
        row = duplicated.iloc[0]
        raise DataError(
            f"{path}, row {int(duplicated.index[0]) + 1}: duplicate (resolution, quality) "
            f"({row['resolution']}, {row['quality']}); each pair must appear once"
        )
    _require_positive(path, frame, "resolution", list(columns))
    bad = frame[(frame[low] > frame[mid]) | (frame[mid] > frame[high])]
    if not bad.empty:
        raise DataError(
            f"{path}, row {int(bad.index[0]) + 1} (resolution {bad['resolution'].iloc[0]}, quality "
            f"{bad['quality'].iloc[0]}): needs {low} <= {mid} <= {high}"
        )
    return frame


def load_payload_table(name_or_path: str | Path = "jpeg_sizes") -> pd.DataFrame:
    """Load the measured JPEG payload sizes (``data/payloads/jpeg_sizes.csv``): one row per resolution and quality.

    Raises:
        DataError: missing file or columns, wrong types, duplicate (resolution, quality), non-positive sizes,
            or ``p10_bytes <= median_bytes <= p90_bytes`` violated (names file, row and column).
    """
    path = resolve(name_or_path, "payloads")
    return _load_resolution_quality_table(path, PAYLOAD_COLUMNS, "p10_bytes", "median_bytes", "p90_bytes")


def load_decode_profile(name_or_path: str | Path = "x86_jpeg_decode") -> pd.DataFrame:
    """Load a measured JPEG decode profile (``data/profiles/<name>.csv``, written by ``orchlib profile-decode``).

    Raises:
        DataError: as :func:`load_payload_table`, for the ``*_ms`` columns.
    """
    path = resolve(name_or_path, "profiles")
    return _load_resolution_quality_table(path, DECODE_COLUMNS, "p10_ms", "median_ms", "p90_ms")
