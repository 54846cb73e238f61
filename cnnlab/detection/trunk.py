"""A detector's trunk: a zoo classifier cut to its stages of given strides (through ``features_only``)."""

from __future__ import annotations

from typing import Sequence

from torch import nn

from ..errors import ConfigError
from ..registry import create_model, model_info


def detector_trunk(backbone: str, strides: Sequence[int], in_channels: int) -> nn.Module:
    """The zoo network ``backbone`` as an extractor of its stages of ``strides`` pixels (one map each, the
    deepest stage of each stride), on images of ``in_channels`` channels.

    A network's small-input form is never used: the stem's strides decide which stage has which stride,
    and detectors see images of 128 pixels and more.
    """
    info = model_info(backbone)
    args = {"in_channels": in_channels} if "in_channels" in info.arguments else {}
    if "small_input" in info.arguments:
        args["small_input"] = False
    probe = create_model(backbone, features_only=True, **args)
    have = [int(f.reduction) for f in probe.feature_info]
    missing = [s for s in strides if s not in have]
    if missing:
        raise ConfigError(f"{backbone} has stages of strides {have}, none of {missing}; choose a feature stride "
                          "among them")
    indices = tuple(max(i for i, r in enumerate(have) if r == s) for s in strides)
    return create_model(backbone, features_only=True, out_indices=indices, **args)
