"""The names of the 32 published MobileNetV1 variants (TF-slim), without torch.

What the command line, the scenario checks and the testbed need to name and parse a variant, importable without
torch (about a second to import); :mod:`orchlib.profiling.mobilenet` builds the networks and re-exports these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Published width multipliers, as spelled in the TF-slim variant names.
WIDTH_LABELS: dict[str, float] = {"1.0": 1.0, "0.75": 0.75, "0.50": 0.5, "0.25": 0.25}

#: Published input resolutions (pixels, square images).
RESOLUTIONS: tuple[int, ...] = (224, 192, 160, 128)


@dataclass(frozen=True)
class Variant:
    """One of the 32 published MobileNetV1 variants."""

    name: str
    """TF-slim name, e.g. ``mobilenet_v1_0.50_160_quant``."""
    width_multiplier: float
    """Channel multiplier alpha (1.0, 0.75, 0.5 or 0.25)."""
    resolution: int
    """Input height and width in pixels."""
    quantized: bool
    """True for the 8-bit (int8) model, False for float32."""


def variant_names() -> list[str]:
    """Return the 32 variant names in the order of the TF-slim table (all float32 first, then all int8)."""
    return [
        f"mobilenet_v1_{label}_{resolution}{suffix}"
        for suffix in ("", "_quant")
        for label in WIDTH_LABELS
        for resolution in RESOLUTIONS
    ]


_NAME_PATTERN = re.compile(r"mobilenet_v1_(?P<width>[0-9.]+)_(?P<resolution>[0-9]+)(?P<quant>_quant)?")


def parse_variant(name: str) -> Variant:
    """Parse a TF-slim variant name such as ``mobilenet_v1_0.25_128_quant``.

    Raises:
        ValueError: if ``name`` is not one of :func:`variant_names` (the message lists the valid names).
    """
    match = _NAME_PATTERN.fullmatch(name) if isinstance(name, str) else None
    if match is None or match["width"] not in WIDTH_LABELS or int(match["resolution"]) not in RESOLUTIONS:
        raise ValueError(f"unknown variant name {name!r}; valid names: {', '.join(variant_names())}")
    return Variant(
        name=name,
        width_multiplier=WIDTH_LABELS[match["width"]],
        resolution=int(match["resolution"]),
        quantized=match["quant"] is not None,
    )
