"""Checkpoints: safetensors weights plus JSON metadata; nothing is ever unpickled.

A checkpoint is a folder::

    model.safetensors    the model's state_dict (parameters and buffers)
    meta.json            how to rebuild and use the model: task, architecture name and arguments,
                         class names, input size, normalisation, dataset, config, epoch, metrics
                         (typed and checked by :class:`~cnnlab.train.meta.CheckpointMeta`)
    train_state.safetensors / train_state.json
                         optimiser, scheduler, RNG and loop state, for ``cnnlab train --resume``

Each file is written atomically (temporary file, fsync, rename), meta.json last. All three carry the
same ``stamp``; a load that finds different stamps knows a save was interrupted between files and
says so instead of mixing two epochs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..errors import CheckpointError
from ..io import atomic_write_bytes, atomic_write_text, clean_stale_temporaries
from .meta import FORMAT, CheckpointMeta, Preprocessing

MAX_PARAMETERS = 4_000_000_000  # a model this large is refused before it is allocated
MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"
STATE_FILE = "train_state.safetensors"
STATE_META_FILE = "train_state.json"


# --- turning nested state (optimiser, scheduler, RNG) into tensors + JSON, and back -----------------

def flatten_state(obj: Any, prefix: str = "s") -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested structure into a flat dict of tensors and a JSON tree that points at them."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, key: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach().cpu().contiguous()
            return {"__tensor__": key}
        if isinstance(value, dict):
            return {"__dict__": [[walk(k, f"{key}.k{i}"), walk(v, f"{key}.{i}")] for i, (k, v) in enumerate(value.items())]}
        if isinstance(value, tuple):
            return {"__tuple__": [walk(v, f"{key}.{i}") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [walk(v, f"{key}.{i}") for i, v in enumerate(value)]
        if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
            return {"__float__": repr(value)}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint without pickling it")

    return tensors, walk(obj, prefix)


def unflatten_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(tree, list):
        return [unflatten_state(v, tensors) for v in tree]
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__tuple__" in tree:
            return tuple(unflatten_state(v, tensors) for v in tree["__tuple__"])
        if "__float__" in tree:
            return float(tree["__float__"])
        if "__dict__" in tree:
            return {unflatten_state(k, tensors): unflatten_state(v, tensors) for k, v in tree["__dict__"]}
    return tree


# --- saving ------------------------------------------------------------------------------------------

def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    meta: CheckpointMeta | dict[str, Any],
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` and ``meta`` (and optionally ``train_state``) into ``directory`` atomically.

    ``meta`` is a :class:`CheckpointMeta`, or a dict of ``meta.json``'s fields (at least ``arch``,
    ``arch_kwargs``, ``input_size`` and the classes), which is checked the same way.
    """
    if not isinstance(meta, CheckpointMeta):
        meta = CheckpointMeta.from_dict({"format": FORMAT, **meta}, "checkpoint metadata")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(directory)
    stamp = f"{time.time_ns()}"
    if train_state is not None:
        tensors, tree = flatten_state(train_state)
        atomic_write_bytes(directory / STATE_FILE, st_save(tensors, metadata={"stamp": stamp}))
        atomic_write_text(directory / STATE_META_FILE, json.dumps({"stamp": stamp, "state": tree}))
    # Modules may hold the same storage twice (tied weights); safetensors refuses shared storage.
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(directory / MODEL_FILE, st_save(state, metadata={"stamp": stamp, "format": FORMAT}))
    meta.stamp = stamp
    atomic_write_text(directory / META_FILE, json.dumps(meta.to_dict(), indent=2, default=str))
    return directory


# --- loading -----------------------------------------------------------------------------------------

@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model (in eval mode) and its typed metadata."""

    model: torch.nn.Module
    meta: CheckpointMeta
    path: Path

    @property
    def arch(self) -> str:
        return self.meta.arch

    @property
    def task(self) -> str:
        return self.meta.task

    @property
    def class_names(self) -> list[str]:
        return list(self.meta.class_names)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.meta.preprocessing

    @property
    def input_size(self) -> tuple[int, int, int]:
        return self.meta.input_size

    @property
    def mean(self) -> tuple[float, ...]:
        return self.meta.preprocessing.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.meta.preprocessing.std


def checkpoint_dir(path: str | Path) -> Path:
    """The checkpoint folder for ``path`` (the folder itself, or any file inside it)."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if not (path / META_FILE).is_file() or not (path / MODEL_FILE).is_file():
        raise CheckpointError(f"'{path}' is not a cnnlab checkpoint (needs {META_FILE} and {MODEL_FILE})")
    return path


