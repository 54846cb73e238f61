"""``cnnlab viz``: draw what a network sees and learns; every subcommand writes PNG files and prints
their paths (``--json``: a list of {"kind", "path", ...} objects)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import add_verb
from ..console import print_json

SUBCOMMANDS = {
    "filters": ("learned filters: first layer as a colour grid, deeper layers as filter x channel grids",
                "cnnlab viz filters runs/lenet5 --layer conv2"),
    "features": ("feature maps of every conv / pool stage for one image, strongest channels first",
                 "cnnlab viz features runs/vgg11 shoe.png"),
    "cam": ("Grad-CAM, Grad-CAM++ and saliency for the predicted (or a chosen) class",
            "cnnlab viz cam runs/resnet18 shoe.png --class Sneaker"),
    "activation": ("the dataset images and patches that excite one channel most, and an optimised input",
                   "cnnlab viz activation runs/lenet5 --layer conv2 --channel 3"),
    "kernels": ("the decks' classic kernels (emboss, edges, Sobel, blur, sharpen) on a photograph",
                "cnnlab viz kernels --photo astronaut"),
    "predictions": ("a task's pictures: predictions beside the ground truth, worst images, and the task's own",
                    "cnnlab viz predictions runs/unet --kind worst --limit 200"),
    "curves": ("loss and accuracy curves of one or more training runs, overlaid",
               "cnnlab viz curves runs/lenet5 runs/vgg11"),
    "confusion": ("confusion matrix and the most confident mistakes on a dataset",
                  "cnnlab viz confusion runs/lenet5 --limit 2000"),
    "embed": ("2-D PCA of the penultimate features, coloured by class",
              "cnnlab viz embed runs/lenet5 --limit 2000"),
}


def register(subparsers) -> None:
    p = add_verb(subparsers, "viz", help="draw filters, feature maps, CAM, kernels, curves, confusion, embeddings",
                 example="cnnlab viz cam runs/lenet5 shoe.png --out pictures",
                 description="Draw what a network sees and learns. Each subcommand writes PNG files into --out "
                             "and prints their paths.")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    sub = p.add_subparsers(dest="viz_command", metavar="WHAT")
    parsers = {}
    for name, (text, example) in SUBCOMMANDS.items():
        s = sub.add_parser(name, help=text, description=text, epilog=f"example:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        s.add_argument("--out", default="viz", metavar="DIR", help="folder for the PNG files (default: ./viz)")
        s.add_argument("--json", action="store_true", help="print the written files as JSON")
        s.set_defaults(func=_single_threaded(globals()[f"run_{name}"]))
        parsers[name] = s

    s = parsers["filters"]
    s.add_argument("checkpoint", metavar="CKPT")
    s.add_argument("--layer", help="a stage name (conv2) or module path (features.3); default the first convolution")
    s.add_argument("--all", action="store_true", help="one picture per convolution of the network")
    s.add_argument("--max-filters", type=int, default=64)

    for name in ("features", "cam"):
        s = parsers[name]
        s.add_argument("checkpoint", metavar="CKPT")
        s.add_argument("image", metavar="IMAGE", nargs="?",
                       help="any image Pillow reads; default: test image --index of the checkpoint's dataset")
        s.add_argument("--index", type=int, default=0, help="test image to use when no IMAGE is given")
        s.add_argument("--invert", action="store_true", help="invert grey levels (dark on light -> light on dark)")
        _data_options(s)
    parsers["features"].add_argument("--channels", type=int, default=8, help="channels shown per stage")
    parsers["cam"].add_argument("--class", dest="class_", metavar="C",
                                help="class name or index to explain (default: the predicted one)")
    parsers["cam"].add_argument("--layer", help="target layer: stage name or module path (default: last conv stage)")

    s = parsers["activation"]
    s.add_argument("checkpoint", metavar="CKPT")
    s.add_argument("--layer", required=True, help="stage name (conv2, layer3) or module path")
    s.add_argument("--channel", type=int, required=True)
    s.add_argument("--top", type=int, default=9, help="how many top images")
    s.add_argument("--limit", type=int, default=2000, help="search the first N test images (0: all)")
    s.add_argument("--steps", type=int, default=160, help="gradient-ascent steps of the optimised input")
    _data_options(s)

    s = parsers["kernels"]
    s.add_argument("image", metavar="IMAGE", nargs="?", help="a photograph (default: scikit-image's 'camera')")
    s.add_argument("--photo", choices=["camera", "astronaut", "chelsea", "coffee"],
                   help="a scikit-image sample photograph instead of IMAGE")
    s.add_argument("--kernels", help="comma-separated kernel names (default: the decks' set and friends)")
    s.add_argument("--size", type=int, default=384, help="longest side the photograph is scaled to")

    s = parsers["curves"]
    s.add_argument("runs", metavar="RUN", nargs="+", help="run folders or history.jsonl files")
    s.add_argument("--name", default="curves", help="file name (without .png)")

    for name in ("confusion", "embed"):
        s = parsers[name]
        s.add_argument("checkpoint", metavar="CKPT")
        s.add_argument("--limit", type=int, default=2000, help="use the first N test images (0: all)")
        _data_options(s)
    parsers["confusion"].add_argument("--mistakes", type=int, default=24, help="how many mistakes to show")

    s = parsers["predictions"]
    s.add_argument("checkpoint", metavar="CKPT")
    s.add_argument("--kind", help="which picture (the task lists its kinds; default its first)")
    s.add_argument("--limit", type=int, default=200, help="use the first N test examples (0: all)")
    _data_options(s)


def _single_threaded(run):
    """Run a subcommand with one intra-op thread unless OMP_NUM_THREADS says otherwise: the work is
    one image or small batches, where hand-offs between threads cost more than they save (ten times
    more on a busy machine)."""

    def wrapped(args) -> int:
        import os

        import torch

        if not os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(1)
        return run(args)

    return wrapped


def _data_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--data", help="dataset (default: the one the checkpoint was trained on)")
    s.add_argument("--data-dir", help="data root")


# --- shared steps ------------------------------------------------------------------------------------

def _report(args, written: list[dict]) -> int:
    if args.json:
        print_json(written)
    else:
        for item in written:
            print(item["path"])
    return 0


def _out(args, name: str) -> Path:
    return Path(args.out) / f"{name}.png"


def _image_stem(args) -> str:
    """The image's part of a picture's name: its file name, or the test image's index."""
    return _safe(Path(args.image).stem) if getattr(args, "image", None) else f"test{args.index}"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def _stem(ckpt) -> str:
    return Path(ckpt.run_dir).name or ckpt.arch


