"""``cnnlab bench segment``: the segmentation models trained side by side on one scene set, with the
same data, budget (epochs, batch, optimiser, loss, seed) and input size, in one process.

For every model: parameters, multiply-accumulates and activation memory per image (from
:func:`cnnlab.analysis.summarize`), training time, inference time per image, and the test split's
mean IoU, pixel accuracy and boundary F-score. ``--peers`` adds torchvision's
``lraspp_mobilenet_v3_large`` and ``fcn_resnet50`` (no weights, no pretrained backbone), trained by
the same trainer through the same task; it needs torchvision, so run it in an environment that has it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..console import human_count, print_json
from . import add_training_bench_arguments, hardware

DEFAULT = ["fcn32s", "fcn16s", "fcn8s", "fcn8s_resnet18", "deconvnet", "segnet", "unet"]
PEERS = {"tv_lraspp_mobilenet_v3_large": "lraspp_mobilenet_v3_large", "tv_fcn_resnet50": "fcn_resnet50"}


class TorchvisionPeer(nn.Module):
    """A torchvision segmentation model as a cnnlab one: greyscale repeated to three channels, the
    ``"out"`` map returned."""

    def __init__(self, builder: str, num_classes: int, in_channels: int):
        super().__init__()
        from torchvision.models import segmentation

        kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
        if builder == "fcn_resnet50":
            kwargs["aux_loss"] = False
        self.net = getattr(segmentation, builder)(**kwargs)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.net(x)["out"]


def register_peers() -> list[str]:
    """Register the torchvision peers as segmentation models (once); their names."""
    from ..errors import ConfigError
    from ..registry import _MODELS, register_model

    try:
        import torchvision  # noqa: F401
    except ImportError:
        raise ConfigError("--peers needs torchvision (run the benchmark in an environment that has it)") from None
    for name, builder in PEERS.items():
        if name in _MODELS:
            continue

        def build(*, num_classes: int = 21, in_channels: int = 3, _builder=builder) -> TorchvisionPeer:
            return TorchvisionPeer(_builder, num_classes, in_channels)

        build.__doc__ = f"torchvision's {builder} (weights=None), for comparison"
        register_model(name, family="torchvision", paper="torchvision", year=2019, input_size=(3, 520, 520),
                       task="segment", tags=("segmentation", "peer"))(build)
    return list(PEERS)


@torch.no_grad()
def inference_ms(model: nn.Module, input_size: tuple[int, ...], batch: int = 8, repeats: int = 3) -> float:
    """Median milliseconds per image of an evaluation-mode forward pass on a batch of ``batch``."""
    model.eval()
    x = torch.randn(batch, *input_size)
    model(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return 1000 * sorted(times)[len(times) // 2] / batch


def run_benchmark(names: list[str], args) -> list[dict]:
    from ..analysis import summarize
    from ..train import train
    from ..train.checkpoint import load_checkpoint

    rows = []
    for name in names:
        start = time.perf_counter()
        result = train(model=name, data=args.data, data_dir=args.data_dir or "", epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, schedule=args.schedule,
                       weight_decay=0.0, loss=args.loss, augment=args.augment, limit_train=args.limit_train,
                       limit_test=args.limit_test, device=args.device, seed=args.seed, threads=args.threads,
                       plan=False, out=str(Path(args.out) / name),
                       init_from=args.init_from if name in args.init_models else "",
                       log=(lambda s, n=name: print(f"{n}: {s}", flush=True)) if not args.json else (lambda s: None))
        seconds = time.perf_counter() - start
        ckpt = load_checkpoint(result.run_dir)
        summary = summarize(ckpt.model, ckpt.input_size)
        final = result.final
        rows.append({"model": name, "input": "x".join(map(str, ckpt.input_size)), "epochs": len(result.history),
                     "params": summary.total_params, "macs": summary.total_macs,
                     "activation_mib": round(summary.activation_bytes / 2**20, 1),
                     "train_seconds": round(sum(h.get("train_seconds", 0.0) for h in result.history), 1),
                     "seconds": round(seconds, 1), "infer_ms": round(inference_ms(ckpt.model, ckpt.input_size), 2),
                     "miou": final["test_miou"], "pixel_acc": final["test_pixel_acc"],
                     "boundary_f": final["test_boundary_f"], "best_miou": result.best["value"] if result.best else None,
                     "hardware": f"{hardware()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"})
    return rows


def markdown_table(rows: list[dict], args) -> str:
    lines = [f"Dataset `{args.data}`" + (f" (first {args.limit_train} training scenes)" if args.limit_train else "")
             + f", {args.epochs} epochs, batch {args.batch_size}, {args.optimizer} lr {args.lr} {args.schedule}, "
               f"loss {args.loss}, augment `{args.augment or 'none'}`, seed {args.seed}; {rows[0]['hardware'] if rows else ''}.",
             "", "| model | parameters | MACs / image | activations / image (MiB) | train time (s) | inference (ms / image) "
                 "| mIoU | pixel acc | boundary F |", "| --- | --: | --: | --: | --: | --: | --: | --: | --: |"]
    lines += [f"| {r['model']} | {human_count(r['params'])} | {human_count(r['macs'])} | {r['activation_mib']} | "
              f"{r['train_seconds']} | {r['infer_ms']} | {r['miou']:.4f} | {r['pixel_acc']:.4f} | {r['boundary_f']:.4f} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def register(subparsers) -> None:
    p = subparsers.add_parser("segment", help="segmentation models (and torchvision peers) trained side by side")
    p.add_argument("models", nargs="*", help=f"models (default: {' '.join(DEFAULT)})")
    p.add_argument("--peers", action="store_true", help="add torchvision's lraspp_mobilenet_v3_large and fcn_resnet50")
    p.add_argument("--data", default="fashion-scenes-mini")
    p.add_argument("--data-dir", default="")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.002)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--loss", default="cross_entropy+dice")
    p.add_argument("--augment", default="")
    p.add_argument("--init-from", default="", help="a classifier run that starts the encoders of --init-models")
    p.add_argument("--init-models", default="", help="comma list of the models --init-from starts")
    add_training_bench_arguments(p, out="runs/bench-segment")
    p.set_defaults(func=run)


def run(args) -> int:
    torch.set_num_threads(args.threads)
    names = list(args.models or DEFAULT)
    if args.peers:
        names += register_peers()
    args.init_models = [m for m in args.init_models.split(",") if m]
    rows = run_benchmark(names, args)
    table = markdown_table(rows, args)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table)
    if args.json:
        print_json(rows)
    else:
        print(table)
    return 0
