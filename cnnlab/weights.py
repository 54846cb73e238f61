"""Pretrained weights: where ``create_model(name, pretrained=...)`` finds them.

cnnlab ships no pretrained weight files yet; asking for them is a clear error rather than silently
random weights. ``cnnlab train`` makes a checkpoint that ``load_checkpoint`` rebuilds instead.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError

# model name -> {tag: file}; filled as weight files are published.
PRETRAINED: dict[str, dict[str, str]] = {}


def available(name: str) -> list[str]:
    """The pretrained tags published for model ``name``."""
    return sorted(PRETRAINED.get(name, {}))


def load_pretrained(name: str, tag: bool | str, **kwargs: Any):
    tags = available(name)
    wanted = "" if tag is True else str(tag)
    if not tags:
        raise ConfigError(f"no pretrained weights are published for {name}; train one with "
                          f"'cnnlab train {name}' and load it with load_checkpoint(RUN_DIR)")
    raise ConfigError(f"{name} has no pretrained weights '{wanted}' (available: {', '.join(tags)})")
