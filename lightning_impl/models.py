"""PyTorch twin: `build(spec)` returns a plain `nn.Module` for any `NetworkSpec`.

Reads as the same code as `keras_impl/models.py`, one function per concept in the same order. Module
names are the torch state-dict keys that `study.core.spec.ConvLayer.name` gives, so weights cross-load by
name. Tensors are NCHW; the Keras twin is NHWC.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lightning_impl.layers import PadShortcut
from study.core.spec import BN_EPSILON, BN_MOMENTUM_TORCH, BlockSpec, ConvLayer, NetworkSpec

ACTIVATION_MODULES = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}  # one per spec.ACTIVATIONS
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def make_activation(spec: NetworkSpec) -> nn.Module:
    return ACTIVATION_MODULES[spec.activation]()


def make_conv_bn(layer: ConvLayer) -> tuple[nn.Conv2d, nn.Module]:
    """Conv (no bias: BN follows or, without BN, the paper's nets have none either; docs/design.md,
    convention 7) and its BN."""
    # torch pads symmetrically (padding=1 pads one row top and bottom); the Keras twin pads
    # explicitly to match, because Keras 'same' pads (0, 1) at stride 2 on even inputs
    # (docs/design.md, convention 1).
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel, layer.stride, layer.padding, bias=False)
    if not layer.batch_norm:
        return conv, nn.Identity()
    return conv, nn.BatchNorm2d(layer.out_channels, eps=BN_EPSILON, momentum=BN_MOMENTUM_TORCH)


def make_shortcut(spec: NetworkSpec, block: BlockSpec) -> nn.Module | None:
    """None for a plain block (no addition at all), else the module added to the block's output."""
    if block.shortcut is None:
        return None
    if block.shortcut == "identity":
        return nn.Identity()
    if block.shortcut == "pad":
        return PadShortcut(block.stride, block.out_channels - block.in_channels)
    conv, bn = make_conv_bn(spec.block_layers(block)[-1])
    return nn.Sequential(conv, bn) if spec.norm == "batch" else nn.Sequential(conv)


class Block(nn.Module):
    """Basic (conv3x3-BN-act-conv3x3-BN) or bottleneck (1x1-3x3-1x1) block, (+ shortcut), act;
    a deleted block (`NetworkSpec.lesion`), its skip map alone."""

    def __init__(self, spec: NetworkSpec, block: BlockSpec):
        super().__init__()
        self.lesioned = block.lesioned
        main = [layer for layer in spec.block_layers(block) if layer.main_path]
        self.depth = len(main)
        for i, layer in enumerate(main, start=1):
            conv, bn = make_conv_bn(layer)
            self.add_module(f"conv{i}", conv)
            self.add_module(f"bn{i}", bn)
        self.act = make_activation(spec)
        self.downsample = make_shortcut(spec, block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.lesioned:
            return self.downsample(x)
        out = x
        for i in range(1, self.depth + 1):
            out = getattr(self, f"bn{i}")(getattr(self, f"conv{i}")(out))
            if i < self.depth:
                out = self.act(out)
        if self.downsample is not None:
            out = out + self.downsample(x)
        return self.act(out)


class ResNet(nn.Module):
    """Stem, stages ``layer1..layerN`` of `Block`s, global average pool, ``fc`` (logits)."""

    def __init__(self, spec: NetworkSpec):
        super().__init__()
        self.spec = spec
        stem = spec.layers()[0]
        self.conv1, self.bn1 = make_conv_bn(stem)
        self.act = make_activation(spec)
        # ImageNet stem max-pool pads with -inf (torch semantics); the Keras twin does the same (convention 1).
        self.maxpool = nn.MaxPool2d(3, 2, 1) if spec.family == "imagenet" else nn.Identity()
        stages: dict[int, list[Block]] = {}
        for block in spec.blocks():
            stages.setdefault(block.stage, []).append(Block(spec, block))
        for stage, blocks in stages.items():
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.num_stages = len(stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(spec.feature_channels, spec.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        for stage in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{stage}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def init_weights(model: nn.Module) -> None:
    """He normal (fan_out) convs as torchvision; BN gamma 1, beta 0; dense U(+-1/sqrt(fan_in))."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            bound = 1.0 / math.sqrt(module.in_features)
            nn.init.uniform_(module.weight, -bound, bound)
            nn.init.uniform_(module.bias, -bound, bound)


def build(
    spec: NetworkSpec, dtype: str = "float32", seed: int | None = None, device: str = "cpu", initialize: bool = True
) -> ResNet:
    """The network of `spec`, freshly initialized by torch's RNG (`torch.manual_seed(seed)` first if
    given), on `device` ("cpu" or "gpu"). `initialize=False`: the recipe's initialization is skipped
    (the weights are torch's defaults), for a caller that loads a whole state next (the lesion study
    builds 40 networks per trained one)."""
    if seed is not None:
        torch.manual_seed(seed)
    model = ResNet(spec)
    if initialize:
        init_weights(model)
    return model.to(DTYPES[dtype]).to("cuda" if device == "gpu" else "cpu")


def count_trainable_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Forward MACs per example counted from the built model (conv and dense; dense bias = 1 MAC)."""
    macs = 0

    def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs += output[0].numel() * module.in_channels // module.groups * kh * kw
        else:
            macs += (module.in_features + 1) * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    h, w, c = input_shape
    param = next(model.parameters())
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, c, h, w, dtype=param.dtype, device=param.device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return macs
