"""The testbed's wire format: what a device sends to a server and what comes back, with every check.

A request is one HTTP ``POST /infer`` whose body is the payload the scenario says a device sends:

* ``kind="raw"`` (today's scenarios, ``docs/assumptions.md`` entry 3): the 8-bit RGB input tensor as raw bytes,
  ``Content-Type: application/octet-stream``, with headers ``X-Shape`` (comma-separated, e.g. ``3,224,224``)
  and ``X-Dtype`` (``uint8``). The body must be exactly ``prod(shape) * itemsize`` bytes.
* ``kind="jpeg"``: a JPEG file, ``Content-Type: image/jpeg``, decoded by Pillow on the server to the same
  ``(3, resolution, resolution)`` uint8 tensor.

Every request names its variant in ``X-Variant``. Nothing is unpickled: bytes become an array only through
``numpy.frombuffer`` with a dtype from an allow-list. A body longer than :data:`MAX_BODY_BYTES` is refused.

The response body is the float32 class-score vector (``result_bytes`` of the variant table) as raw bytes;
its timing headers are listed in :data:`TIMING_HEADERS`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

#: Largest request body accepted, bytes: twice the largest raw input (224 x 224 x 3 = 150,528 bytes), so any
#: MobileNetV1 input fits and a runaway client cannot make a server buffer megabytes.
MAX_BODY_BYTES = 2 * 224 * 224 * 3

#: dtypes a raw tensor may have (the scenario's payload is 8-bit RGB; float32 for experiments).
ALLOWED_DTYPES: dict[str, np.dtype] = {"uint8": np.dtype(np.uint8), "float32": np.dtype(np.float32)}

#: payload kinds a scenario may name.
PAYLOAD_KINDS: tuple[str, ...] = ("raw", "jpeg")

#: response headers, all floats: server-side CLOCK_MONOTONIC times (s) and the queue length it reports.
TIMING_HEADERS: tuple[str, ...] = (
    "X-Received-S",  # body fully received (after user-space link shaping in loopback mode)
    "X-Start-S",  # inference started (a worker became free)
    "X-End-S",  # inference finished
    "X-Queue-Length",  # requests at this server (waiting or running) when this one arrived, itself excluded
    "X-Propagation-Ms",  # user-space propagation delay this server added (both directions)
)


class WireError(ValueError):
    """A request that breaks the wire format; ``status`` is the HTTP status to answer with (4xx)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Payload:
    """An encoded request body and its headers."""

    body: bytes
    headers: dict[str, str]


def encode_raw(tensor: np.ndarray, variant: str) -> Payload:
    """A raw-tensor request for ``variant``.

    Raises:
        ValueError: the tensor's dtype is not in :data:`ALLOWED_DTYPES`.
    """
    array = np.ascontiguousarray(tensor)
    if array.dtype.name not in ALLOWED_DTYPES:
        raise ValueError(f"tensor dtype must be one of {sorted(ALLOWED_DTYPES)}, got {array.dtype}")
    return Payload(
        array.tobytes(),
        {
            "Content-Type": "application/octet-stream",
            "X-Shape": ",".join(str(n) for n in array.shape),
            "X-Dtype": array.dtype.name,
            "X-Variant": variant,
        },
    )


def encode_jpeg(tensor: np.ndarray, variant: str, quality: int = 90) -> Payload:
    """A JPEG request for ``variant`` from a ``(3, H, W)`` uint8 tensor (Pillow, ``quality`` 1..95)."""
    from PIL import Image

    if tensor.dtype != np.uint8 or tensor.ndim != 3 or tensor.shape[0] != 3:
        raise ValueError(f"JPEG payloads need a (3, H, W) uint8 tensor, got {tensor.dtype} {tensor.shape}")
    buffer = io.BytesIO()
    Image.fromarray(np.moveaxis(tensor, 0, -1)).save(buffer, format="JPEG", quality=quality)
    return Payload(buffer.getvalue(), {"Content-Type": "image/jpeg", "X-Variant": variant})


