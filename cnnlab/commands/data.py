"""``cnnlab data``: download, verify and describe datasets; generate scene sets; draw samples."""

from __future__ import annotations

import sys
from pathlib import Path

from . import add_verb
from ..console import print_json, print_table


def register(subparsers) -> None:
    p = add_verb(subparsers, "data", help="download, verify, describe, generate or draw a dataset",
                 example="cnnlab data info fashion-mnist --data-dir ~/data\n  cnnlab data make fashion-scenes --count 2000\n"
                         "  cnnlab data show fashion-scenes-mini --out grid.png")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help: str, example: str):
        sub = add_verb(actions, name, help=help, example=example)
        sub.add_argument("--data-dir", help="data root (default: $CNNLAB_DATA or the user cache)")
        sub.add_argument("--json", action="store_true", help="print the result as JSON")
        return sub

    for name, verb in (("download", "fetch"), ("verify", "check the IDX structure and official SHA-256 of")):
        sub = action(name, f"{verb} a named classification dataset", f"cnnlab data {name} fashion-mnist")
        sub.add_argument("dataset", help="dataset name")
        sub.set_defaults(func=run_files)

    sub = action("info", "describe a dataset: classes and sizes; for detection / segmentation data also objects "
                 "per image, object sizes, overlap and occlusion",
                 "cnnlab data info fashion-scenes-mini\n  cnnlab data info ~/coco --split test --json")
    sub.add_argument("dataset", help="dataset name, COCO JSON file, or folder (IDX, images by class, COCO, VOC)")
    sub.add_argument("--split", choices=["train", "test"], help="only this split (default: both)")
    sub.add_argument("--format", choices=["coco", "voc"], help="how to read a folder holding both")
    sub.set_defaults(func=run_info)

    sub = action("make", "generate a scene set: canvases of several real items with boxes, instance and "
                 "semantic masks (COCO JSON + PNG + VOC PNGs)",
                 "cnnlab data make fashion-scenes --count 2000 --test-count 400 --size 128 --seed 0 --max-objects 6")
    sub.add_argument("name", help="fashion-scenes, mnist-scenes, fashion-scenes-mini, or figures / figures-mini "
                     "(stick figures with COCO person keypoints), or digit-strings / digit-strings-mini "
                     "(text lines of real MNIST digits, for OCR), or moving-items / moving-items-mini "
                     "(clips of real items moving, labelled by the motion, for video)")
    sub.add_argument("--count", type=int, help="training scenes (default: the set's own: 5000, 200 for the mini set)")
    sub.add_argument("--test-count", type=int, help="test scenes (default: the set's own: 1000, 50 for the mini set)")
    sub.add_argument("--size", default="128", help="canvas size, N or HxW (default 128)")
    sub.add_argument("--seed", type=int, default=0)
    sub.add_argument("--min-objects", type=int, default=1)
    sub.add_argument("--max-objects", type=int, default=6)
    sub.add_argument("--scale", default="0.7:3", help="item scale range LOW:HIGH (28-pixel items; default 0.7:3)")
    sub.add_argument("--rotate", type=float, default=0.0, help="largest rotation in degrees (default 0: upright)")
    sub.add_argument("--max-occlusion", type=float, default=0.6, help="most of an item others may hide (default 0.6)")
    sub.add_argument("--noise", type=float, default=8.0, help="largest sensor-noise sigma in grey levels (default 8)")
    sub.add_argument("--channels", type=int, choices=[1, 3], default=1, help="1 grey (default) or 3 colour")
    sub.add_argument("--source", help="item dataset instead of the set's own (e.g. mnist-10k, fashion-mnist-mini)")
    sub.add_argument("--out", help="output folder (default DATA_ROOT/NAME)")
    sub.add_argument("--force", action="store_true", help="replace an existing folder")
    sub.add_argument("--frames", type=int, default=16, help="moving-items: frames per clip (default 16)")
    sub.add_argument("--layout", choices=["npz", "gif", "frames"], default="npz",
                     help="moving-items: train.npz/test.npz (default), or <split>/<class>/<clip>.gif, or folders "
                     "of PNG frames")
    sub.set_defaults(func=run_make)

    sub = action("show", "draw samples of a detection / segmentation dataset: boxes and class names, instance "
                 "masks, semantic masks",
                 "cnnlab data show fashion-scenes-mini --count 8 --out grid.png\n"
                 "  cnnlab data show fashion-scenes-mini --augment flip,crop=0.3:1,color=0.3 --seed 1")
    sub.add_argument("dataset", help="scene set name, COCO JSON file, or COCO / VOC folder")
    sub.add_argument("--split", choices=["train", "test"], default="train")
    sub.add_argument("--count", type=int, default=8, help="how many samples (default 8)")
    sub.add_argument("--indices", help="which images, e.g. 0,5,9 (default: the first COUNT)")
    sub.add_argument("--augment", help="augmentation to preview, e.g. flip,crop=0.3:1,scale=0.5:1.5,translate=0.1,color=0.3")
    sub.add_argument("--size", help="letterbox every image to N or HxW (needed for mixed sizes)")
    sub.add_argument("--seed", type=int, default=0, help="seed of the augmentation (default 0)")
    sub.add_argument("--format", choices=["coco", "voc"], help="how to read a folder holding both")
    sub.add_argument("--out", default="grid.png", help="PNG to write (default grid.png)")
    sub.set_defaults(func=run_show)


