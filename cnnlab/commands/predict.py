"""``cnnlab predict``: top-k classes of images, with the checkpoint's class names."""

from __future__ import annotations

from . import add_verb
from ..console import print_json


def register(subparsers) -> None:
    p = add_verb(subparsers, "predict", help="classify image files with a checkpoint",
                 example="cnnlab predict runs/lenet5 shoe.png shirt.jpg --top-k 3")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="any image Pillow reads")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--invert", action="store_true", help="invert grey levels (dark object on light paper -> "
                   "light on dark, as in MNIST-style data)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..predict import open_image
    from ..tasks import get_task
    from ..train.checkpoint import load_checkpoint

    if args.top_k < 1:
        raise ValueError("--top-k must be at least 1")
    checkpoint = load_checkpoint(args.checkpoint, device=args.device)
    task = get_task(checkpoint.task)
    predictor = task.predictor(checkpoint, device=args.device)
    invert = True if args.invert else None
    batch = torch.stack([checkpoint.preprocessing.image(open_image(path), invert=invert) for path in args.images])
    results = predictor.predict_batch(batch, args.top_k)
    if args.json:
        print_json([{"image": path, "top": task.describe(preds)} for path, preds in zip(args.images, results)])
        return 0
    task.print_predictions(args.images, results)
    return 0
