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

    from ..data.images import image_to_uint8, open_image
    from ..predict import Predictor
    from ..train.checkpoint import load_checkpoint

    if args.top_k < 1:
        raise ValueError("--top-k must be at least 1")
    predictor = Predictor(load_checkpoint(args.checkpoint, device=args.device), device=args.device)
    batch = torch.stack([image_to_uint8(open_image(path), predictor.input_size, invert=args.invert)
                         for path in args.images])
    results = predictor.predict_batch(batch, args.top_k)
    if args.json:
        print_json([{"image": path, "top": [{"class": p.label, "index": p.index, "score": round(p.score, 6)}
                                           for p in preds]} for path, preds in zip(args.images, results)])
        return 0
    for path, preds in zip(args.images, results):
        print(path)
        for p in preds:
            print(f"  {p.score:7.2%}  {p.label}")
    return 0
