"""``cnnlab bench zoo`` and ``cnnlab bench degradation``: the model zoo trained on one dataset, and
He et al.'s degradation experiment (plain nets get worse with depth, residual nets better).

Both write Markdown tables (and, for degradation, curves) so the results can be published as they are.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ..console import human_count, print_json, print_table
from . import hardware

ZOO_DEFAULT = ["lenet5", "lenet5_modern", "alexnet", "vgg11", "nin", "googlenet", "resnet18", "densenet_bc_small"]
DEGRADATION_DEFAULT = ["plain20", "plain56", "resnet20", "resnet56"]


def _train_models(names, args) -> list[dict]:
    from ..train import train
    from ..train.checkpoint import load_checkpoint

    rows = []
    for name in names:
        start = time.perf_counter()
        result = train(model=name, data=args.data, data_dir=args.data_dir or "", epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, schedule="onecycle",
                       augment=args.augment, limit_train=args.limit_train, limit_test=args.limit_test,
                       device=args.device, out=str(Path(args.out) / name), seed=args.seed,
                       channels_last=args.channels_last, precision=args.precision,
                       log=(lambda s, n=name: print(f"{n}: {s}", flush=True)) if not args.json else (lambda s: None))
        checkpoint = load_checkpoint(result.run_dir)
        rows.append({"model": name, "input": "x".join(map(str, checkpoint.input_size)),
                     "epochs": len(result.history), "test_acc": result.final["test_acc"],
                     "setup": f"{checkpoint.meta.config['precision']}, "
                              f"{'channels-last' if args.channels_last else 'NCHW'}",
                     "params": sum(p.numel() for p in checkpoint.model.parameters()),
                     "seconds": round(time.perf_counter() - start, 1),
                     "hardware": f"{hardware()}, {torch.get_num_threads()} torch threads",
                     "history": result.history})
    return rows


def markdown_table(rows: list[dict], args) -> str:
    lines = [f"Dataset `{args.data}`, {args.epochs} epochs, batch {args.batch_size}, {args.optimizer} "
             f"lr {args.lr} one-cycle, augment `{args.augment or 'none'}`"
             + (f", first {args.limit_train} training images" if args.limit_train else "") + ".", "",
             "| model | input | epochs | test accuracy | parameters | wall time (s) | precision, layout | hardware |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['model']} | {r['input']} | {r['epochs']} | {r['test_acc']:.4f} | {human_count(r['params'])} | "
              f"{r['seconds']} | {r['setup']} | {r['hardware']} |" for r in rows]
    return "\n".join(lines) + "\n"


def _add_common(p, epochs: int, lr: float, augment: str) -> None:
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--data-dir", default="")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--augment", default=augment)
    p.add_argument("--limit-train", type=int, default=0)
    p.add_argument("--limit-test", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="NHWC layout (default: on; 1.6-1.9x faster training for GoogLeNet and DenseNet on a CPU)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="autocast precision (default auto: bf16 where the device has native bf16, else fp32)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--markdown", metavar="FILE", help="also write the table to this Markdown file")
    p.add_argument("--json", action="store_true")


def _add_benchmark(subparsers, name: str, *, help: str, example: str, models: list[str], out: str, func,
                   epochs: int, lr: float, augment: str) -> None:
    p = subparsers.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", default=models)
    p.add_argument("--out", default=out)
    _add_common(p, epochs=epochs, lr=lr, augment=augment)
    p.set_defaults(func=func)


def register(subparsers) -> None:
    _add_benchmark(subparsers, "zoo", help="train several models on one dataset; print a results table",
                   example="cnnlab bench zoo lenet5 resnet18 --epochs 5 --markdown docs/results.md",
                   models=ZOO_DEFAULT, out="runs/zoo", func=run_zoo, epochs=5, lr=0.05, augment="crop,flip")
    _add_benchmark(subparsers, "degradation", help="plain vs residual nets of two depths (He et al. 2016, Fig. 1 and 6)",
                   example="cnnlab bench degradation --epochs 10 --markdown docs/degradation.md",
                   models=DEGRADATION_DEFAULT, out="runs/degradation", func=run_degradation, epochs=10, lr=0.1,
                   augment="")


def run_zoo(args) -> int:
    rows = _train_models(args.models, args)
    table = markdown_table(rows, args)
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        print_json([{k: v for k, v in r.items() if k != "history"} for r in rows])
    else:
        print(table)
    return 0


def run_degradation(args) -> int:
    from ..train.curves import plot_history

    rows = _train_models(args.models, args)
    out = Path(args.out)
    plot_history({r["model"]: r["history"] for r in rows}, out / "degradation.png")
    final_train_error = {r["model"]: 1 - r["history"][-1]["train_acc"] for r in rows}
    table = markdown_table(rows, args)
    table += "\n| model | final training error | test error |\n| --- | --- | --- |\n" + "".join(
        f"| {r['model']} | {final_train_error[r['model']]:.4f} | {1 - r['test_acc']:.4f} |\n" for r in rows)
    if args.markdown:
        Path(args.markdown).write_text(table + f"\n![curves]({(out / 'degradation.png').as_posix()})\n")
    if args.json:
        print_json({"models": [{k: v for k, v in r.items() if k != "history"} for r in rows],
                    "final_train_error": final_train_error, "curves": str(out / "degradation.png")})
    else:
        print(table)
        print_table([(m, f"{e:.4f}") for m, e in final_train_error.items()], ["model", "training error"])
        print(f"curves: {out / 'degradation.png'}")
    return 0
