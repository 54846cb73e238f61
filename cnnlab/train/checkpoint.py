"""Checkpoints: safetensors weights plus JSON metadata; nothing is ever unpickled.

A run folder holds its latest checkpoint in ``last/``::

    runs/NAME/
      last/                      the checkpoint of the latest epoch
        model.safetensors        the model's state_dict (parameters and buffers)
        meta.json                how to rebuild and use the model: task, architecture name and arguments,
                                 class names, input size, normalisation, dataset, config, epoch, metrics
                                 (typed and checked by :class:`~cnnlab.train.meta.CheckpointMeta`)
        train_state.safetensors  optimiser, scheduler, RNG and loop state, for ``cnnlab train --resume``
        train_state.json
      history.jsonl, curves.png  the run's history, written beside its checkpoints

Other checkpoints of the same run (a ``best/`` one, say) are further folders of the same form beside
``last/``: ``save_checkpoint(..., slot="best")``.

A checkpoint is one atomic unit. A save writes a complete new folder ``.last.new/`` (every file
fsync'd, ``meta.json`` last), then renames the current ``last/`` to ``.last.old/``, renames
``.last.new/`` to ``last/`` and removes ``.last.old/``. Whatever instant a save is killed at, one
complete checkpoint remains: ``last/``, or, in the instant between the two renames, ``.last.new/``
or ``.last.old/``. Loading takes ``last/`` if it is there and otherwise the complete one of those two
(the new one first); the next save finishes the interrupted one's work before it starts. All files of
a checkpoint also carry one ``stamp``, so files of two different saves are never mixed silently.

``load_checkpoint``, ``read_meta`` and ``load_train_state`` take a run folder, a checkpoint folder
or any file inside one. Run folders of the earlier flat layout (the files directly in the run
folder) load as they are; the first save into one moves it to ``last/``.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..errors import CheckpointError
from ..io import atomic_write_text, clean_stale_temporaries, fsync_dir, is_regular_file
from .meta import FORMAT, CheckpointMeta, Preprocessing

MAX_PARAMETERS = 4_000_000_000  # a model this large is refused before it is allocated
MODEL_FILE = "model.safetensors"
META_FILE = "meta.json"
STATE_FILE = "train_state.safetensors"
STATE_META_FILE = "train_state.json"
CHECKPOINT_FILES = (META_FILE, MODEL_FILE, STATE_FILE, STATE_META_FILE)
LAST = "last"
SLOTS = (LAST, "best")  # checkpoint folders a run folder may hold
NEW_SUFFIX, OLD_SUFFIX = ".new", ".old"


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


# --- the run folder: where each checkpoint lives, and finishing an interrupted save ----------------

def _staging(run: Path, slot: str) -> Path:
    return run / f".{slot}{NEW_SUFFIX}"


def _retired(run: Path, slot: str) -> Path:
    return run / f".{slot}{OLD_SUFFIX}"


def _holds_checkpoint(folder: Path) -> bool:
    """Does ``folder`` hold a checkpoint's two essential files (``meta.json`` is written last)?"""
    return is_regular_file(folder / META_FILE) and is_regular_file(folder / MODEL_FILE)


