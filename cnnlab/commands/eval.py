"""``cnnlab eval``: accuracy, per-class accuracy and confusion matrix of a checkpoint."""

from __future__ import annotations

from . import add_verb
from ..console import print_json, print_table


def register(subparsers) -> None:
    p = add_verb(subparsers, "eval", help="evaluate a checkpoint on its dataset's test split",
                 example="cnnlab eval runs/lenet5 --json")
    p.add_argument("checkpoint", metavar="CKPT", help="run folder or checkpoint file")
    p.add_argument("--data", help="dataset (default: the one it was trained on)")
    p.add_argument("--data-dir", help="data root")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def with_model_classes(data, class_names: list[str], name: str):
    """``data`` labelled with the model's classes, refusing a dataset whose classes are not the model's.

    A dataset may lack the model's last classes (a test split without them: their labels simply never
    occur), but its classes must be the model's, in the model's order."""
    import dataclasses

    from ..errors import DataError

    ours = list(data.class_names)
    if len(ours) > len(class_names):
        raise DataError(f"{name} has {len(ours)} classes, the model {len(class_names)}")
    for i, (a, b) in enumerate(zip(ours, class_names)):
        if a != b:
            raise DataError(f"{name} does not have the model's classes: class {i} is {a!r} there and {b!r} in the model")
    return dataclasses.replace(data, class_names=list(class_names))


def run(args) -> int:
    from ..data import load_dataset
    from ..errors import DataError
    from ..train.checkpoint import load_checkpoint
    from ..train.trainer import evaluate

    ckpt = load_checkpoint(args.checkpoint, device=args.device)
    name = args.data or ckpt.meta.get("dataset")
    if not name:
        raise DataError("the checkpoint does not say which dataset it was trained on; pass --data")
    data = load_dataset(name, args.split, args.data_dir)
    if args.limit:
        data = data.subset(slice(0, args.limit))
    if tuple(data.input_size) != ckpt.input_size:
        raise DataError(f"{name} images are {data.input_size}, the model expects {ckpt.input_size}")
    data = with_model_classes(data, ckpt.class_names, name)
    m = evaluate(ckpt.model, data, device=args.device, mean=ckpt.mean, std=ckpt.std)
    result = {"checkpoint": str(ckpt.path), "arch": ckpt.arch, "dataset": name, "split": args.split, **m,
              "classes": ckpt.class_names}
    if args.json:
        print_json(result)
        return 0
    print(f"{ckpt.arch} on {name}/{args.split} ({m['images']} images): top-1 {m['top1']:.4f}  "
          f"top-5 {m['top5']:.4f}  loss {m['loss']:.4f}")
    print_table([(c, f"{a:.4f}") for c, a in zip(ckpt.class_names, m["per_class"])], ["class", "accuracy"],
                title="per-class accuracy", justify_right=["accuracy"])
    names = [c[:8] for c in ckpt.class_names]
    print_table([[names[i]] + row for i, row in enumerate(m["confusion"])], ["true \\ pred"] + names,
                title="confusion matrix", justify_right=names)
    return 0
