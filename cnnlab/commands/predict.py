"""``cnnlab predict``: top-k classes of images, with the checkpoint's class names."""

from __future__ import annotations

from . import add_verb
from ..console import print_json


PLAN_FROM_IMAGES = 64  # images from which predict measures an execution plan


def register(subparsers) -> None:
    p = add_verb(subparsers, "predict", help="classify image files with a checkpoint",
                 example="cnnlab predict runs/lenet5 shoe.png shirt.jpg --top-k 3")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="any image Pillow reads (for a video model: a clip, "
                   "as a GIF, a folder of frames, or a video file where a decoder is installed)")
    p.add_argument("--weights", metavar="FILE_OR_TAG", help="CKPT is then a model name, and these its weights: a "
                   "torchvision/timm state-dict file (.pth, .safetensors) or a shipped tag (fashion-mnist)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--invert", action="store_true", help="invert grey levels (dark object on light paper -> "
                   "light on dark, as in MNIST-style data); without it, a light background is noticed and inverted "
                   "for models trained on light items on dark, and said so")
    p.add_argument("--out", metavar="DIR", help="folder for the pictures a task draws (masks, boxes, skeletons)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0,
                   help=f"torch threads (0: from the execution plan, measured for {PLAN_FROM_IMAGES} images or more)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..tasks import get_task
    from ..train.checkpoint import load_checkpoint

    if args.top_k < 1:
        raise ValueError("--top-k must be at least 1")
    spec = f"{args.checkpoint}@{args.weights}" if args.weights else args.checkpoint
    checkpoint = load_checkpoint(spec, device=args.device)
    task = get_task(checkpoint.task)
    predictor = task.predictor(checkpoint, device=args.device)
    if hasattr(predictor, "plan"):
        # Measuring costs about as much as a few batches: worth it only for many images; a cached plan is free.
        plan = predictor.plan(len(args.images), threads=args.threads, measure=len(args.images) >= PLAN_FROM_IMAGES)
        torch.set_num_threads(plan.chosen.threads)
    import sys

    invert = True if args.invert else None
    views = [task.read_input(checkpoint, path, invert=invert) for path in args.images]
    batch = torch.stack([v.tensor for v in views])
    results = predictor.predict_batch(batch, args.top_k)
    if not args.json:
        for path, view in zip(args.images, views):
            for note in view.notes:
                print(f"cnnlab predict: {path}: {note}", file=sys.stderr)
    from pathlib import Path

    out_dir = Path(args.out) if args.out else None
    if args.json:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # the pictures' paths go into the JSON instead
            written = task.print_predictions(args.images, results, out_dir=out_dir, images=list(batch))
        key = "top" if task.name == "classify" else "prediction"
        items = [{"image": path, key: task.describe(preds), "inverted": view.inverted, "warnings": view.notes}
                 for path, preds, view in zip(args.images, results, views)]
        print_json({"predictions": items, "files": written} if written else items)
        return 0
    task.print_predictions(args.images, results, out_dir=out_dir, images=list(batch))
    return 0