def parse_size(text: str | None) -> tuple[int, int] | None:
    from ..errors import ConfigError

    if text is None:
        return None
    parts = str(text).lower().split("x")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        raise ConfigError(f"size must be N or HxW, not '{text}'") from None
    if len(values) not in (1, 2) or min(values) <= 0:
        raise ConfigError(f"size must be N or HxW with positive numbers, not '{text}'")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def run_files(args) -> int:
    from ..data import DATASETS, ensure_files
    from ..data.datasets import dataset_folder
    from ..data.download import sha256_of
    from ..errors import DataError

    if args.dataset not in DATASETS:
        raise DataError(f"'{args.dataset}' is not a named dataset ({', '.join(DATASETS)}); only those can be "
                        f"{'downloaded' if args.action == 'download' else 'verified'}")
    spec = DATASETS[args.dataset]
    if args.action == "download":
        folder = ensure_files(spec, args.data_dir)
        print_json({"dataset": spec.name, "folder": str(folder)}) if args.json else print(f"{spec.name}: {folder}")
        return 0
    folder = dataset_folder(spec, args.data_dir)
    rows, bad = [], 0
    for name in spec.all_files():
        path = Path(folder) / name
        if not path.is_file():
            rows.append({"file": name, "status": "missing"})
            bad += 1
            continue
        status, shape = spec.verify(path)
        bad += status != "ok"
        digest = sha256_of(path)
        official = spec.sha256.get(name)
        rows.append({"file": name, "status": status, "shape": shape, "sha256": digest,
                     "official_checksum": None if official is None else digest == official})
    if args.json:
        print_json({"dataset": spec.name, "folder": str(folder), "files": rows})
    else:
        print(f"{spec.name} in {folder}")
        print_table([(r["file"], "readable" if r["status"] == "ok" else r["status"],
                      "x".join(map(str, r.get("shape") or [])),
                      {None: "-", True: "matches", False: "differs"}[r.get("official_checksum")]) for r in rows],
                    ["file", "contents", "shape", "official SHA-256"])
        readable = sum(r["status"] == "ok" for r in rows)
        matching = sum(r.get("official_checksum") is True for r in rows)
        known = sum(r.get("official_checksum") is not None for r in rows)
        verdict = f"contents: {readable} of {len(rows)} files read in full"
        if known:
            verdict += f"; official SHA-256: {matching} of {known} match"
            if matching < known and readable == len(rows):
                verdict += (" (those that differ hold readable data but are not the official bytes, e.g. a re-compressed "
                            "copy; downloads are always checked against the official SHA-256)")
        print(verdict)
    return 1 if bad else 0


