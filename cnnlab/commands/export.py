"""``cnnlab export CKPT``: write a checkpoint's model as ONNX or TorchScript, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

from . import add_verb
from ..console import print_json


def register(subparsers) -> None:
    from ..deploy import FORMATS

    p = add_verb(subparsers, "export", help="export a checkpoint to ONNX or TorchScript (numerically checked)",
                 example="cnnlab export runs/lenet5_modern-fashion-mnist --format onnx --out lenet.onnx")
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint folder (or a file inside it)")
    p.add_argument("--format", default="onnx", choices=FORMATS, help="onnx (default) or torchscript")
    p.add_argument("--out", default="", help="output file (default: the run folder's model.onnx or model.pt)")
    p.add_argument("--fold-bn", action="store_true", help="fold batch norms into the layers before them first")
    p.add_argument("--int8", action="store_true", help="ONNX only: also write an int8 model (NAME-int8.onnx)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest allowed logit difference, relative to the largest logit (default: 1e-4)")
    p.add_argument("--check-images", type=int, default=256, help="test images used in the check (default: 256)")
    p.add_argument("--data-dir", default="", help="data root for the check images")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def check_images(ckpt, count: int, data_dir: str):
    """Normalised test images of the checkpoint's dataset, or seeded noise where it is not at hand."""
    import torch

    from ..errors import CnnlabError

    dataset = ckpt.meta.dataset
    if dataset and count:
        try:
            from ..data import load_dataset

            if ckpt.task == "classify":
                test = load_dataset(dataset, "test", data_dir or None, download_missing=False)
            else:  # the task's own kind of data (scenes, COCO / VOC folders)
                from ..tasks import get_task

                test = get_task(ckpt.task).load_split(dataset, "test", data_dir or None)
            if tuple(test.input_size) == tuple(ckpt.input_size):
                return ckpt.preprocessing.normalize(test.images[:count]), f"{dataset} test images"
        except CnnlabError:
            pass
    return torch.randn(max(count, 16), *ckpt.input_size, generator=torch.Generator().manual_seed(0)), "random inputs"


def export_metadata(ckpt, form=None) -> dict[str, str]:
    """What an exported file records of its checkpoint: enough to feed it and read its output (for a
    task's own :class:`~cnnlab.tasks.DeployForm`, what the form says its input and output are)."""
    import json

    p = ckpt.preprocessing
    c, h, w = p.input_size[0], p.input_size[-2], p.input_size[-1]
    common = {"cnnlab.task": ckpt.task, "cnnlab.arch": ckpt.arch, "cnnlab.dataset": ckpt.meta.dataset,
              "class_names": json.dumps(ckpt.class_names)}
    if form is not None:
        return {**common, "input_size": json.dumps(list(form.input_size)), "preprocessing": form.input_description,
                "output": form.output_description}
    colour = "greyscale" if c == 1 else "RGB"
    if len(p.input_size) == 4:  # a clip: T frames, each fitted like an image
        t = p.input_size[1]
        how = (f"{t} {colour} frames spread evenly over the clip, each resized to {h}x{w}; N x {c} x {t} x {h} x {w} "
               "float32 (pixel / 255 - mean) / std")
    else:
        how = (f"{colour} image resized (shorter side) and centre-cropped to {h}x{w}"
               f"{', grey levels inverted' if p.invert else ''}; N x {c} x {h} x {w} float32 (pixel / 255 - mean) / std")
    return {
        **common, "input_size": json.dumps(list(p.input_size)),
        "mean": json.dumps(list(p.mean)), "std": json.dumps(list(p.std)),
        "preprocessing": how,
        "output": _task(ckpt).output_description(_output_shape(ckpt)),
    }


def _task(ckpt):
    from ..tasks import get_task

    return get_task(ckpt.task)


def _output_shape(ckpt) -> tuple[int, ...]:
    """The model's output shape for one image (N x K, or N x K x H x W for per-pixel scores)."""
    import torch

    with torch.no_grad():
        return tuple(ckpt.model.eval()(torch.zeros(1, *ckpt.preprocessing.input_size)).shape)