def _complete(folder: Path) -> bool:
    """A folder of a finished save: both files present and ``meta.json`` readable."""
    if not _holds_checkpoint(folder):
        return False
    try:
        return json.loads((folder / META_FILE).read_text("utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _slot_folder(run: Path, slot: str = LAST) -> Path | None:
    """The folder holding ``slot``'s checkpoint in ``run``, looking where an interrupted save leaves it."""
    if (run / slot).is_dir():
        return run / slot
    for candidate in (_staging(run, slot), _retired(run, slot)):  # the newer one first
        if _complete(candidate):
            return candidate
    return None


def _remove_tree(folder: Path) -> None:
    if folder.is_dir() and not folder.is_symlink():
        shutil.rmtree(folder)
    elif folder.exists() or folder.is_symlink():
        folder.unlink()


def recover(run: str | Path, slot: str = LAST) -> None:
    """Finish or undo a save of ``slot`` that was interrupted, and remove what it left behind.

    If ``slot/`` is missing, the complete one of ``.slot.new/`` (newer) and ``.slot.old/`` becomes it.
    """
    run = Path(run)
    final = run / slot
    if not final.is_dir():
        for candidate in (_staging(run, slot), _retired(run, slot)):
            if _complete(candidate):
                os.rename(candidate, final)
                fsync_dir(run)
                break
    for leftover in (_staging(run, slot), _retired(run, slot)):
        _remove_tree(leftover)


def run_folder(path: str | Path) -> Path:
    """The run folder of ``path``: a run folder itself, or the run folder around a checkpoint folder."""
    directory = checkpoint_dir(path)
    names = set(SLOTS) | {f".{s}{suffix}" for s in SLOTS for suffix in (NEW_SUFFIX, OLD_SUFFIX)}
    return directory.parent if directory.name in names else directory


def new_run_dir(path: str | Path) -> Path:
    """Claim a folder for a new run: ``path`` if it is free (missing or empty), else the first free one of
    ``path-2``, ``path-3``, ... (numbered as ultralytics numbers its runs). Creating the folder is the
    claim, so two runs started at once never share one."""
    path = Path(path)
    for candidate in itertools.chain([path], (path.with_name(f"{path.name}-{n}") for n in itertools.count(2))):
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            if candidate.is_dir() and not any(candidate.iterdir()):
                return candidate
    raise AssertionError("unreachable")  # pragma: no cover - itertools.count never ends


# --- saving ------------------------------------------------------------------------------------------

def _write_durable(path: Path, data: bytes) -> None:
    """Write a new file and fsync it (inside a folder nobody reads until it is renamed into place)."""
    with open(path, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    meta: CheckpointMeta | dict[str, Any],
    train_state: dict[str, Any] | None = None,
    *,
    slot: str = LAST,
) -> Path:
    """Write ``model`` and ``meta`` (and optionally ``train_state``) as the ``slot`` checkpoint of the run
    folder ``directory``, as one atomic unit (see the module docstring); returns ``directory``.

    ``meta`` must hold at least ``arch`` and ``arch_kwargs``; see the module docstring for the rest.
    """
    if not isinstance(meta, CheckpointMeta):
        meta = CheckpointMeta.from_dict({"format": FORMAT, **meta}, "checkpoint metadata")
    if slot not in SLOTS:
        raise CheckpointError(f"checkpoint slot must be one of {', '.join(SLOTS)}, not '{slot}'")
    run = Path(directory)
    run.mkdir(parents=True, exist_ok=True)
    recover(run, slot)
    clean_stale_temporaries(run)
    stamp = f"{time.time_ns()}"
    # Everything is serialised before the first byte is written, so a failure here changes nothing.
    files: list[tuple[str, bytes]] = []
    if train_state is not None:
        tensors, tree = flatten_state(train_state)
        files.append((STATE_FILE, st_save(tensors, metadata={"stamp": stamp})))
        files.append((STATE_META_FILE, json.dumps({"stamp": stamp, "state": tree}).encode("utf-8")))
    # Modules may hold the same storage twice (tied weights); safetensors refuses shared storage.
    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    files.append((MODEL_FILE, st_save(state, metadata={"stamp": stamp, "format": FORMAT})))
    meta.stamp = stamp
    meta_text = json.dumps(meta.to_dict(), indent=2, default=str)

    staging, final, retired = _staging(run, slot), run / slot, _retired(run, slot)
    staging.mkdir()
    for name, data in files:
        _write_durable(staging / name, data)
    atomic_write_text(staging / META_FILE, meta_text)  # last: its presence marks the folder complete
    fsync_dir(staging)
    if final.is_dir():
        os.rename(final, retired)
    os.rename(staging, final)  # the commit: from here on the new checkpoint is the one that loads
    fsync_dir(run)
    _remove_tree(retired)
    flat = [run / name for name in CHECKPOINT_FILES if (run / name).exists()]
    if slot == LAST and flat:  # a run folder of the flat layout (or what is left of one): now in last/
        for path in flat:  # meta.json first, so no half-removed flat checkpoint is ever found
            path.unlink(missing_ok=True)
        fsync_dir(run)
    return run


# --- loading -----------------------------------------------------------------------------------------

@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt model (in eval mode), its metadata, the folder of its files
    (``path``) and the run folder around it (``run_dir``; the same folder for a flat one)."""

    model: torch.nn.Module
    meta: dict[str, Any]
    path: Path
    run_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.run_dir is None:
            self.run_dir = self.path

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
    """The folder holding the checkpoint files for ``path``: a run folder's ``last/`` checkpoint (or,
    right after an interrupted save, the complete one it left), a checkpoint folder itself, or the
    folder of a file inside one."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if path.is_dir():
        found = _slot_folder(path, LAST)
        if found is not None and _holds_checkpoint(found):
            return found
        if _holds_checkpoint(path):
            return path
    raise CheckpointError(f"'{path}' is not a cnnlab checkpoint (needs {LAST}/ holding {META_FILE} and "
                          f"{MODEL_FILE}, or those files themselves)")


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


def check_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Refuse weights that would load without error and then give nonsense: floating-point tensors
    holding NaN or infinity, and integer tensors (a quantised export, say) where the model keeps floats."""
    own = model.state_dict()
    for key, value in state.items():
        if key not in own:
            continue
        if value.is_floating_point() != own[key].is_floating_point():
            raise CheckpointError(f"{what} stores {key} as {str(value.dtype).replace('torch.', '')}, the model keeps "
                                  f"{str(own[key].dtype).replace('torch.', '')}; it is not a checkpoint of this model "
                                  "(a quantised or converted file?)")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{what} holds NaN or infinite weights (e.g. in {key}); the run diverged or "
                                  "the file is damaged")


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
    check_weights(model, state, what)
    model.load_state_dict(state, strict=True)


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu", arch: str | None = None) -> Checkpoint:
    """Rebuild the model saved at ``path`` and load its weights; never unpickles.

    ``arch``, when given, is the architecture the caller expects; a checkpoint of another one raises
    :class:`~cnnlab.errors.CheckpointError`. ``MODEL@TAG`` names shipped weights and ``MODEL@FILE`` a
    torchvision / timm state-dict file (:mod:`cnnlab.weights`).
    """
    from ..weights import open_spec

    named = open_spec(path, device=device)
    if named is not None:
        if arch is not None and arch != named.arch:
            raise CheckpointError(f"'{path}' holds a {named.arch}, not a {arch}")
        return named
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
    load_state_dict_checked(model, state, what)
    model.to(device).eval()
    return Checkpoint(model=model, meta=meta, path=directory, run_dir=run_folder(directory))


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
