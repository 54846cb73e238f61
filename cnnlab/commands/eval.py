"""``cnnlab eval``: accuracy, per-class accuracy and confusion matrix of a checkpoint."""

from __future__ import annotations

import sys

from . import add_verb
from ..console import print_json


def register(subparsers) -> None:
    p = add_verb(subparsers, "eval", help="evaluate a checkpoint on its dataset's test split",
                 example="cnnlab eval runs/lenet5 --json")
    p.add_argument("checkpoint", metavar="CKPT", help="run folder or checkpoint file")
    p.add_argument("--data", help="dataset (default: the one it was trained on)")
    p.add_argument("--data-dir", help="data root")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--limit", type=int, default=0, help="only the first N images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--boxes", metavar="FILE", help="keypoint models: crop the people of these boxes (a COCO detection "
                   "results .json, as --write-results writes) instead of the ground-truth boxes")
    p.add_argument("--box-score", type=float, default=0.0, help="with --boxes: keep boxes scoring at least this")
    p.add_argument("--write-results", metavar="FILE", help="detectors: write the detections as a COCO results .json")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import DataError
    from ..tasks import get_task
    from ..train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint, device=args.device)
    from ..train.config import TrainConfig

    # an image folder is fitted to the model's input side, not to a side of its own choosing
    side = ckpt.input_size[-1] if ckpt.input_size[-1] == ckpt.input_size[-2] else 0
    task = get_task(ckpt.task, TrainConfig(image_size=side))
    name = args.data or ckpt.meta.dataset
    if not name:
        raise DataError("the checkpoint does not say which dataset it was trained on; pass --data")
    data = task.load_eval_split(name, args.split, args.data_dir, boxes=args.boxes, box_score=args.box_score)
    if args.limit:
        data = data.subset(slice(0, args.limit))
    if data.input_size is not None and tuple(data.input_size) != ckpt.input_size:
        raise DataError(f"{name} images are {data.input_size}, the model expects {ckpt.input_size}")
    data = task.for_checkpoint(data, ckpt, name)
    options = task.results_options if args.write_results else {}
    if args.write_results and not options:
        task.write_results({}, data, args.write_results)  # refuses, naming the task, before the evaluation runs
    m = task.evaluate(ckpt.model, data, device=args.device, preprocessing=ckpt.preprocessing, **options)
    if args.write_results:
        count = task.write_results(m, data, args.write_results)
        print(f"{count} results written to {args.write_results}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print_json({"checkpoint": str(ckpt.path), "arch": ckpt.arch, "task": ckpt.task, "dataset": name,
                    "split": args.split, **m, "classes": ckpt.class_names})
        return 0
    task.report(m, ckpt, dataset=name, split=args.split)
    return 0
