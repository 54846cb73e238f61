"""Pretrained weights: the ones cnnlab ships, and state-dict files of torchvision or timm.

* **Shipped weights** live in ``cnnlab/bundled/pretrained/``: one checkpoint folder per model and
  dataset (``resnet20-fashion-mnist/`` holding ``model.safetensors`` and ``meta.json``, the layout
  ``cnnlab train`` writes), listed in ``index.json`` with each file's SHA-256 and the test accuracy
  ``cnnlab eval`` reproduces. ``create_model("resnet20", pretrained="fashion-mnist")`` builds from
  them; every verb that takes a checkpoint takes ``MODEL@TAG`` (``cnnlab eval resnet20@fashion-mnist``).
* **Other people's weights**: ``MODEL@FILE`` (or ``create_model(name, pretrained=FILE)``) loads a
  state dict saved by torchvision or timm (``.pth`` through ``torch.load(weights_only=True)``, or
  ``.safetensors``) into cnnlab's model of the same architecture. A 1,000-way head gets ImageNet's
  class names and preprocessing (224 x 224, ImageNet mean and std).
* **Transfer learning**: :func:`start_from` copies every tensor whose name and shape match (so a head
  of another class count keeps its fresh initialisation) and :func:`freeze` stops the trunk's
  gradients; ``cnnlab train MODEL --weights TAG_OR_FILE --freeze features --backbone-lr 0.1``.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .errors import CheckpointError, ConfigError

PRETRAINED_DIR = Path(__file__).parent / "bundled" / "pretrained"
INDEX_FILE = "index.json"
FOREIGN_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FREEZE_CHOICES = ("", "none", "features")


# --- the shipped weights ---------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _index() -> dict[str, dict[str, dict[str, Any]]]:
    file = PRETRAINED_DIR / INDEX_FILE
    if not file.is_file():
        return {}
    return json.loads(file.read_text("utf-8"))


def available(name: str) -> list[str]:
    """The pretrained tags published for model ``name`` (``fashion-mnist``, ``mnist``)."""
    return sorted(_index().get(name, {}))


def pretrained_table() -> list[dict[str, Any]]:
    """Every shipped weight file: model, tag, accuracy, size, recipe (for ``cnnlab list --pretrained``)."""
    rows = []
    for model, tags in sorted(_index().items()):
        for tag, entry in sorted(tags.items()):
            rows.append({"model": model, "tag": tag, **entry})
    return rows


def best_for(tag: str) -> str:
    """The model whose ``tag`` weights have the highest stated test accuracy (``serve --pretrained``)."""
    rows = [r for r in pretrained_table() if r["tag"] == tag]
    if not rows:
        tags = sorted({r["tag"] for r in pretrained_table()})
        raise ConfigError(f"no shipped weights are trained on '{tag}' (tags: {', '.join(tags) or 'none'})")
    return max(rows, key=lambda r: r["test_accuracy"])["model"]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pretrained_folder(name: str, tag: str) -> Path:
    """The checkpoint folder of the shipped ``tag`` weights of ``name``, its files' SHA-256 checked."""
    tags = available(name)
    if tag not in tags:
        if not tags:
            with_weights = sorted(_index())
            raise ConfigError(f"no pretrained weights are shipped for {name} (models with weights: "
                              f"{', '.join(with_weights) or 'none'}); train one with 'cnnlab train {name}', or give "
                              "a torchvision/timm state-dict file: pretrained=PATH")
        raise ConfigError(f"{name} has no pretrained weights '{tag}' (available: {', '.join(tags)})")
    entry = _index()[name][tag]
    folder = PRETRAINED_DIR / entry["folder"]
    for file, expected in entry["sha256"].items():
        path = folder / file
        if not path.is_file():
            raise CheckpointError(f"shipped weights {name}@{tag}: {path} is missing (a broken installation?)")
        if sha256(path) != expected:
            raise CheckpointError(f"shipped weights {name}@{tag}: {path} fails its SHA-256 check (damaged or altered)")
    return folder


# --- other people's state dicts -----------------------------------------------------------------------

