"""``cnnlab generate``: sample grids and latent interpolations from a generator checkpoint."""

from __future__ import annotations

from . import add_verb
from ..console import print_json


def register(subparsers) -> None:
    p = add_verb(subparsers, "generate", help="draw samples (a grid PNG) or latent interpolations from a GAN checkpoint",
                 example="cnnlab generate runs/cgan --n 64 --class Sneaker --out samples/")
    p.add_argument("checkpoint", metavar="CKPT")
    p.add_argument("--n", type=int, default=64, help="images (with --interpolate: rows of interpolation)")
    p.add_argument("--class", dest="class_name", metavar="NAME", help="the class to draw (class-conditional GANs)")
    p.add_argument("--interpolate", action="store_true",
                   help="walk between two random latents (spherical interpolation), one row per walk")
    p.add_argument("--steps", type=int, default=10, help="images per interpolation row")
    p.add_argument("--seed", type=int, default=0, help="the latents' seed (the same seed draws the same images)")
    p.add_argument("--out", metavar="DIR", default="generated", help="folder for the PNG files")
    p.add_argument("--scale", type=int, default=2, help="pixel magnification of the PNG")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from ..errors import ConfigError
    from ..generation import image_grid
    from ..generation.grids import save_png
    from ..tasks import get_task
    from ..train.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(args.checkpoint, device=args.device)
    if checkpoint.task != "generate":
        raise ConfigError(f"'{args.checkpoint}' is a {checkpoint.task} model, not a generator (train one with "
                          "'cnnlab train dcgan')")
    predictor = get_task("generate").predictor(checkpoint, device=args.device)
    out = Path(args.out)
    stem = f"{checkpoint.run_dir.name or checkpoint.arch}"
    if args.class_name:
        stem += f"-{args.class_name.replace('/', '_').replace(' ', '_')}"
    if args.interpolate:
        images = predictor.interpolate(args.n, args.steps, seed=args.seed, class_name=args.class_name)
        path = save_png(image_grid(images, columns=args.steps), out / f"{stem}-interpolation.png", scale=args.scale)
        classes = None
    else:
        images, classes = predictor.sample(args.n, seed=args.seed, class_name=args.class_name)
        path = save_png(image_grid(images, columns=8 if args.n >= 8 else args.n), out / f"{stem}-samples.png",
                        scale=args.scale)
    result = {"checkpoint": str(checkpoint.path), "images": len(images), "path": str(path), "seed": args.seed,
              "classes": sorted({predictor.class_names[int(k)] for k in classes}) if classes is not None else None}
    if args.json:
        print_json(result)
    else:
        print(f"wrote {len(images)} {'interpolated ' if args.interpolate else ''}samples to {path}")
    return 0
