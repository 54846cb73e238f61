"""``cnnlab list``: the registered models (family, paper, year, parameters, input size) and datasets."""

from __future__ import annotations

from . import add_verb
from ..console import human_count, print_json, print_table


def register(subparsers) -> None:
    p = add_verb(subparsers, "list", help="list models and datasets", example="cnnlab list 'resnet*'")
    p.add_argument("pattern", nargs="?", default="*",
                   help="filter on model and dataset names: a part of the name (res) or a shell pattern ('vgg1?')")
    p.add_argument("--datasets", action="store_true", help="list datasets only")
    p.add_argument("--models", action="store_true", help="list models only")
    p.add_argument("--pretrained", action="store_true", help="list the weights shipped with cnnlab (MODEL@TAG)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def parameter_count(name: str) -> int:
    """Parameters of a model at its default size, counted without allocating memory (meta device)."""
    import torch

    from ..registry import create_model

    with torch.device("meta"):
        model = create_model(name)
    return sum(p.numel() for p in model.parameters())


def run(args) -> int:
    from ..data import DATASETS
    from ..registry import list_models, model_info

    if args.pretrained:
        return _list_pretrained(args)
    models = []
    if not args.datasets:
        for name in list_models(args.pattern):
            info = model_info(name)
            models.append({"name": name, "task": info.task, "family": info.family, "paper": info.paper,
                           "year": info.year, "params": parameter_count(name), "input_size": list(info.input_size),
                           "top1": info.top1, "top5": info.top5})
    from ..data.object_datasets import SCENE_SETS

    datasets = [] if args.models else [
        {"name": s.name, "task": "classification", "classes": len(s.class_names), "splits": list(s.files),
         "description": s.description, "licence": s.licence} for s in DATASETS.values()] + [
        {"name": s.name, "task": "detection / segmentation", "classes": 10, "splits": ["train", "test"],
         "description": s.description, "licence": s.licence} for s in SCENE_SETS.values()]
    datasets = [d for d in datasets if _matches(d["name"], args.pattern)]
    if args.json:
        print_json({"models": models, "datasets": datasets})
        return 0
    if models:
        print_table([(m["name"], m["task"], m["family"], m["paper"], m["year"], human_count(m["params"]),
                      "x".join(map(str, m["input_size"]))) for m in models],
                    ["model", "task", "family", "paper", "year", "params", "input"], title="models",
                    justify_right=["params"])
    if datasets:
        print_table([(d["name"], d["task"], d["classes"], d["description"]) for d in datasets],
                    ["dataset", "task", "classes", "description"], title="datasets")
    if not models and not datasets:
        what = "dataset" if args.datasets else "model" if args.models else "model or dataset"
        print(f"no {what} matches '{args.pattern}' (try a part of a name, e.g. 'cnnlab list res')")
        return 1
    return 0


def _matches(name: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatch(name, pattern) if any(c in pattern for c in "*?[") else pattern in name


def _list_pretrained(args) -> int:
    from ..weights import pretrained_table

    rows = [r for r in pretrained_table() if _matches(r["model"], args.pattern)]
    if args.json:
        print_json({"pretrained": rows})
        return 0
    if not rows:
        print(f"no shipped weights match '{args.pattern}'")
        return 1
    print_table([(f"{r['model']}@{r['tag']}", r["dataset"], f"{100 * r['test_accuracy']:.2f}", human_count(r["params"]),
                  f"{r['bytes'] / 1024:.0f} KiB", r["recipe"]) for r in rows],
                ["weights", "dataset", "test acc %", "params", "size", "recipe"], title="shipped weights",
                justify_right=["test acc %", "params", "size"])
    total = sum(r["bytes"] for r in rows)
    print(f"{len(rows)} weight files, {total / 1024 / 1024:.1f} MiB in all; use as MODEL@TAG "
          "(cnnlab eval resnet20@fashion-mnist) or create_model(MODEL, pretrained=TAG)")
    return 0