def _checkpoint(path: str):
    from ..train.checkpoint import load_checkpoint

    return load_checkpoint(path)


def _dataset(args, ckpt, split: str = "test"):
    from ..data import load_dataset
    from ..errors import DataError

    name = args.data or ckpt.meta.dataset
    if not name:
        raise DataError("the checkpoint does not say which dataset it was trained on; pass --data")
    data = load_dataset(name, split, args.data_dir)
    if tuple(data.input_size) != tuple(ckpt.input_size):
        raise DataError(f"{name} images are {'x'.join(map(str, data.input_size))}, the model expects "
                        f"{'x'.join(map(str, ckpt.input_size))}")
    limit = getattr(args, "limit", 0)
    return data.subset(slice(0, limit)) if limit and limit > 0 else data


def _one_image(args, ckpt):
    """(uint8 C x H x W as the model sees it, a label for titles)."""
    from ..data.images import open_image

    if args.image:
        return ckpt.preprocessing.image(open_image(args.image), invert=True if args.invert else None), Path(args.image).name
    data = _dataset(args, ckpt)
    if not 0 <= args.index < len(data):
        raise ValueError(f"--index {args.index} is out of range: the test set has {len(data)} images")
    label = data.class_names[int(data.labels[args.index])]
    return data.images[args.index], f"test image {args.index} ({label})"


def _model_input(image_chw, ckpt):
    return ckpt.preprocessing.normalize(image_chw[None])


def _hwc(image_chw):
    return image_chw.permute(1, 2, 0).numpy()


# --- subcommands -------------------------------------------------------------------------------------

