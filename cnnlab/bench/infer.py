"""``cnnlab bench infer MODEL``: inference images/s, eager PyTorch versus optimised forms, side by side.

Variants (each a function ``normalised images -> logits``):

- ``eager``: the model as trained, fp32, NCHW (the baseline every ratio is taken against);
- ``folded``: batch norms folded into the convolutions before them (:mod:`cnnlab.deploy.fold`);
- ``folded+cl``: folded, channels-last (NHWC) memory layout for model and input;
- ``folded+cl+bf16``: as above under bf16 autocast (fast where the CPU has native bf16 dot products);
- ``planned``: folded, in the layout and precision the execution plan measures fastest for this model
  at the largest batch size (:func:`cnnlab.train.plan.inference_plan`: what ``serve`` and ``predict`` use);
- ``compiled``: folded, channels-last, ``torch.compile`` (only with ``--compile``: compiling takes minutes);
- ``onnxruntime``: the ONNX export run by ONNX Runtime, fp32;
- ``onnxruntime-int8``: the same, statically quantised to int8 on calibration images from the training split.

Timing rounds alternate between the variants so that a shared machine's load falls on all alike; each
variant's figure is its best round. Accuracy is measured on the checkpoint's test split when MODEL is a
checkpoint; for a bare architecture (random weights) the column is the top-1 agreement with eager fp32.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..commands import add_verb
from ..console import print_json, print_table
from ..errors import ConfigError
from ..system import channels_last_module, channels_last_tensor
from . import hardware

Forward = Callable[[torch.Tensor], torch.Tensor]
VARIANTS = ("eager", "folded", "folded+cl", "folded+cl+bf16", "planned", "compiled", "onnxruntime", "onnxruntime-int8")
DEFAULT_VARIANTS = tuple(v for v in VARIANTS if v != "compiled")  # compiling takes minutes: asked for


def register(subparsers) -> None:
    p = add_verb(subparsers, "infer", help="inference images/s: eager vs folded/channels-last/bf16/ONNX/int8",
                 example="cnnlab bench infer runs/lenet5_modern-fashion-mnist --batch-sizes 1,64")
    p.add_argument("model", metavar="MODEL", help="a checkpoint folder (accuracy measured) or a model name (random weights)")
    p.add_argument("--batch-sizes", default="1,64", help="comma list of batch sizes (default: 1,64)")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="comma list of " + "|".join(VARIANTS))
    p.add_argument("--compile", action="store_true", help="add the torch.compile variant (slow to build)")
    p.add_argument("--seconds", type=float, default=1.0, help="time per variant per round (default: 1.0)")
    p.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (default: 3)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch and ONNX Runtime alike (default: 1; on a loaded machine more threads "
                        "stall at OpenMP barriers)")
    p.add_argument("--data", default="", help="dataset for accuracy and calibration (default: the checkpoint's)")
    p.add_argument("--data-dir", default="", help="data root")
    p.add_argument("--limit-test", type=int, default=2000, help="test images scored per variant (default: 2000)")
    p.add_argument("--image-size", type=int, default=0, help="input side for a bare model name (default: its own)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


# --- building the variants ----------------------------------------------------------------------------

def _channels_last(forward: Forward) -> Forward:
    return lambda x: forward(channels_last_tensor(x))


def build_variants(model: nn.Module, names: list[str], input_size: tuple[int, int, int], calibration: torch.Tensor,
                   workdir: Path, threads: int, *, plan_batch: int = 64, plans: dict | None = None) -> dict[str, Forward]:
    """Each requested variant of ``model`` as an inference function; the ``planned`` variant's plan is
    put into ``plans``."""
    from ..deploy import export_onnx, fold_batchnorm, onnx_runner, quantize_onnx

    model = model.eval()
    folded = fold_batchnorm(model)
    folded_cl = channels_last_module(fold_batchnorm(model))
    out: dict[str, Forward] = {}
    for name in names:
        if name == "eager":
            out[name] = model
        elif name == "folded":
            out[name] = folded
        elif name == "folded+cl":
            out[name] = _channels_last(folded_cl)
        elif name == "folded+cl+bf16":
            def bf16(x: torch.Tensor, m=folded_cl) -> torch.Tensor:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return m(channels_last_tensor(x)).float()
            out[name] = bf16
        elif name == "planned":
            from ..tasks.classify import autocast
            from ..train.plan import inference_plan

            plan = inference_plan(folded, input_size, batch_size=plan_batch, threads=threads, channels_last=None,
                                  precision="auto", name=f"folded {type(model).__name__}")
            if plans is not None:
                plans[name] = plan.to_dict() | {"described": plan.describe()}
            planned = fold_batchnorm(model)
            if plan.chosen.channels_last:
                planned = channels_last_module(planned)

            def run_planned(x: torch.Tensor, m=planned, setting=plan.chosen) -> torch.Tensor:
                if setting.channels_last:
                    x = channels_last_tensor(x)
                with autocast(x.device, setting.precision):
                    return m(x).float()
            out[name] = run_planned
        elif name == "compiled":
            out[name] = _channels_last(torch.compile(folded_cl))
        elif name in ("onnxruntime", "onnxruntime-int8"):
            fp32_file = workdir / "model.onnx"
            if not fp32_file.exists():
                export_onnx(model, fp32_file, input_size)
            if name == "onnxruntime":
                out[name] = onnx_runner(fp32_file, threads)
            else:
                out[name] = onnx_runner(quantize_onnx(fp32_file, workdir / "model-int8.onnx", calibration), threads)
        else:
            raise ConfigError(f"unknown variant '{name}' (choose from {', '.join(VARIANTS)})")
    return out


# --- measuring ----------------------------------------------------------------------------------------

@torch.no_grad()
def time_round(forward: Forward, x: torch.Tensor, seconds: float) -> float:
    """Images per second of ``forward`` on batch ``x`` over about ``seconds`` (at least 2 calls)."""
    forward(x)  # warm caches and lazily built kernels
    calls, start = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - start < seconds:
        forward(x)
        calls += 1
    return calls * len(x) / (time.perf_counter() - start)


@torch.no_grad()
def score(forward: Forward, images: torch.Tensor, batch_size: int = 250, class_dim: int | None = 1) -> torch.Tensor:
    """The decisions of ``forward`` for all ``images`` (normalised float): the best class along
    ``class_dim`` (per image, per pixel or per text column, as the task's output holds them), or with
    ``class_dim`` None (a generator's images) the outputs themselves."""
    outs = []
    for i in range(0, len(images), batch_size):
        out = forward(images[i:i + batch_size])
        if not isinstance(out, torch.Tensor):
            raise ConfigError("bench infer times models that answer one tensor; this one answers "
                              f"{type(out).__name__} (a detector: time it with cnnlab eval or cnnlab bench detect)")
        outs.append(out.float() if class_dim is None else out.float().argmax(class_dim))
    return torch.cat(outs)


def agreement(pred: torch.Tensor, eager: torch.Tensor, class_dim: int | None, tolerance: float) -> float:
    """The share of decisions equal to eager fp32's, or of output values within ``tolerance`` of them."""
    same = (pred == eager) if class_dim is not None else ((pred - eager).abs() <= tolerance)
    return float(same.float().mean())


def _load(model_arg: str, data: str, data_dir: str, limit_test: int, image_size: int):
    """The model, its input size, evaluation images (normalised), labels (or None: agreement with eager
    is measured instead), calibration images, the task's class dimension and the agreement's tolerance;
    for a task with a :class:`~cnnlab.tasks.DeployForm` (a generator), that form and its inputs."""
    path = Path(model_arg)
    if path.exists():
        from ..tasks import get_task
        from ..train.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        model, input_size = ckpt.model, ckpt.input_size
        dataset = data or ckpt.meta.dataset
        normalize = ckpt.preprocessing.normalize
        task = get_task(ckpt.meta.task or "classify")
        form = task.deploy_form(ckpt)
        if form is not None:
            n = min(limit_test or 256, 256)
            return (form.module, tuple(form.input_size), form.examples(n, 0), None, form.examples(256, 1),
                    f"{ckpt.arch} ({path}: {form.names[0]} -> {form.names[1]})", form.class_dim, form.tolerance)
        if dataset:
            test = task.load_split(dataset, "test", data_dir or None)
            train = task.load_split(dataset, "train", data_dir or None)
            if not isinstance(getattr(test, "images", None), torch.Tensor):
                raise ConfigError(f"bench infer needs a dataset of image tensors; the {task.name} task's "
                                  f"{dataset!r} is a {type(test).__name__}")
            n = min(limit_test, len(test.images)) if limit_test else len(test.images)
            images = normalize(test.images[:n])
            order = torch.randperm(len(train.images), generator=torch.Generator().manual_seed(0))[:256]
            # Labels only where one class per image (or clip) is the answer; other tasks measure agreement with eager.
            labels = test.labels[:n] if task.name in ("classify", "video") else None
            return (model, input_size, images, labels, normalize(train.images[order]), f"{ckpt.arch} ({path})",
                    task.class_dim, 0.0)
    else:
        from ..registry import create_model, model_info

        info = model_info(model_arg)
        c, h, w = info.input_size
        if image_size:
            h = w = image_size
        torch.manual_seed(0)
        model = create_model(model_arg)
        input_size = (c, h, w)
    # No dataset: random images; accuracy becomes agreement with eager fp32.
    g = torch.Generator().manual_seed(0)
    n = min(limit_test or 256, 256)
    return (model, input_size, torch.randn(n, *input_size, generator=g), None,
            torch.randn(64, *input_size, generator=g), model_arg, 1, 0.0)


def measure(model_arg: str, *, batch_sizes: list[int], variants: list[str], seconds: float = 1.0, rounds: int = 3,
            threads: int = 1, data: str = "", data_dir: str = "", limit_test: int = 2000,
            image_size: int = 0, log: Callable[[str], None] = lambda s: None) -> dict:
    """Best-of-``rounds`` images/s of each variant at each batch size, with accuracy, as a dict."""
    if min(batch_sizes) < 1 or rounds < 1 or seconds <= 0 or threads < 1:
        raise ConfigError("batch sizes, rounds, seconds and threads must be positive")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, input_size, images, labels, calib, label, class_dim, tolerance = _load(
            model_arg, data, data_dir, limit_test, image_size)
        with tempfile.TemporaryDirectory() as tmp:
            log(f"building {len(variants)} variants of {label} ...")
            plans: dict = {}
            forwards = build_variants(model, variants, input_size, calib, Path(tmp), threads,
                                      plan_batch=max(batch_sizes), plans=plans)
            for described in plans.values():
                log(described["described"])
            eager_pred = score(model, images, class_dim=class_dim)
            quality = {}
            for name, f in forwards.items():
                pred = score(f, images, class_dim=class_dim)
                quality[name] = float((pred == labels).float().mean()) if labels is not None else agreement(
                    pred, eager_pred, class_dim, tolerance)
            rates: dict[int, dict[str, float]] = {b: {v: 0.0 for v in forwards} for b in batch_sizes}
            g = torch.Generator().manual_seed(1)
            for r in range(rounds):
                for b in batch_sizes:
                    x = images[torch.randint(0, len(images), (b,), generator=g)]  # b x C x H x W
                    for name, f in forwards.items():
                        rates[b][name] = max(rates[b][name], time_round(f, x, seconds))
                log(f"round {r + 1}/{rounds} done")
    finally:
        torch.set_num_threads(previous)
    metric = ("test_top1" if labels is not None else "top1_agreement_with_eager" if class_dim is not None
              else f"values_within_{tolerance:.4g}_of_eager")
    return {"model": label, "input_size": list(input_size), "threads": threads, "metric": metric, "samples": len(images),
            "quality": quality, "plans": plans, "images_per_second": {str(b): v for b, v in rates.items()},
            "speedup": {str(b): {n: v / rates[b]["eager"] for n, v in rates[b].items()} for b in batch_sizes
                        if "eager" in rates[b]}, "hardware": hardware()}


def run(args) -> int:
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.compile and "compiled" not in variants:
        variants.append("compiled")
    if "eager" not in variants:
        variants.insert(0, "eager")
    for v in variants:
        if v not in VARIANTS:
            raise ConfigError(f"unknown variant '{v}' (choose from {', '.join(VARIANTS)})")
    result = measure(args.model, batch_sizes=batch_sizes, variants=variants, seconds=args.seconds, rounds=args.rounds,
                     threads=args.threads, data=args.data, data_dir=args.data_dir, limit_test=args.limit_test,
                     image_size=args.image_size, log=(lambda s: None) if args.json else print)
    if args.json:
        print_json(result)
        return 0
    base = result["quality"]["eager"]
    rows = []
    for name in variants:
        q = result["quality"][name]
        rows.append([name, *[f"{result['images_per_second'][str(b)][name]:,.0f}" for b in batch_sizes],
                     f"{q * 100:.2f}", f"{(q - base) * 100:+.2f}"])
    metric = "top-1 %" if result["metric"] == "test_top1" else "agree %"
    print_table(rows, ["variant", *[f"img/s @{b}" for b in batch_sizes], metric, "Δ points"],
                title=f"{result['model']}, {result['threads']} threads; {result['hardware']}",
                justify_right=[*[f"img/s @{b}" for b in batch_sizes], metric, "Δ points"])
    if 1 in batch_sizes:
        print("latency at batch 1 (best round): " + "  ".join(
            f"{n} {1000.0 / r:.2f} ms" for n, r in result["images_per_second"]["1"].items() if r > 0))
    for plan in result["plans"].values():
        print(plan["described"])
    # The ratios close the report: they are what a reader compares.
    for b in batch_sizes:
        ratios = "  ".join(f"{n} {s:.2f}x" for n, s in result["speedup"][str(b)].items() if n != "eager")
        print(f"speed-up over eager fp32 at batch {b}: {ratios}")
    return 0