def _object_info(args) -> dict:
    from ..data.object_datasets import load_object_dataset
    from ..errors import DataError

    info, problems = {}, []
    for split in [args.split] if args.split else ["train", "test"]:
        try:
            info[split] = load_object_dataset(args.dataset, split, args.data_dir, format=args.format).describe()
        except DataError as e:
            if args.split or "no split" not in str(e) and "not a COCO file for split" not in str(e):
                raise
            problems.append(str(e))
    if not info:
        raise DataError(problems[0])
    return info


def _print_object_info(info: dict) -> None:
    for split, d in info.items():
        size = "x".join(map(str, d["input_size"])) if d["input_size"] else \
            f"{d['image_sizes']['distinct']} sizes ({'x'.join(map(str, d['image_sizes']['min']))} to " \
            f"{'x'.join(map(str, d['image_sizes']['max']))}, HxW)"
        per = d["objects_per_image"]
        s = d["size"]
        pct = s["sqrt_area_percentiles"]
        print(f"{d['name']} {split}: {d['images']} images of {size}, {d['objects']} objects "
              f"({per['mean']:.2f} per image, {per['min']} to {per['max']}), {len(d['classes'])} classes, "
              f"masks {'yes' if d['masks'] else 'no'}, crowd {d['crowd']}")
        if pct:
            print(f"  object size (square root of area, pixels): 5% {pct['5']}, median {pct['50']}, 95% {pct['95']}; "
                  f"small {s['small']} / medium {s['medium']} / large {s['large']} (COCO: area < 32², < 96²)")
        occ = d["occlusion"]
        print(f"  boxes overlapping another box: {d['overlap_rate']:.1%}" +
              (f"; occluded objects: {occ['rate']:.1%}, hidden fraction mean {occ['mean_hidden']:.3f} "
               f"({occ['mean_hidden_when_occluded']:.3f} among occluded, max {occ['max_hidden']:.3f})" if occ else ""))
        print(f"  objects per image: " + ", ".join(f"{k}: {v}" for k, v in enumerate(per["histogram"]) if v))
    splits = list(info)
    print_table([(c, *(info[sp]["per_class"][i] for sp in splits)) for i, c in enumerate(info[splits[0]]["classes"])],
                ["class", *splits], justify_right=splits)


def run_info(args) -> int:
    from ..data import load_dataset
    from ..data.object_datasets import is_object_dataset

    if is_object_dataset(args.dataset):
        info = _object_info(args)
        print_json(info) if args.json else _print_object_info(info)
        return 0
    splits = [args.split] if args.split else ["train", "test"]
    # Describing never downloads (nor creates folders): 'cnnlab data download' does that.
    info = {split: load_dataset(args.dataset, split, args.data_dir, download_missing=False).describe()
            for split in splits}
    if args.json:
        print_json(info)
    else:
        for split, d in info.items():
            print(f"{d['name']} {split}: {d['size']} images of {'x'.join(map(str, d['input_size']))}, "
                  f"{len(d['classes'])} classes, mean {d['mean']} std {d['std']}")
        print_table([(c, *(info[sp]["per_class"][i] for sp in splits)) for i, c in enumerate(info[splits[0]]["classes"])],
                    ["class", *splits], justify_right=splits)
    return 0