def run_filters(args) -> int:
    from ..viz import style
    from ..viz.filters import conv_layers, find_conv, plot_filters

    if args.max_filters < 1:
        raise ValueError("--max-filters must be at least 1")
    ckpt = _checkpoint(args.checkpoint)
    chosen = conv_layers(ckpt.model) if args.all else [find_conv(ckpt.model, args.layer)]
    written = []
    for path, conv in chosen:
        title = f"{ckpt.arch} {path}"
        if conv.weight.shape[1] in (1, 3):
            fig = plot_filters(conv.weight, title=title, max_filters=args.max_filters)
        else:
            from ..viz.filters import plot_channel_grid

            fig = plot_channel_grid(conv.weight, title=title, max_filters=min(args.max_filters, 32))
        file = style.save(fig, _out(args, f"filters-{_stem(ckpt)}-{path.replace('.', '_')}"))
        written.append({"kind": "filters", "path": str(file), "layer": path, "shape": list(conv.weight.shape)})
    return _report(args, written)


def run_features(args) -> int:
    from ..viz import style
    from ..viz.features import feature_maps, plot_feature_maps

    if args.channels < 1:
        raise ValueError("--channels must be at least 1")
    ckpt = _checkpoint(args.checkpoint)
    image, label = _one_image(args, ckpt)
    maps = [(n, m) for n, m in feature_maps(ckpt.model, _model_input(image, ckpt)) if m.dim() == 4]
    fig = plot_feature_maps(maps, _hwc(image), channels=args.channels, title=f"{ckpt.arch} feature maps: {label}")
    file = style.save(fig, _out(args, f"features-{_stem(ckpt)}-{_image_stem(args)}"))
    return _report(args, [{"kind": "features", "path": str(file),
                           "stages": [{"name": n, "shape": list(m.shape[1:])} for n, m in maps]}])


def _class_index(value: str | None, class_names: list[str]) -> int | None:
    from ..errors import unknown_name

    if value is None:
        return None
    if value in class_names:
        return class_names.index(value)
    lowered = [c.lower() for c in class_names]
    if value.lower() in lowered:
        return lowered.index(value.lower())
    if value.lstrip("-").isdigit():
        index = int(value)
        if not 0 <= index < len(class_names):
            raise ValueError(f"class index {index} is out of range: the model has {len(class_names)} classes")
        return index
    raise unknown_name("class", value, class_names)


def run_cam(args) -> int:
    from ..viz import style
    from ..viz.cam import cam_maps, plot_cam

    ckpt = _checkpoint(args.checkpoint)
    class_index = _class_index(args.class_, ckpt.class_names)
    image, label = _one_image(args, ckpt)
    e = cam_maps(ckpt.model, _model_input(image, ckpt), class_index, args.layer)
    fig = plot_cam(_hwc(image), e, ckpt.class_names, title=f"{ckpt.arch}, {label}")
    cls = f"-{ckpt.class_names[e.class_index]}" if class_index is not None else ""
    file = style.save(fig, _out(args, f"cam-{_stem(ckpt)}-{_image_stem(args)}{_safe(cls)}"))
    return _report(args, [{"kind": "cam", "path": str(file), "class": ckpt.class_names[e.class_index],
                           "class_index": e.class_index, "probability": float(e.probabilities[e.class_index]),
                           "target_layer": e.target_layer}])


def run_activation(args) -> int:
    from ..viz import style
    from ..viz.activation import maximize_channel, plot_activation, top_activations
    from ..viz.stages import find_module

    if args.top < 1 or args.steps < 0:
        raise ValueError("--top must be at least 1 and --steps at least 0")
    ckpt = _checkpoint(args.checkpoint)
    data = _dataset(args, ckpt)
    layer = find_module(ckpt.model, args.layer)
    top = top_activations(ckpt.model, layer, data.images, args.channel, preprocessing=ckpt.preprocessing, k=args.top)
    optimised = maximize_channel(ckpt.model, layer, args.channel, ckpt.input_size, preprocessing=ckpt.preprocessing,
                                 steps=args.steps, fallback_start=data.images[top.indices[0]].float() / 255.0)
    fig = plot_activation(data.images, top, optimised,
                          title=f"{ckpt.arch} {args.layer} channel {args.channel}: what excites it")
    file = style.save(fig, _out(args, f"activation-{_stem(ckpt)}-{args.layer.replace('.', '_')}-{args.channel}"))
    return _report(args, [{"kind": "activation", "path": str(file), "layer": args.layer, "channel": args.channel,
                           "top": [{"index": i, "score": s} for i, s in zip(top.indices, top.scores)],
                           "optimised": {"start": optimised.start, "initial": optimised.initial,
                                         "final": optimised.final}}])


