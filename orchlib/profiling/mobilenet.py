"""MobileNetV1 in plain torch and its int8 post-training quantization (its 32 variants' names: :mod:`.variants`).

The network follows Howard et al. 2017 ("MobileNets", arXiv 1704.04861) as implemented in TF-slim
(tensorflow/models, ``research/slim/nets/mobilenet_v1.py``): a 3x3 stride-2 convolution with 32 channels, then
13 depthwise-separable blocks, global average pooling and a 1x1 convolution to 1001 classes (ImageNet's 1000
plus TF-slim's "background" class), so that the parameter count matches the published table.

The weights are **untrained** (seeded random initialisation). These models exist only to measure latency on a
real CPU; every accuracy in orchlib comes from the published TF-slim table, never from these models.

Implementation details and assumptions (reconstruction choices, with reasons):

1. Activations are ReLU, not TF-slim's ReLU6, so that torch can fuse conv + BatchNorm + activation into one
   quantized kernel (torch fuses ReLU but not ReLU6). TFLite fuses ReLU6 into its convolutions as well, so a
   fused kernel is the faithful latency model; the arithmetic cost of the clamp is negligible either way.
2. Channels are ``int(c * width_multiplier)`` as the issue specifies. TF-slim uses
   ``max(int(c * alpha), min_depth=8)``; for the published multipliers (>= 0.25) both give the same channels.
3. TF-slim's dropout before the logits is omitted: it is the identity at inference time.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import torch
from torch import nn
from torch.ao import quantization as tq
from torch.utils.flop_counter import FlopCounterMode

# The variants' names need no torch: defined in orchlib.profiling.variants, still importable from here.
from orchlib.profiling.variants import RESOLUTIONS as RESOLUTIONS
from orchlib.profiling.variants import WIDTH_LABELS as WIDTH_LABELS
from orchlib.profiling.variants import Variant as Variant
from orchlib.profiling.variants import parse_variant
from orchlib.profiling.variants import variant_names as variant_names

#: Number of output classes of the TF-slim checkpoints (1000 ImageNet classes + 1 background class).
N_CLASSES = 1001

# (output channels before the width multiplier, stride) of the 13 depthwise-separable blocks (Howard et al.
# 2017, Table 1).
_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
_STEM_CHANNELS = 32


class ConvBNReLU(nn.Sequential):
    """Convolution without bias, BatchNorm and ReLU: children ``0``, ``1``, ``2`` (fused by quantization)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class MobileNetV1(nn.Module):
    """MobileNetV1 with TF-slim's 1001-class 1x1-convolution head and quantization stubs.

    Input: float tensor of shape ``(batch, 3, resolution, resolution)``. Output: logits ``(batch, 1001)``.
    The quantization stubs are identities until :func:`quantize_int8` converts the model. Weights are
    untrained; see the module docstring.

    Args:
        width_multiplier: channel multiplier alpha; every layer has ``int(c * alpha)`` channels.
        resolution: input height and width in pixels (kept as an attribute; the network itself is fully
            convolutional).
    """

    def __init__(self, width_multiplier: float, resolution: int) -> None:
        super().__init__()
        self.width_multiplier = width_multiplier
        self.resolution = resolution
        channels = int(_STEM_CHANNELS * width_multiplier)
        layers: list[nn.Module] = [ConvBNReLU(3, channels, kernel_size=3, stride=2, groups=1)]
        for base_channels, stride in _BLOCKS:
            out_channels = int(base_channels * width_multiplier)
            layers.append(ConvBNReLU(channels, channels, kernel_size=3, stride=stride, groups=channels))
            layers.append(ConvBNReLU(channels, out_channels, kernel_size=1, stride=1, groups=1))
            channels = out_channels
        self.quant = tq.QuantStub()
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Conv2d(channels, N_CLASSES, kernel_size=1, bias=True)
        self.dequant = tq.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.quant(x)
        x = self.classifier(self.pool(self.features(x)))
        return torch.flatten(self.dequant(x), 1)


def build_mobilenet_v1(
    width_multiplier: float,
    resolution: int = 224,
    rng: np.random.Generator | int | None = None,
) -> MobileNetV1:
    """Build an untrained float32 MobileNetV1 in eval mode.

    The weights are random and serve latency measurement only: accuracy always comes from the published
    TF-slim table. Convolutions are He-normal in fan-in mode and BatchNorm is the identity, which keeps
    activations near unit scale through all 27 layers (fan-out mode, as torchvision uses for training, shrinks
    them to ~1e-17 through the depthwise layers), so int8 calibration sees realistic ranges.

    Args:
        width_multiplier: channel multiplier alpha > 0 (published: 1.0, 0.75, 0.5, 0.25).
        resolution: input height and width in pixels, >= 32 (published: 224, 192, 160, 128).
        rng: seed or generator for the weight initialisation.

    Raises:
        ValueError: if ``width_multiplier`` leaves a layer without channels or ``resolution`` < 32.
    """
    if not np.isfinite(width_multiplier) or int(_STEM_CHANNELS * width_multiplier) < 1:
        raise ValueError(
            f"width_multiplier must be >= {1 / _STEM_CHANNELS} so every layer keeps a channel, "
            f"got {width_multiplier}"
        )
    _check_resolution(resolution)
    generator = _torch_generator(rng)
    model = MobileNetV1(float(width_multiplier), int(resolution))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(
                    module.weight, mode="fan_in", nonlinearity="relu", generator=generator
                )
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
    return model.eval()


