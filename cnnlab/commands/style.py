"""``cnnlab style``: neural style transfer (Gatys et al. 2016) with VGG-19 features."""

from __future__ import annotations

from . import add_verb
from ..console import print_json


def register(subparsers) -> None:
    p = add_verb(subparsers, "style", help="paint a content image in the style of another (Gatys et al., VGG-19)",
                 example="cnnlab style photo.jpg starry-night.jpg --weights vgg19-dcbb9e9d.pth --out styled.png")
    p.add_argument("content", metavar="CONTENT")
    p.add_argument("style", metavar="STYLE")
    p.add_argument("--weights", metavar="FILE", help="a torchvision VGG-19 weight file (.pth, read weights-only, or "
                   ".safetensors); without it the network is random and only colours and a coarse texture carry over")
    p.add_argument("--size", type=int, default=256, help="the shorter side the images are resized to")
    p.add_argument("--steps", type=int, default=200, help="optimiser steps")
    p.add_argument("--ratio", type=float, default=1e-3, help="alpha / beta: content weight over style weight")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    p.add_argument("--init", choices=("content", "noise"), default="content", help="the starting image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--out", metavar="PNG", default="styled.png")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys
    from pathlib import Path

    import numpy as np
    import torch

    from ..generation.grids import save_png
    from ..generation.style import stylize
    from ..predict import open_image

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    def read(path: str) -> torch.Tensor:
        image = np.asarray(open_image(path).convert("RGB"))
        return torch.from_numpy(image.copy()).permute(2, 0, 1)

    if not args.weights and not args.json:
        print("cnnlab style: no --weights: VGG-19 is random; expect the style's colours and a coarse texture, "
              "not its brush strokes", file=sys.stderr)
    log = None if args.json else (lambda line: print(line, file=sys.stderr))
    result = stylize(read(args.content), read(args.style), weights=args.weights, size=args.size, steps=args.steps,
                     ratio=args.ratio, optimizer=args.optimizer, init=args.init, seed=args.seed, log=log)
    path = save_png(result.image, Path(args.out), scale=1)
    summary = {"path": str(path), "size": list(result.image.shape[1:]), "steps": args.steps,
               "first_loss": result.losses[0], "last_loss": result.losses[-1], "content_loss": result.content,
               "style_loss": result.style, "weights": args.weights}
    if args.json:
        print_json(summary)
    else:
        print(f"wrote {path} ({summary['size'][1]} x {summary['size'][0]}); loss {result.losses[0]:.4g} -> "
              f"{result.losses[-1]:.4g}")
    return 0