def run_kernels(args) -> int:
    from ..viz import style
    from ..viz.kernels import DEFAULT_KERNELS, get_kernel, load_photo, plot_kernels

    if args.image and args.photo:
        raise ValueError("give IMAGE or --photo, not both")
    if args.size < 16:
        raise ValueError("--size must be at least 16")
    names = [n.strip() for n in args.kernels.split(",") if n.strip()] if args.kernels else DEFAULT_KERNELS
    for n in names:
        get_kernel(n)
    source = args.image or args.photo
    photo = load_photo(source, max_side=args.size)
    label = Path(args.image).name if args.image else (args.photo or "camera")
    fig = plot_kernels(photo, names, title=f"Classic kernels on '{label}'")
    file = style.save(fig, _out(args, f"kernels-{Path(label).stem}"))
    return _report(args, [{"kind": "kernels", "path": str(file), "kernels": names}])


def run_curves(args) -> int:
    from ..viz import style
    from ..viz.curves import plot_curves, read_history, run_label

    runs: dict[str, list] = {}
    for path in args.runs:
        name = run_label(path)
        while name in runs:
            name += "'"
        runs[name] = read_history(path)
    fig = plot_curves(runs)
    file = style.save(fig, _out(args, args.name))
    return _report(args, [{"kind": "curves", "path": str(file), "runs": list(runs)}])


def run_confusion(args) -> int:
    from ..viz import style
    from ..train.metrics import confusion_matrix
    from ..viz.confusion import plot_confusion, plot_mistakes, predict_probabilities, worst_mistakes

    ckpt = _checkpoint(args.checkpoint)
    data = _dataset(args, ckpt)
    probs = predict_probabilities(ckpt.model, data.images, preprocessing=ckpt.preprocessing)
    names = ckpt.class_names
    matrix = confusion_matrix(probs.argmax(1), data.labels, len(names)).numpy()
    stem = _stem(ckpt)
    first = style.save(plot_confusion(matrix, names, title=f"{ckpt.arch} confusion matrix"),
                       _out(args, f"confusion-{stem}"))
    worst = worst_mistakes(probs, data.labels, max(0, args.mistakes))
    second = style.save(plot_mistakes(data.images, data.labels, probs, worst, names,
                                      title=f"{ckpt.arch}: most confident mistakes"), _out(args, f"mistakes-{stem}"))
    accuracy = float(matrix.trace() / max(1, matrix.sum()))
    return _report(args, [
        {"kind": "confusion", "path": str(first), "images": int(matrix.sum()), "accuracy": accuracy,
         "matrix": matrix.tolist()},
        {"kind": "mistakes", "path": str(second), "indices": worst},
    ])


def run_predictions(args) -> int:
    from ..errors import ConfigError
    from ..tasks import get_task

    ckpt = _checkpoint(args.checkpoint)
    task = get_task(ckpt.task)
    kind = args.kind or (task.pictures_kinds[0] if task.pictures_kinds else "")
    if kind not in task.pictures_kinds:
        raise ConfigError(f"the {task.name} task draws {', '.join(task.pictures_kinds) or 'no pictures'}, not '{kind}'")
    name = args.data or ckpt.meta.dataset
    data = task.load_split(name, "test", args.data_dir)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    return _report(args, task.pictures(ckpt, data, Path(args.out), kind=kind, limit=args.limit))


def run_embed(args) -> int:
    from ..viz import style
    from ..viz.embed import pca_2d, penultimate_features, plot_embedding

    ckpt = _checkpoint(args.checkpoint)
    data = _dataset(args, ckpt)
    feats = penultimate_features(ckpt.model, data.images, preprocessing=ckpt.preprocessing)
    coords, explained = pca_2d(feats.numpy())
    fig = plot_embedding(coords, data.labels.numpy(), ckpt.class_names, explained,
                         title=f"{ckpt.arch}: penultimate features ({feats.shape[1]}-D) by PCA")
    file = style.save(fig, _out(args, f"embed-{_stem(ckpt)}"))
    return _report(args, [{"kind": "embed", "path": str(file), "images": len(coords), "dimensions": int(feats.shape[1]),
                           "explained_variance": [float(v) for v in explained]}])