def quantize_int8(
    model: MobileNetV1,
    resolution: int,
    n_calibration: int = 8,
    rng: np.random.Generator | int | None = None,
) -> nn.Module:
    """Return an int8 copy of ``model`` made by post-training static quantization (torch.ao.quantization).

    Steps: fuse every conv + BatchNorm + ReLU, attach the default qconfig of the active quantized engine
    (x86/fbgemm), insert observers, calibrate on ``n_calibration`` random images drawn uniformly from
    [-1, 1] (TF-slim's MobileNet input range) with a ``torch.Generator`` seeded from ``rng``, and convert.
    The weights stay untrained, so the quantized model's accuracy is meaningless; only its latency is used.
    ``model`` itself is left unchanged.

    Args:
        model: a float model from :func:`build_mobilenet_v1`.
        resolution: calibration image height and width in pixels.
        n_calibration: number of calibration images, >= 1.
        rng: seed or generator for the calibration images.

    Raises:
        TypeError: if ``model`` is not a :class:`MobileNetV1`.
        ValueError: if ``resolution`` < 32, ``n_calibration`` < 1, or the active quantized engine is not x86 or fbgemm.
    """
    if not isinstance(model, MobileNetV1):
        raise TypeError(f"model must be a MobileNetV1 from build_mobilenet_v1, got {type(model).__name__}")
    if isinstance(n_calibration, bool) or not isinstance(n_calibration, int) or n_calibration < 1:
        raise ValueError(f"n_calibration must be an integer >= 1, got {n_calibration!r}")
    _check_resolution(resolution)
    engine = torch.backends.quantized.engine
    if engine not in ("x86", "fbgemm"):
        raise ValueError(
            f"torch.backends.quantized.engine is {engine!r}; set it to 'x86' (or 'fbgemm') before quantizing"
        )
    generator = _torch_generator(rng)
    quantized = copy.deepcopy(model).eval()
    for module in quantized.modules():
        if isinstance(module, ConvBNReLU):
            tq.fuse_modules(module, ["0", "1", "2"], inplace=True)
    quantized.qconfig = tq.get_default_qconfig(engine)
    images = torch.rand((n_calibration, 3, resolution, resolution), generator=generator) * 2 - 1
    with warnings.catch_warnings():
        # Two UserWarnings that torch raises from its own eager-mode quantization path, filtered here only:
        # - its default x86/fbgemm qconfig builds observers with reduce_range=True (7-bit activations, needed
        #   on CPUs without VNNI) and the observer then asks the qconfig's author to use quant_min/quant_max;
        # - torch 2.13 announces that quantized tensor creation (quantize_per_tensor/_channel, used by
        #   convert and by every QuantStub) will be removed in a future release. torch emits this one once per
        #   process, so emitting it here also keeps it out of later forward passes of the converted model.
        warnings.filterwarnings("ignore", message="Please use quant_min and quant_max", category=UserWarning)
        warnings.filterwarnings(
            "ignore", message="torch.quantize_per_tensor, torch.quantize_per_channel", category=UserWarning
        )
        tq.prepare(quantized, inplace=True)
        with torch.inference_mode():
            quantized(images)
        tq.convert(quantized, inplace=True)
    return quantized


def build_variant(name: str, rng: np.random.Generator | int | None = None) -> nn.Module:
    """Build the untrained model of a named variant: float32, or int8 via :func:`quantize_int8`.

    Args:
        name: a name from :func:`variant_names`, e.g. ``mobilenet_v1_0.25_128_quant``.
        rng: seed or generator for the weights and (int8 only) the calibration images.

    Raises:
        ValueError: if ``name`` is unknown (the message lists the valid names).
    """
    variant = parse_variant(name)
    rng = np.random.default_rng(rng)
    model = build_mobilenet_v1(variant.width_multiplier, variant.resolution, rng=rng)
    return quantize_int8(model, variant.resolution, rng=rng) if variant.quantized else model


def count_macs_and_params(model: nn.Module, resolution: int) -> tuple[int, int]:
    """Count multiply-accumulates of one batch-1 forward pass and the parameters of a float model.

    MACs are FLOPs / 2 as counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix
    products; BatchNorm, ReLU and pooling are not counted, as in the published table). Parameters are
    ``sum(p.numel() for p in model.parameters())``, BatchNorm scales and shifts included.

    Args:
        model: a float model (count a quantized model's float original: quantized modules hold packed
            weights that neither counter sees).
        resolution: input height and width in pixels.

    Returns:
        ``(macs, params)`` as integers.

    Raises:
        ValueError: if ``model`` contains quantized modules or ``resolution`` < 32.
    """
    _check_resolution(resolution)
    if any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules()):
        raise ValueError("model is quantized; count_macs_and_params needs the float model it was built from")
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros((1, 3, resolution, resolution)))
    macs = counter.get_total_flops() // 2
    params = sum(p.numel() for p in model.parameters())
    return int(macs), int(params)


def _torch_generator(rng: np.random.Generator | int | None) -> torch.Generator:
    """Return a CPU ``torch.Generator`` seeded from ``rng`` (normalised with ``np.random.default_rng``)."""
    seed = int(np.random.default_rng(rng).integers(2**63 - 1))
    return torch.Generator().manual_seed(seed)


def _check_resolution(resolution: int) -> None:
    """Raise ValueError unless ``resolution`` is an integer >= 32 pixels."""
    # Five stride-2 layers divide the side by 32; below that the last feature map is empty.
    if isinstance(resolution, bool) or not isinstance(resolution, int | np.integer) or resolution < 32:
        raise ValueError(f"resolution must be an integer >= 32 pixels, got {resolution!r}")