def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a ``.pth`` file (``torch.load(weights_only=True)``;
    never unpickles arbitrary objects). Wrappers ``{"state_dict": ...}`` / ``{"model": ...}`` and
    DataParallel's ``module.`` prefix are undone."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file '{path}' does not exist")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any failure here means: not a plain state dict
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise CheckpointError(f"{path} is not a plain state-dict file (torch.load with weights_only=True "
                                  f"refused it: {first[:200]})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _head_weight(model: nn.Module) -> str:
    """The state-dict key of the classifier's last weight (its first dimension is the class count)."""
    keys = [k for k, v in model.state_dict().items() if k.endswith(".weight") and v.ndim >= 2]
    if not keys:
        raise ConfigError(f"{type(model).__name__} has no classifier weight to size from a file")
    return keys[-1]


def imagenet_classes() -> list[str]:
    return (Path(__file__).parent / "bundled" / "imagenet_classes.txt").read_text("utf-8").split("\n")[:1000]


def foreign_checkpoint(name: str, file: str | Path, *, device: str | torch.device = "cpu"):
    """A :class:`~cnnlab.train.checkpoint.Checkpoint` of cnnlab's ``name`` holding the torchvision /
    timm weights in ``file``; the class count is read from the file's head."""
    from .registry import create_model, model_info
    from .train.checkpoint import Checkpoint, load_state_dict_checked
    from .train.meta import CheckpointMeta, Preprocessing

    info = model_info(name)
    state = read_state_dict(file)
    with torch.device("meta"):
        head = _head_weight(create_model(name))
    if head not in state:
        raise CheckpointError(f"{file} does not fit {name}: it has no '{head}' (is it another architecture?)")
    classes = int(state[head].shape[0])
    model = create_model(name, num_classes=classes)
    load_state_dict_checked(model, state, f"weights file '{file}'")
    model.to(device).eval()
    names = imagenet_classes() if classes == 1000 else [f"class {i}" for i in range(classes)]
    meta = CheckpointMeta(arch=name, arch_kwargs={"num_classes": classes}, class_names=names,
                          preprocessing=Preprocessing(tuple(info.input_size), IMAGENET_MEAN, IMAGENET_STD),
                          dataset="imagenet" if classes == 1000 else "", extra={"weights_file": str(file)})
    path = Path(file)
    return Checkpoint(model=model, meta=meta, path=path, run_dir=path.with_suffix(""))


# --- MODEL@TAG and MODEL@FILE, wherever a checkpoint is asked for -------------------------------------

def split_spec(spec: str | Path) -> tuple[str, str] | None:
    """``"resnet20@fashion-mnist"`` -> ("resnet20", "fashion-mnist"); None for a plain path."""
    text = str(spec)
    if "@" not in text or Path(text).exists():
        return None
    model, _, source = text.partition("@")
    from .registry import list_models

    if model not in list_models("*"):
        return None
    return model, source


def open_spec(spec: str | Path, *, device: str | torch.device = "cpu"):
    """The checkpoint ``MODEL@TAG`` (shipped weights) or ``MODEL@FILE`` (a state dict) names, or None."""
    parts = split_spec(spec)
    if parts is None:
        return None
    model, source = parts
    if Path(source).suffix in FOREIGN_SUFFIXES or Path(source).is_file():
        return foreign_checkpoint(model, source, device=device)
    from .train.checkpoint import load_checkpoint

    return load_checkpoint(pretrained_folder(model, source), device=device)


# --- create_model(name, pretrained=...) --------------------------------------------------------------

def _source_model(name: str, tag: bool | str) -> tuple[nn.Module, dict[str, Any]]:
    if tag is True:
        tags = available(name)
        if not tags:
            pretrained_folder(name, "")  # raises the clear "no weights shipped" error
        tag = "fashion-mnist" if "fashion-mnist" in tags else tags[0]
    text = str(tag)
    from .train.checkpoint import load_checkpoint

    if Path(text).suffix in FOREIGN_SUFFIXES or Path(text).is_file():
        ckpt = foreign_checkpoint(name, text)
    else:
        ckpt = load_checkpoint(pretrained_folder(name, text))
    return ckpt.model, dict(ckpt.meta.arch_kwargs)


def load_pretrained(name: str, tag: bool | str, *, features_only: bool = False,
                    out_indices: Sequence[int] | None = None, input_size: Sequence[int] | None = None,
                    **kwargs: Any) -> nn.Module:
    """``create_model(name, pretrained=tag)``: the shipped ``tag`` weights (True: the model's default,
    Fashion-MNIST where shipped) or a state-dict file. ``num_classes`` other than the weights' gives a
    fresh head over the pretrained trunk."""
    source, arch = _source_model(name, tag)
    model = source
    if kwargs or input_size is not None:
        from .registry import create_model

        if input_size is not None:  # the data decide channels and form; the weights fit where shapes agree
            arch = {k: v for k, v in arch.items() if k not in ("in_channels", "small_input", "image_size")}
        model = create_model(name, input_size=input_size, **{**arch, **kwargs})
        start_from(model, source.state_dict())
    if features_only:
        from .backbone import FeatureExtractor

        return FeatureExtractor(model.train(), out_indices)
    if out_indices is not None:
        raise ConfigError("out_indices goes with features_only=True")
    return model.train()


# --- transfer learning -------------------------------------------------------------------------------

def start_from(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
    """Copy every tensor of ``state`` whose name and shape match ``model``'s; returns (copied, the
    model's tensors left as initialised, e.g. a head for another number of classes)."""
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not matched:
        raise ConfigError(f"none of the weights fits {type(model).__name__} (another architecture?)")
    model.load_state_dict(matched, strict=False)
    return len(matched), [k for k in own if k not in matched]


def weights_state(model_name: str, source: str) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict ``--weights SOURCE`` names for ``model_name``: a shipped tag, a cnnlab run folder,
    or a state-dict file; with a description for the log."""
    path = Path(source)
    if path.is_dir():
        from .train.checkpoint import load_checkpoint

        return load_checkpoint(path).model.state_dict(), f"run {path}"
    if path.suffix in FOREIGN_SUFFIXES or path.is_file():
        return read_state_dict(path), f"file {path}"
    from .train.checkpoint import read_weights

    return read_weights(pretrained_folder(model_name, source)), f"{model_name}@{source}"


def head_parameters(model: nn.Module) -> set[str]:
    """Names of the parameters of the classifier head (the modules in ``head_modules``, or the last layer)."""
    heads = getattr(model, "head_modules", None) or ()
    names = {n for n, _ in model.named_parameters() if n.split(".")[0] in heads}
    if not names:  # a model without the attribute: the last weight and its bias
        last = _head_weight(model).rsplit(".", 1)[0]
        names = {n for n, _ in model.named_parameters() if n.rsplit(".", 1)[0] == last}
    return names


def freeze(model: nn.Module, what: str) -> int:
    """``what="features"``: no gradients for anything but the head; returns the number of frozen tensors.
    Batch-norm statistics of the trunk still follow the new data in training mode."""
    if what in ("", "none"):
        return 0
    if what != "features":
        raise ConfigError(f"freeze must be 'features' or empty, not '{what}'")
    head = head_parameters(model)
    frozen = 0
    for name, p in model.named_parameters():
        if name not in head:
            p.requires_grad_(False)
            frozen += 1
    return frozen


def start_run(model: nn.Module, config) -> str:
    """``cnnlab train --weights ... [--freeze features]``: start ``model`` from the weights, freeze; a log line."""
    state, where = weights_state(config.model, config.weights)
    copied, fresh = start_from(model, state)
    line = f"started {copied} tensors from {where}"
    if fresh:
        line += f"; {len(fresh)} left as initialised (e.g. {fresh[0]}: the head for these classes)"
    frozen = freeze(model, config.freeze)
    if frozen:
        line += f"; froze {frozen} trunk tensors"
    return line


def slow_parameters(model: nn.Module, config) -> set[int] | None:
    """The ``id`` of every trunk parameter when ``--backbone-lr`` is not 1 (None otherwise)."""
    if config.backbone_lr == 1.0:
        return None
    head = head_parameters(model)
    return {id(p) for n, p in model.named_parameters() if n not in head}


# --- publishing (how the shipped weights were made) ---------------------------------------------------

def publish(run_dir: str | Path, tag: str, *, recipe: str, data_dir: str | None = None,
            half: bool = True, out: Path = PRETRAINED_DIR) -> dict[str, Any]:
    """Copy the last checkpoint of ``run_dir`` into ``out`` as the ``tag`` weights (float tensors in
    float16 when ``half``: half the size), evaluate that copy on the test split, and record it in
    ``index.json`` with its SHA-256, size and accuracy; returns the entry."""
    from safetensors.torch import save as st_save

    from .tasks import get_task
    from .train.checkpoint import META_FILE, MODEL_FILE, load_checkpoint, read_meta, read_weights
    from .train.config import TrainConfig

    from .io import atomic_write_text

    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", tag):
        raise ConfigError(f"a weights tag is lower-case letters, digits, '.', '_' and '-' (like fashion-mnist), not {tag!r}")
    meta = read_meta(run_dir)
    if meta.task != "classify":
        raise ConfigError(f"{run_dir} is a {meta.task} run; shipped weights are classifiers (their test accuracy is "
                          "what the index records)")
    state = read_weights(run_dir, meta)
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    folder = out / f"{meta.arch}-{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    meta.extra = {**meta.extra, "pretrained_tag": tag, "recipe": recipe}
    (folder / MODEL_FILE).write_bytes(st_save(state, metadata={"stamp": meta.stamp, "format": "cnnlab"}))
    (folder / META_FILE).write_text(json.dumps(meta.to_dict(), indent=2, default=str), "utf-8")
    ckpt = load_checkpoint(folder)
    task = get_task(ckpt.task, TrainConfig())
    test = task.for_checkpoint(task.load_split(meta.dataset, "test", data_dir), ckpt, meta.dataset)
    accuracy = task.evaluate(ckpt.model, test, device="cpu", preprocessing=ckpt.preprocessing)["top1"]
    first = task.evaluate(ckpt.model, test.subset(slice(0, 1000)), device="cpu",
                          preprocessing=ckpt.preprocessing)["top1"]
    entry = {"folder": folder.name, "dataset": meta.dataset, "test_accuracy": round(float(accuracy), 4),
             "test_accuracy_first_1000": round(float(first), 4), "test_images": len(test),
             "params": sum(p.numel() for p in ckpt.model.parameters()),
             "bytes": sum((folder / f).stat().st_size for f in (MODEL_FILE, META_FILE)), "recipe": recipe,
             "epochs": meta.epoch, "sha256": {f: sha256(folder / f) for f in (MODEL_FILE, META_FILE)}}
    index_file = out / INDEX_FILE
    index = json.loads(index_file.read_text("utf-8")) if index_file.is_file() else {}
    index.setdefault(meta.arch, {})[tag] = entry
    atomic_write_text(index_file, json.dumps(index, indent=1, sort_keys=True) + "\n")
    _index.cache_clear()
    return entry
