"""The named networks: presets (``resnet56``, ``plain20``, ``resnet50``, ...) and `parse_spec`, which
maps a name the command line takes to a `NetworkSpec`."""

from __future__ import annotations

import re

from study.core.spec import (
    ARCHS,
    CIFAR_PLAIN_PRESET_DEPTHS,
    CIFAR_PRESET_DEPTHS,
    IMAGENET_LAYOUTS,
    NetworkSpec,
    SpecError,
)


def preset_names() -> list[str]:
    """The named presets, in the order a user would read them."""
    names = [f"resnet{d}" for d in CIFAR_PRESET_DEPTHS] + [f"plain{d}" for d in CIFAR_PLAIN_PRESET_DEPTHS]
    names += [f"{arch}{d}" for arch in reversed(ARCHS) for d in IMAGENET_LAYOUTS]
    return names


_PRESET = re.compile(r"(resnet|plain)([0-9]{1,6})")  # ASCII digits only (no other script's digits)
_GENERIC = re.compile(r"(resnet|plain)-([0-9]{1,6})")


def parse_spec(name: str, **overrides) -> NetworkSpec:
    """Map a preset name (``resnet56``, ``plain18``) or ``resnet-<6n+2>``/``plain-<6n+2>`` to a spec.

    ``resnet-<d>`` is always the CIFAR family (so ``resnet-50`` is the 6n+2 net, ``resnet50`` the
    ImageNet bottleneck net). Keyword overrides are spec fields; None means "keep the default".
    """
    generic = _GENERIC.fullmatch(name)
    preset = _PRESET.fullmatch(name)
    if generic:
        arch, depth, family = generic.group(1), int(generic.group(2)), "cifar"
    elif preset and name in preset_names():
        arch, depth = preset.group(1), int(preset.group(2))
        family = "imagenet" if depth in IMAGENET_LAYOUTS else "cifar"
    elif preset and int(preset.group(2)) not in IMAGENET_LAYOUTS:
        # e.g. resnet21 or plain1202: a CIFAR-style depth; validation explains what is wrong.
        arch, depth, family = preset.group(1), int(preset.group(2)), "cifar"
    else:
        raise SpecError(
            f"unknown spec {name!r}; choose a preset ({', '.join(preset_names())}) or resnet-<6n+2> / plain-<6n+2>"
        )
    fields = {k: v for k, v in overrides.items() if v is not None}
    return NetworkSpec(family=family, depth=depth, residual=arch == "resnet", **fields)