def run_make(args) -> int:
    import time

    if args.name in ("figures", "figures-mini"):
        return run_make_figures(args)
    if args.name in ("digit-strings", "digit-strings-mini"):
        return run_make_digit_strings(args)
    if args.name in ("moving-items", "moving-items-mini"):
        return run_make_moving_items(args)

    from ..data.object_datasets import make_scene_set
    from ..errors import ConfigError

    height, width = parse_size(args.size)
    try:
        low, high = (float(v) for v in args.scale.split(":"))
    except ValueError:
        raise ConfigError(f"--scale must be LOW:HIGH, not '{args.scale}'") from None
    tty = sys.stderr.isatty() and not args.json
    last = [0.0]

    def progress(split: str, done: int, total: int) -> None:
        now = time.monotonic()
        if tty and (done == total or now - last[0] > 0.5):
            last[0] = now
            print(f"\r{args.name} {split}: {done}/{total} scenes", end="\n" if done == total else "", file=sys.stderr,
                  flush=True)

    start = time.monotonic()
    folder = make_scene_set(args.name, data_dir=args.data_dir, out=args.out, count=args.count,
                            test_count=args.test_count, seed=args.seed, source=args.source, force=args.force,
                            progress=progress, height=height, width=width, min_objects=args.min_objects,
                            max_objects=args.max_objects, scale=(low, high), rotate=args.rotate,
                            max_occlusion=args.max_occlusion, noise=args.noise, channels=args.channels)
    seconds = time.monotonic() - start
    from ..data.object_datasets import load_object_dataset

    stats = {split: load_object_dataset(folder, split).describe() for split in ("train", "test")}
    if args.json:
        print_json({"name": args.name, "folder": str(folder), "seconds": round(seconds, 2), "statistics": stats})
    else:
        print(f"{args.name}: {stats['train']['images']} train / {stats['test']['images']} test scenes in {folder} "
              f"({seconds:.1f} s)")
        _print_object_info(stats)
    return 0


def run_make_figures(args) -> int:
    """``cnnlab data make figures``: stick figures with COCO's 17 keypoints, as a COCO person-keypoints set."""
    import time

    from ..tasks.keypoints import make_figures

    height, width = parse_size(args.size)
    start = time.monotonic()
    folder = make_figures(args.name, data_dir=args.data_dir, out=args.out, count=args.count, test_count=args.test_count,
                          seed=args.seed, force=args.force, height=height, width=width,
                          min_figures=args.min_objects, max_figures=min(args.max_objects, 6), noise=args.noise)
    seconds = time.monotonic() - start
    from ..data.coco import read_json

    stats = {}
    for split in ("train", "test"):
        data = read_json(folder / "annotations" / f"person_keypoints_{split}.json")
        anns = data["annotations"]
        flags = [v for a in anns for v in a["keypoints"][2::3]]
        stats[split] = {"images": len(data["images"]), "people": len(anns),
                        "visible": round(flags.count(2) / max(1, len(flags)), 4),
                        "hidden": round(flags.count(1) / max(1, len(flags)), 4),
                        "unlabelled": round(flags.count(0) / max(1, len(flags)), 4)}
    return _report_made(args, folder, seconds, stats, lambda st: (
        f"{st['images']} images, {st['people']} people; keypoints visible {st['visible']:.1%}, hidden "
        f"{st['hidden']:.1%}, unlabelled {st['unlabelled']:.1%}"))


def _report_made(args, folder, seconds: float, stats: dict, line) -> int:
    """What ``data make`` prints of a written set: the JSON record, or one line per split (``line(stats)``)."""
    if args.json:
        print_json({"name": args.name, "folder": str(folder), "seconds": round(seconds, 2), "statistics": stats})
        return 0
    for split, st in stats.items():
        print(f"{args.name} {split}: {line(st)}")
    print(f"written to {folder} ({seconds:.1f} s)")
    return 0