def read_meta(path: str | Path) -> CheckpointMeta:
    """The checked metadata of the checkpoint at ``path``."""
    directory = checkpoint_dir(path)
    file = directory / META_FILE
    try:
        data = json.loads(file.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{file} is not valid JSON: {e}") from None
    return CheckpointMeta.from_dict(data, str(file))


def _read_safetensors(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    data = file.read_bytes()
    try:
        tensors = st_load(data)
        from safetensors import safe_open  # header metadata lives outside the tensors

        with safe_open(str(file), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, ValueError, OSError) as e:
        raise CheckpointError(f"{file} is corrupt or truncated: {e}") from None
    return tensors, header


def _state_problems(own: dict[str, Any], shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """What keeps tensors of these shapes from loading into a model whose state dict is ``own``."""
    missing = [k for k in own if k not in shapes]
    unexpected = [k for k in shapes if k not in own]
    wrong = [k for k in own if k in shapes and tuple(own[k].shape) != tuple(shapes[k])]
    parts = []
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} shape mismatches (e.g. {k}: model {tuple(own[k].shape)}, file {tuple(shapes[k])})")
    if missing:
        parts.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
    return parts


def check_values(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Refuse weights that would load but give nonsense: NaN or infinite values, or integer tensors
    where the model holds floating-point ones (int8 weights copied into a float layer)."""
    own = model.state_dict()
    for key, tensor in state.items():
        target = own.get(key)
        if target is None:
            continue
        if target.is_floating_point() and not tensor.is_floating_point():
            raise CheckpointError(f"{what}: {key} holds {tensor.dtype} values where the model has "
                                  f"{target.dtype}; quantised weights cannot be loaded as they are")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{what}: {key} holds NaN or infinite values; the weights are damaged")


def load_state_dict_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model``, explaining a mismatch in one line rather than a page."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatches (e.g. {k}: model {tuple(own[k].shape)}, file {tuple(state[k].shape)})")
        if missing:
            parts.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        raise CheckpointError(f"{what} does not fit the model: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu", arch: str | None = None) -> Checkpoint:
    """Rebuild the model saved at ``path`` and load its weights; never unpickles.

    ``arch``, when given, is the architecture the caller expects; a checkpoint of another one raises
    :class:`~cnnlab.errors.CheckpointError`.
    """
    directory = checkpoint_dir(path)
    meta = read_meta(directory)
    if arch is not None and arch != meta.arch:
        raise CheckpointError(f"checkpoint '{directory}' holds a {meta.arch}, not a {arch}")
    what = f"checkpoint '{directory}'"
    blueprint = build_on_meta(meta, what)  # architecture checked with no memory spent
    state = read_weights(directory, meta)
    problems = _state_problems(blueprint.state_dict(), {k: tuple(v.shape) for k, v in state.items()})
    if problems:
        raise CheckpointError(f"{what} does not fit the model: " + "; ".join(problems))
    model = _build(meta, what)
    check_values(model, state, what)
    load_state_dict_checked(model, state, what)
    model.to(device).eval()
    return Checkpoint(model=model, meta=meta, path=directory)


def _build(meta: CheckpointMeta, what: str) -> torch.nn.Module:
    from ..registry import create_model

    try:
        return create_model(meta.arch, **meta.arch_kwargs)
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - any builder failure is the metadata's fault here
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{what}: the architecture arguments do not build a {meta.arch}: {first}") from None


def build_on_meta(meta: CheckpointMeta, what: str = "checkpoint") -> torch.nn.Module:
    """The model ``meta`` describes, built on PyTorch's ``meta`` device (shapes only, no memory), after
    checking that it is of a plausible size and that its task accepts the metadata."""
    from ..tasks import get_task

    with torch.device("meta"):
        model = _build(meta, what)
    count = sum(p.numel() for p in model.parameters())
    if count > MAX_PARAMETERS:
        raise CheckpointError(f"{what}: the architecture arguments ask for {count:,} parameters, "
                              f"more than the {MAX_PARAMETERS:,} allowed")
    get_task(meta.task).check_meta(model, meta, what)
    return model


def read_weights(path: str | Path, meta: CheckpointMeta | None = None) -> dict[str, torch.Tensor]:
    """The saved state dict of the checkpoint at ``path`` (checked to come from the same save as its metadata)."""
    directory = checkpoint_dir(path)
    meta = meta or read_meta(directory)
    state, header = _read_safetensors(directory / MODEL_FILE)
    if header.get("stamp") and meta.stamp and header["stamp"] != meta.stamp:
        raise CheckpointError(f"checkpoint '{directory}' is inconsistent: its weights and meta.json come from different saves")
    return state


def load_train_state(path: str | Path) -> dict[str, Any] | None:
    """The resumable training state saved beside a checkpoint, or ``None`` if there is none."""
    directory = checkpoint_dir(path)
    if not (directory / STATE_FILE).is_file():
        return None
    tensors, header = _read_safetensors(directory / STATE_FILE)
    try:
        tree = json.loads((directory / STATE_META_FILE).read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{directory / STATE_META_FILE} is unreadable: {e}") from None
    meta = read_meta(directory)
    if not (header.get("stamp") == tree.get("stamp") == meta.stamp):
        raise CheckpointError(f"checkpoint '{directory}' is inconsistent: training state and weights come from different saves")
    return unflatten_state(tree["state"], tensors)
