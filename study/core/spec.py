"""The framework-neutral specification of every network the study builds.

Pure Python (standard library only): both twins import this module, it imports neither.

A `NetworkSpec` fixes a network completely; `NetworkSpec.blocks()` and `NetworkSpec.layers()` unroll
it into the exact list of blocks and weighted layers that `keras_impl.models.build` and
`lightning_impl.models.build` create, so parameter and multiply-accumulate (MAC) counts are computed
here analytically and regression-tested against both built models.

Families
- ``cifar`` (He et al. 2015, section 4.2): depth = 6n+2; stem conv3x3(16)-BN-act; three stages of n
  basic blocks with 16/32/64 filters, stride 2 on the first block of stages 2 and 3; global average
  pool; dense.
- ``imagenet`` (torchvision layout): 7x7/2 stem conv, 3x3/2 max-pool, four stages of 64/128/256/512
  wide blocks; basic blocks for 18/34, bottleneck blocks (expansion 4) for 50/101/152.

Shortcuts where a block changes shape (stride or channels):
- ``A``: parameter-free; ``x[:, ::s, ::s]`` then zero channels appended *after* the existing ones.
- ``B``: 1x1 convolution (with the block's stride) + BN.
Where shape is unchanged the shortcut is the identity. A plain twin (``residual=False``) has the same
main-path layers and no shortcut at all, so it has no projection layers either.

Layer names follow torch state-dict keys (``conv1``, ``layer2.0.conv1``, ``layer2.0.downsample.0``,
``fc``) and both twins use them, so a weight port between the twins is a table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

from study.core.errors import UserError

MAX_CIFAR_DEPTH = 1202  # the deepest CIFAR-style net of He et al. (section 4.2): the largest depth accepted
MAX_INPUT = (4096, 4096, 64)  # the largest input H, W, C accepted
MAX_CLASSES = 100_000

FAMILIES = ("cifar", "imagenet")
ARCHS = ("plain", "resnet")  # `NetworkSpec.arch`: the plain twin, or the residual net
SHORTCUTS = ("A", "B")
ACTIVATIONS = ("relu", "tanh", "sigmoid")
NORMS = ("batch", "none")
BOTTLENECK_STRIDES = ("3x3", "1x1")  # torchvision v1.5 (default) | paper's v1

CIFAR_PRESET_DEPTHS = (20, 32, 44, 56, 110, 1202)
CIFAR_PLAIN_PRESET_DEPTHS = (20, 32, 44, 56, 110)
CIFAR_WIDTHS = (16, 32, 64)

# depth -> (block kind, blocks per stage); widths 64/128/256/512 as torchvision.
IMAGENET_LAYOUTS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4

BN_MOMENTUM_TORCH = 0.1  # torch convention; Keras momentum = 1 - this (docs/design.md, convention 2)
BN_EPSILON = 1e-5


class SpecError(UserError, ValueError):
    """An invalid specification; the message is one line meant for the user."""


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution/pooling with symmetric zero padding (torch semantics)."""
    return (size + 2 * padding - kernel) // stride + 1


@dataclass(frozen=True)
class ConvLayer:
    """One weighted layer as built by both twins. Shapes are (height, width); MACs per example."""

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    batch_norm: bool  # followed by a BN layer named like this one with "conv" -> "bn"
    main_path: bool  # False for projection shortcuts (not counted in the paper's depth)

    @property
    def bn_name(self) -> str:
        """Name of the BN layer after this conv: conv1 -> bn1, downsample.0 -> downsample.1."""
        if self.name.endswith("downsample.0"):
            return self.name[:-1] + "1"
        head, _, tail = self.name.rpartition("conv")
        return f"{head}bn{tail}"

    @property
    def params(self) -> int:
        bn = 2 * self.out_channels if self.batch_norm else 0
        return self.kernel * self.kernel * self.in_channels * self.out_channels + bn

    @property
    def macs(self) -> int:
        h, w = self.out_hw
        return h * w * self.out_channels * self.in_channels * self.kernel * self.kernel


