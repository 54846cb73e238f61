"""``cnnlab index``: embed a folder of images into a searchable index, and search it.

``index build CKPT FOLDER --out INDEX`` embeds every image file under FOLDER (any size, any format
Pillow reads) with a metric-learning checkpoint; an existing INDEX is updated (new files added,
changed ones re-embedded). ``index search INDEX IMAGE -k 5`` prints the nearest images with their
distances and writes a PNG strip of them.
"""

from __future__ import annotations

from pathlib import Path

from . import add_verb
from ..console import print_json

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def register(subparsers) -> None:
    p = add_verb(subparsers, "index", help="build and search an embedding index of images (metric learning)",
                 example="cnnlab index build runs/embed photos/ --out photos.index && "
                         "cnnlab index search photos.index query.png -k 5")
    verbs = p.add_subparsers(dest="index_verb", metavar="build|search", required=True)
    b = verbs.add_parser("build", help="embed the images of a folder into an index (updating an existing one)")
    b.add_argument("checkpoint", metavar="CKPT")
    b.add_argument("folder", metavar="FOLDER")
    b.add_argument("--out", metavar="INDEX", required=True, help="index file (safetensors)")
    b.add_argument("--invert", action="store_true", help="invert grey levels of every image")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=run_build)
    s = verbs.add_parser("search", help="the nearest indexed images of an image")
    s.add_argument("index", metavar="INDEX")
    s.add_argument("image", metavar="IMAGE")
    s.add_argument("-k", "--top-k", dest="k", type=int, default=5)
    s.add_argument("--checkpoint", metavar="CKPT", help="the model that embeds the query (default: the one that "
                   "built the index)")
    s.add_argument("--backend", default="auto", choices=["auto", "faiss", "torch"])
    s.add_argument("--out", metavar="PNG", help="the strip of neighbours (default: INDEX-stem-IMAGE-stem.png)")
    s.add_argument("--invert", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=run_search)


def _images(folder: Path) -> list[Path]:
    from ..errors import DataError

    if not folder.is_dir():
        raise DataError(f"'{folder}' is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"'{folder}' holds no image files ({', '.join(sorted(SUFFIXES))})")
    return files


def _embedder(checkpoint_path: str):
    from ..errors import ConfigError
    from ..tasks.metric import EmbeddingPredictor
    from ..train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint_path)
    if ckpt.task != "metric":
        raise ConfigError(f"'{checkpoint_path}' is a {ckpt.task} checkpoint; an index needs a metric one "
                          "(cnnlab train embedding_net ...)")
    return ckpt, EmbeddingPredictor(ckpt, index=False)


def _load(paths, ckpt, invert: bool):
    import torch

    from ..data.images import open_image

    return torch.stack([ckpt.preprocessing.image(open_image(p), invert=invert or None) for p in paths])


def build_index(checkpoint_path: str, folder: str | Path, out: str | Path, *, invert: bool = False) -> dict:
    """Embed the images of ``folder`` into the index ``out`` (created, or updated); a summary."""
    import torch

    from ..errors import DataError
    from ..metric.index import EmbeddingIndex

    ckpt, predictor = _embedder(checkpoint_path)
    files = _images(Path(folder))
    names = [str(p.resolve()) for p in files]
    info = {"checkpoint": str(Path(checkpoint_path).resolve()), "arch": ckpt.arch,
            "embedding_dim": int(ckpt.meta.arch_kwargs.get("embedding_dim", 0))}
    out = Path(out)
    index = EmbeddingIndex.load(out) if out.exists() else EmbeddingIndex(torch.zeros(0, 0), [], info)
    if len(index) and index.info.get("checkpoint") != info["checkpoint"]:
        raise DataError(f"'{out}' was built with {index.info.get('checkpoint')}, not {info['checkpoint']}; "
                        "build a new index for another model")
    before = len(index)
    vectors = []
    for start in range(0, len(files), 256):
        vectors.append(predictor.embed(_load(files[start:start + 256], ckpt, invert)))
    added = index.add(torch.cat(vectors), names)
    index.info = info
    index.save(out)
    return {"index": str(out), "images": len(index), "added": added, "updated": len(files) - added,
            "previously": before, "dimensions": index.dim}


def run_build(args) -> int:
    summary = build_index(args.checkpoint, args.folder, args.out, invert=args.invert)
    if args.json:
        print_json(summary)
    else:
        print(f"{summary['index']}: {summary['images']} images ({summary['added']} added, {summary['updated']} "
              f"re-embedded), {summary['dimensions']}-D")
    return 0


def run_search(args) -> int:
    import numpy as np

    from ..data.images import open_image
    from ..errors import ConfigError
    from ..metric.index import EmbeddingIndex
    from ..metric.pictures import neighbour_strip

    if args.k < 1:
        raise ConfigError("-k must be at least 1")
    index = EmbeddingIndex.load(args.index)
    source = args.checkpoint or index.info.get("checkpoint")
    if not source:
        raise ConfigError(f"'{args.index}' does not say which model built it; pass --checkpoint")
    ckpt, predictor = _embedder(source)
    query = _load([args.image], ckpt, args.invert)
    rows, distances = index.search(predictor.embed(query), args.k, backend=args.backend)
    found = [{"name": index.names[i], "distance": round(float(d), 6)} for i, d in zip(rows[0].tolist(), distances[0].tolist())]
    out = Path(args.out or f"{Path(args.index).stem}-{Path(args.image).stem}.png")

    def show(path) -> np.ndarray:
        image = np.asarray(open_image(path).convert("RGB" if ckpt.input_size[0] == 3 else "L"))
        return image

    neighbour_strip(show(args.image), [show(f["name"]) for f in found],
                    [f"{Path(f['name']).name}\n{f['distance']:.3f}" for f in found], out)
    if args.json:
        print_json({"query": args.image, "neighbours": found, "picture": str(out)})
    else:
        print(f"{args.image}: nearest of {len(index)} indexed images")
        for f in found:
            print(f"  {f['distance']:.4f}  {f['name']}")
        print(f"wrote {out}")
    return 0
