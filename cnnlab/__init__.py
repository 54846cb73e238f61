"""cnnlab: convolutional neural networks made runnable and inspectable.

The classic networks of the lecture decks (LeNet-5 to DenseNet), built faithfully to their papers,
with training, per-layer analysis, visualisation, an HTTP service and a NumPy reference engine.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .registry import create_model, list_models, model_info, register_model  # noqa: E402


def __getattr__(name: str):
    # Heavier entry points load on first use so `import cnnlab` stays quick.
    if name == "summarize":
        from .analysis import summarize

        return summarize
    if name == "load_checkpoint":
        from .train.checkpoint import load_checkpoint

        return load_checkpoint
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


__all__ = ["create_model", "list_models", "model_info", "register_model", "summarize", "load_checkpoint"]