@dataclass(frozen=True)
class BlockSpec:
    """One residual (or plain) block, named ``layer{stage}.{index}`` like torchvision."""

    stage: int  # 1-based
    index: int  # 0-based within the stage
    kind: str  # "basic" | "bottleneck"
    in_channels: int
    width: int  # filters of the 3x3 conv(s)
    out_channels: int
    stride: int
    in_hw: tuple[int, int]
    out_hw: tuple[int, int]
    shortcut: str | None  # None (plain twin) | "identity" | "pad" (option A) | "projection"
    lesioned: bool = False  # deleted (`NetworkSpec.lesion`): the block computes its skip map alone

    @property
    def name(self) -> str:
        return f"layer{self.stage}.{self.index}"


@dataclass(frozen=True)
class NetworkSpec:
    """A complete, validated description of one network (see the module docstring)."""

    family: str  # "cifar" | "imagenet"
    depth: int  # weighted layers on the main path: convolutions + the classifier
    residual: bool = True  # False: the plain twin (same main path, no shortcuts)
    shortcut: str | None = None  # "A" | "B"; None: the family's default (cifar A, imagenet B)
    activation: str = "relu"  # after the stem, inside blocks, and after each addition
    norm: str = "batch"  # "batch": BN after every conv; "none": no normalization layers
    input_shape: tuple[int, int, int] | None = None  # (H, W, C); None: cifar 32x32x3, imagenet 224x224x3
    classes: int | None = None  # None: cifar 10, imagenet 1000
    bottleneck_stride: str = "3x3"  # where a bottleneck block strides: "3x3" (v1.5) | "1x1" (v1)
    lesion: tuple[str, ...] = ()  # blocks deleted at test time (Veit et al. 2016): see `blocks`

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise SpecError(f"family must be one of {', '.join(FAMILIES)}; got {self.family!r}")
        defaults = {"cifar": ("A", (32, 32, 3), 10), "imagenet": ("B", (224, 224, 3), 1000)}
        shortcut, input_shape, classes = defaults[self.family]
        if self.shortcut is None:
            object.__setattr__(self, "shortcut", shortcut)
        if self.input_shape is None:
            object.__setattr__(self, "input_shape", input_shape)
        if self.classes is None:
            object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "lesion", tuple(self.lesion))
        self._validate()

    def _validate(self) -> None:
        if self.family == "cifar":
            if self.depth < 8 or (self.depth - 2) % 6:
                raise SpecError(
                    f"depth must be 6n+2 with n >= 1 (8, 14, 20, 26, ...) for CIFAR-style nets; got {self.depth}"
                )
            if self.depth > MAX_CIFAR_DEPTH:
                raise SpecError(f"depth must be at most {MAX_CIFAR_DEPTH} (He et al.'s deepest net); got {self.depth}")
        elif self.depth not in IMAGENET_LAYOUTS:
            raise SpecError(
                f"ImageNet-style depth must be one of {', '.join(map(str, IMAGENET_LAYOUTS))}; got {self.depth}"
            )
        for field, value, choices in (
            ("shortcut", self.shortcut, SHORTCUTS),
            ("activation", self.activation, ACTIVATIONS),
            ("norm", self.norm, NORMS),
            ("bottleneck_stride", self.bottleneck_stride, BOTTLENECK_STRIDES),
        ):
            if value not in choices:
                raise SpecError(f"{field} must be one of {', '.join(choices)}; got {value!r}")
        shape = self.input_shape
        fits = len(shape) == 3 and all(
            isinstance(v, int) and 1 <= v <= limit for v, limit in zip(shape, MAX_INPUT, strict=True)
        )
        if not fits:
            raise SpecError(f"input shape must be three positive integers H,W,C up to {MAX_INPUT}; got {shape}")
        if not isinstance(self.classes, int) or not 2 <= self.classes <= MAX_CLASSES:
            raise SpecError(f"classes must be an integer in 2..{MAX_CLASSES}; got {self.classes}")
        names = [f"layer{s}.{i}" for s, count in enumerate(self.stage_blocks, start=1) for i in range(count)]
        if unknown := [name for name in self.lesion if name not in names]:
            raise SpecError(f"cannot delete {', '.join(unknown)}: {self.name}'s blocks are {names[0]}..{names[-1]}")
        factor = self.downsampling
        if min(shape[:2]) < factor:
            raise SpecError(
                f"input {shape[0]}x{shape[1]} is too small for {self.name}: it downsamples by {factor}, "
                f"so height and width must each be at least {factor}"
            )

    # -- derived structure -------------------------------------------------------------------

    @property
    def arch(self) -> str:
        return ARCHS[self.residual]

    @property
    def name(self) -> str:
        """Preset-style name that `parse_spec` maps back to this family and depth."""
        if self.family == "imagenet" or self.depth in CIFAR_PRESET_DEPTHS:
            return f"{self.arch}{self.depth}"
        return f"{self.arch}-{self.depth}"

    @property
    def block_kind(self) -> str:
        return IMAGENET_LAYOUTS[self.depth][0] if self.family == "imagenet" else "basic"

    @property
    def stage_blocks(self) -> tuple[int, ...]:
        if self.family == "imagenet":
            return IMAGENET_LAYOUTS[self.depth][1]
        n = (self.depth - 2) // 6
        return (n, n, n)

    @property
    def stage_widths(self) -> tuple[int, ...]:
        return IMAGENET_WIDTHS if self.family == "imagenet" else CIFAR_WIDTHS

    @property
    def expansion(self) -> int:
        return BOTTLENECK_EXPANSION if self.block_kind == "bottleneck" else 1

    @property
    def stem_channels(self) -> int:
        return self.stage_widths[0] if self.family == "cifar" else 64

    @property
    def downsampling(self) -> int:
        """Total spatial downsampling factor: the input side must be at least this."""
        return 4 if self.family == "cifar" else 32

    @property
    def feature_channels(self) -> int:
        """Channels entering global average pooling and the classifier."""
        return self.stage_widths[-1] * self.expansion

    def stem_hw(self) -> tuple[int, int]:
        """Spatial size after the stem (after the max-pool for ImageNet-style nets)."""
        h, w = self.input_shape[:2]
        if self.family == "cifar":
            return (h, w)
        size = lambda s: conv_output_size(conv_output_size(s, 7, 2, 3), 3, 2, 1)  # noqa: E731
        return (size(h), size(w))

    def blocks(self) -> Iterator[BlockSpec]:
        """The blocks in build order.

        A block named in `lesion` is deleted: its main path is gone and it computes its skip map alone
        (no activation after it). A residual block keeps its shortcut (the identity, option A's
        subsample-and-pad, or option B's projection); a plain block becomes the identity, or option A's
        parameter-free subsample-and-pad where it changes shape, as no identity fits there. In a ReLU
        net the residual case equals dropping the residual branch and keeping the activation after the
        addition, since the block's input is already non-negative.
        """
        channels, hw = self.stem_channels, self.stem_hw()
        for stage, (width, count) in enumerate(zip(self.stage_widths, self.stage_blocks, strict=True), start=1):
            for index in range(count):
                stride = 2 if stage > 1 and index == 0 else 1
                out_channels = width * self.expansion
                out_hw = (conv_output_size(hw[0], 3, stride, 1), conv_output_size(hw[1], 3, stride, 1))
                lesioned = f"layer{stage}.{index}" in self.lesion
                if not self.residual and not lesioned:
                    shortcut = None
                elif stride == 1 and channels == out_channels:
                    shortcut = "identity"
                else:
                    shortcut = "pad" if self.shortcut == "A" or not self.residual else "projection"
                yield BlockSpec(
                    stage, index, self.block_kind, channels, width, out_channels, stride, hw, out_hw, shortcut,
                    lesioned,
                )  # fmt: skip
                channels, hw = out_channels, out_hw

    def block_layers(self, block: BlockSpec) -> list[ConvLayer]:
        """The convolutions of one block: main path first (conv1, conv2[, conv3]), then projection."""
        bn = self.norm == "batch"
        p = block.name
        if block.lesioned:
            layers = []
        elif block.kind == "basic":
            mid_hw = block.out_hw
            layers = [
                ConvLayer(
                    f"{p}.conv1", block.in_channels, block.width, 3, block.stride, 1, block.in_hw, mid_hw, bn, True
                ),
                ConvLayer(f"{p}.conv2", block.width, block.out_channels, 3, 1, 1, mid_hw, block.out_hw, bn, True),
            ]
        else:
            s1, s3 = (1, block.stride) if self.bottleneck_stride == "3x3" else (block.stride, 1)
            hw1 = tuple(conv_output_size(v, 1, s1, 0) for v in block.in_hw)
            layers = [
                ConvLayer(f"{p}.conv1", block.in_channels, block.width, 1, s1, 0, block.in_hw, hw1, bn, True),
                ConvLayer(f"{p}.conv2", block.width, block.width, 3, s3, 1, hw1, block.out_hw, bn, True),
                ConvLayer(f"{p}.conv3", block.width, block.out_channels, 1, 1, 0, block.out_hw, block.out_hw, bn, True),
            ]
        if block.shortcut == "projection":
            layers.append(
                ConvLayer(
                    f"{p}.downsample.0",
                    block.in_channels,
                    block.out_channels,
                    1,
                    block.stride,
                    0,
                    block.in_hw,
                    block.out_hw,
                    bn,
                    False,
                )
            )
        return layers

    def layers(self) -> list[ConvLayer]:
        """Every weighted layer in build order; the classifier is the last (a 1x1 'conv' on 1x1)."""
        bn = self.norm == "batch"
        h, w, c = self.input_shape
        if self.family == "cifar":
            stem = ConvLayer("conv1", c, self.stem_channels, 3, 1, 1, (h, w), (h, w), bn, True)
        else:
            out = (conv_output_size(h, 7, 2, 3), conv_output_size(w, 7, 2, 3))
            stem = ConvLayer("conv1", c, self.stem_channels, 7, 2, 3, (h, w), out, bn, True)
        layers = [stem]
        for block in self.blocks():
            layers.extend(self.block_layers(block))
        return layers

    # -- complexity ---------------------------------------------------------------------------

    @property
    def weighted_layers(self) -> int:
        """Convolutions on the main path plus the classifier: the paper's depth."""
        return sum(layer.main_path for layer in self.layers()) + 1

    @property
    def trainable_params(self) -> int:
        """Trainable parameters: conv kernels, BN gamma and beta, classifier kernel and bias."""
        classifier = self.feature_channels * self.classes + self.classes
        return sum(layer.params for layer in self.layers()) + classifier

    @property
    def classifier_macs(self) -> int:
        """Dense MACs, counting the bias add as one MAC per output (torchinfo's convention)."""
        return (self.feature_channels + 1) * self.classes

    @property
    def macs(self) -> int:
        """Forward multiply-accumulates per example: convolutions and the classifier.

        BN, activations, additions and pooling are not counted. ResNet-50 v1.5 at 224x224:
        4,089,185,256.
        """
        return sum(layer.macs for layer in self.layers()) + self.classifier_macs

    @property
    def train_flops(self) -> int:
        """Training FLOPs per example: forward and backward ~ 3x the forward pass, 2 FLOPs per MAC."""
        return 3 * 2 * self.macs

    def with_overrides(self, **overrides) -> NetworkSpec:
        """A copy with the given fields replaced (None values are ignored), validated anew."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["lesion"] = list(self.lesion)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> NetworkSpec:
        return cls(**{**data, "input_shape": tuple(data["input_shape"]), "lesion": tuple(data.get("lesion", ()))})