def export_checkpoint(checkpoint: str | Path, fmt: str = "onnx", out: str | Path | None = None, *,
                      fold_bn: bool = False, int8: bool = False, tolerance: float = 1e-4, check_count: int = 256,
                      data_dir: str = "") -> dict:
    """Export a checkpoint; returns the written files and the numerical checks (raises if a check fails)."""
    from ..deploy import ExportError, compare_outputs, export_model, fold_batchnorm, load_exported, quantize_onnx
    from ..deploy.export import SUFFIX, write_metadata
    from ..train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    if int8 and fmt != "onnx":
        raise ExportError("--int8 needs --format onnx")
    form = _task(ckpt).deploy_form(ckpt)  # None: the model itself, on normalised images
    reference = form.module if form is not None else ckpt.model.eval()
    input_size = tuple(form.input_size) if form is not None else ckpt.input_size
    names = form.names if form is not None else ("images", "logits")
    model = fold_batchnorm(reference) if fold_bn else reference
    # Beside the run's checkpoints, not inside one: a checkpoint folder is replaced whole at each save.
    path = Path(out) if out else ckpt.run_dir / f"model{SUFFIX[fmt]}"
    if form is not None:
        inputs, source = form.examples(max(check_count, 16), 0), f"random {names[0]}"
    else:
        inputs, source = check_images(ckpt, check_count, data_dir)
    export_model(model, path, fmt, input_size, check_inputs=inputs, tolerance=tolerance, names=names)
    # The reference is the checkpoint's own model, so a folded export is checked against the unfolded one.
    check = compare_outputs(reference, load_exported(path), inputs, tolerance=tolerance)
    if not check.ok:
        raise ExportError(f"exported model differs from the checkpoint: relative difference {check.max_rel_diff:.2e}")
    metadata = export_metadata(ckpt, form)
    write_metadata(path, metadata)
    normalisation = {"mean": list(ckpt.mean), "std": list(ckpt.std)} if form is None else {}
    result = {"checkpoint": str(ckpt.path), "arch": ckpt.arch, "format": fmt, "file": str(path),
              "input": {"name": names[0], "shape": ["N", *input_size], **normalisation},
              "metadata": metadata, "check": {**check.to_dict(), "inputs": source}}
    if int8:
        int8_path = path.with_name(path.stem + "-int8.onnx")
        quantize_onnx(path, int8_path, inputs)
        write_metadata(int8_path, metadata)
        q = compare_outputs(ckpt.model.eval(), load_exported(int8_path), inputs, tolerance=1.0)
        result["int8"] = {"file": str(int8_path), "top1_agreement": q.top1_agreement, "max_abs_diff": q.max_abs_diff}
    return result


def run(args) -> int:
    result = export_checkpoint(args.checkpoint, args.format, args.out or None, fold_bn=args.fold_bn, int8=args.int8,
                               tolerance=args.tolerance, check_count=args.check_images, data_dir=args.data_dir)
    if args.json:
        print_json(result)
        return 0
    c, i = result["check"], result["input"]
    print(f"wrote {result['file']} ({result['format']}, input {i['name']} N x {' x '.join(map(str, i['shape'][1:]))})")
    normalised = f", mean {i['mean']}, std {i['std']}" if "mean" in i else ""
    print(f"it expects: {result['metadata']['preprocessing']}{normalised}; it gives {result['metadata']['output']} "
          "(recorded in the file)")
    agreement = f", top-1 agreement {c['top1_agreement']:.2%}" if "mean" in i else ""
    print(f"checked on {c['samples']} {c['inputs']}: max |diff| {c['max_abs_diff']:.2e} "
          f"(relative {c['max_rel_diff']:.2e} <= {c['tolerance']:.0e}){agreement}")
    if "int8" in result:
        print(f"wrote {result['int8']['file']} (int8): top-1 agreement with fp32 {result['int8']['top1_agreement']:.2%}")
    return 0
