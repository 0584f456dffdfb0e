"""Request payloads: pure, array-valued rules for the bytes a request uploads (assumptions P1-P3).

``raw``: the model's input tensor, ``resolution**2 * 3`` bytes, the same for every request (data entry 3).
``jpeg``: a JPEG of a real photograph at the model's resolution; each request draws one log-normal factor
``z`` (one photograph, so its size is correlated across resolutions) and sends
``median_bytes[resolution] * exp(sigma[resolution] * z)`` with ``sigma`` from the measured p10/p90 (same
form as the compute-time noise, L7).
"""

from __future__ import annotations

import numpy as np

from orchlib.system import latency


def jpeg_sigma(p10_bytes: np.ndarray, p90_bytes: np.ndarray) -> np.ndarray:
    """Log-normal shape of the JPEG sizes from their measured p10 and p90."""
    return latency.lognormal_sigma(p10_bytes, p90_bytes)


def payload_bytes(median_bytes: np.ndarray, sigma: np.ndarray, z: np.ndarray | float) -> np.ndarray:
    """Bytes sent for draw(s) ``z``: ``median * exp(sigma * z)`` (broadcasts; equals the median at z = 0)."""
    return np.asarray(median_bytes, dtype=float) * np.exp(np.asarray(sigma, dtype=float) * z)