def run_make_digit_strings(args) -> int:
    """``cnnlab data make digit-strings``: lines of 1-12 real MNIST digits and their strings (folders + labels.txt)."""
    import time

    from ..data.digit_strings import load_text_lines
    from ..tasks.ocr import make_digit_strings

    settings = {}
    if args.size != "128":  # the scene sets' default; text lines are 32x256 unless asked
        settings["height"], settings["width"] = parse_size(args.size)
    if args.noise != 8.0:
        settings["noise"] = args.noise
    start = time.monotonic()
    folder = make_digit_strings(args.name, data_dir=args.data_dir, out=args.out, count=args.count,
                                test_count=args.test_count, seed=args.seed, force=args.force, source=args.source,
                                min_digits=args.min_objects,
                                max_digits=12 if args.max_objects == 6 else args.max_objects, **settings)
    seconds = time.monotonic() - start
    stats = {}
    for split in ("train", "test"):
        lines = load_text_lines(folder, split)
        lengths = [len(t) for t in lines.texts]
        stats[split] = {"lines": len(lines), "characters": sum(lengths), "min_length": min(lengths),
                        "max_length": max(lengths), "size": list(lines.input_size[1:])}
    return _report_made(args, folder, seconds, stats, lambda st: (
        f"{st['lines']} lines of {st['min_length']}-{st['max_length']} digits ({st['characters']} in all), "
        f"{st['size'][0]}x{st['size'][1]}"))


def run_make_moving_items(args) -> int:
    """``cnnlab data make moving-items``: clips of real items moving on a canvas, labelled by the motion."""
    import time

    from ..tasks.video import make_moving_items
    from ..data.moving_items import load_clips

    settings = {"frames": args.frames}
    if args.size != "128":  # the scene sets' default; clips are 32x32 unless asked
        height, width = parse_size(args.size)
        if height != width:
            from ..errors import ConfigError

            raise ConfigError(f"moving-items clips are square, got --size {args.size}")
        settings["size"] = height
    if args.noise != 8.0:
        settings["noise"] = args.noise
    start = time.monotonic()
    folder = make_moving_items(args.name, data_dir=args.data_dir, out=args.out, count=args.count,
                               test_count=args.test_count, seed=args.seed, force=args.force, source=args.source,
                               layout=args.layout, **settings)
    seconds = time.monotonic() - start
    stats = {}
    for split in ("train", "test"):
        clips = load_clips(folder, split, frames=args.frames)
        counts = [int((clips.labels == k).sum()) for k in range(len(clips.class_names))]
        stats[split] = {"clips": len(clips), "shape": list(clips.input_size),
                        "per_class": dict(zip(clips.class_names, counts))}
    return _report_made(args, folder, seconds, stats, lambda st: (
        f"{st['clips']} clips of {'x'.join(map(str, st['shape']))} (C x T x H x W), "
        f"{min(st['per_class'].values())}-{max(st['per_class'].values())} per class"))


def run_show(args) -> int:
    import torch

    from ..data.object_batches import mean_fill
    from ..data.object_datasets import load_object_dataset
    from ..data.object_transforms import parse_object_augment
    from ..errors import ConfigError
    from ..viz.objects import write_samples_grid

    dataset = load_object_dataset(args.dataset, args.split, args.data_dir, format=args.format)
    if args.indices:
        try:
            indices = [int(v) for v in args.indices.split(",") if v.strip()]
        except ValueError:
            raise ConfigError(f"--indices must be numbers separated by commas, not '{args.indices}'") from None
    else:
        if args.count < 1:
            raise ConfigError("--count must be at least 1")
        indices = list(range(min(args.count, len(dataset))))
    size = parse_size(args.size)
    if size is None and dataset.input_size is None:
        size = (512, 512)
    batch = dataset.batch(indices, size=size)
    augment = parse_object_augment(args.augment) if args.augment else None
    if augment is not None:
        batch = augment(batch, torch.Generator().manual_seed(args.seed), hflip=dataset.hflip,
                        flip_pairs=dataset.flip_pairs, fill=mean_fill(dataset))
    titles = [f"#{i} {dataset.image_info(i).file_name}" for i in indices]
    path = write_samples_grid(batch, dataset.class_names, args.out, titles=titles)
    summary = {"dataset": dataset.name, "split": dataset.split, "out": str(path), "indices": indices,
               "objects": [len(t) for t in batch.targets],
               "augment": args.augment or None}
    print_json(summary) if args.json else print(path)
    return 0