def encode(tensor: np.ndarray, variant: str, kind: str) -> Payload:
    """Encode ``tensor`` as payload ``kind`` (:data:`PAYLOAD_KINDS`)."""
    if kind == "raw":
        return encode_raw(tensor, variant)
    if kind == "jpeg":
        return encode_jpeg(tensor, variant)
    raise ValueError(f"payload kind must be one of {PAYLOAD_KINDS}, got {kind!r}")


def check_length(content_length: str | None) -> int | None:
    """The declared body length, refused early when above :data:`MAX_BODY_BYTES`.

    Raises:
        WireError: 400 for a malformed header, 413 for a body that is too large.
    """
    if content_length is None:
        return None
    try:
        n = int(content_length)
    except ValueError:
        raise WireError(400, f"Content-Length must be an integer, got {content_length!r}") from None
    if n < 0:
        raise WireError(400, f"Content-Length must be >= 0, got {n}")
    if n > MAX_BODY_BYTES:
        raise WireError(413, f"request body of {n} bytes exceeds the limit of {MAX_BODY_BYTES} bytes")
    return n


def decode(body: bytes, headers: dict[str, str], resolution: int) -> np.ndarray:
    """The ``(3, resolution, resolution)`` input tensor of a request, or a :class:`WireError`.

    Args:
        body: the request body.
        headers: request headers, lower-case names (as Starlette gives them).
        resolution: the input side length the named variant expects.

    Raises:
        WireError: 413 too large; 415 unknown content type; 400 malformed shape, dtype or body length;
            422 a well-formed tensor of the wrong shape for the variant.
    """
    if len(body) > MAX_BODY_BYTES:
        raise WireError(413, f"request body of {len(body)} bytes exceeds the limit of {MAX_BODY_BYTES} bytes")
    content_type = headers.get("content-type", "")
    expected = (3, resolution, resolution)
    if content_type == "image/jpeg":
        return _decode_jpeg(body, expected)
    if content_type != "application/octet-stream":
        raise WireError(
            415, f"Content-Type must be application/octet-stream or image/jpeg, got {content_type!r}"
        )
    dtype_name = headers.get("x-dtype")
    if dtype_name not in ALLOWED_DTYPES:
        raise WireError(400, f"X-Dtype must be one of {sorted(ALLOWED_DTYPES)}, got {dtype_name!r}")
    shape_text = headers.get("x-shape", "")
    try:
        shape = tuple(int(part) for part in shape_text.split(","))
    except ValueError:
        raise WireError(400, f"X-Shape must be comma-separated integers, got {shape_text!r}") from None
    if not shape or any(n <= 0 for n in shape) or len(shape) > 4:
        raise WireError(400, f"X-Shape must be 1 to 4 positive integers, got {shape_text!r}")
    dtype = ALLOWED_DTYPES[dtype_name]
    if math.prod(shape) * dtype.itemsize != len(body):
        raise WireError(
            400,
            f"body has {len(body)} bytes but X-Shape {shape_text} of {dtype_name} needs "
            f"{math.prod(shape) * dtype.itemsize}",
        )
    if shape != expected:
        raise WireError(422, f"X-Shape {shape_text} does not match the variant's input {expected}")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def _decode_jpeg(body: bytes, expected: tuple[int, int, int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(body)) as image:
            if image.format != "JPEG":
                raise WireError(400, f"body is a {image.format} image, not JPEG")
            array = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as error:
        raise WireError(400, f"body is not a decodable JPEG: {error}") from None
    tensor = np.moveaxis(array, -1, 0)
    if tensor.shape != expected:
        raise WireError(422, f"JPEG of shape {tensor.shape} does not match the variant's input {expected}")
    return tensor


def to_model_input(tensor: np.ndarray) -> np.ndarray:
    """uint8 pixels to the float32 ``(1, 3, H, W)`` batch MobileNet takes, scaled to [-1, 1] (TF-slim's range)."""
    if tensor.dtype == np.uint8:
        return (tensor.astype(np.float32) / 127.5 - 1.0)[None]
    return np.asarray(tensor, dtype=np.float32)[None]
