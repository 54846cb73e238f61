"""``cnnlab bench metric``: each metric-learning loss trained side by side on the protocol of the
literature (seen classes 0-4 for training, unseen 5-9 for every figure), on each dataset, with one
backbone, one P x K batching, one optimiser, one budget and one seed, in one process.

For every (dataset, loss): MAP@R, precision@1, R-precision, ROC AUC, EER on pairs of unseen images,
identification top-1, and training time. Two reference rows frame them: ``untrained`` (the same
network at its initialisation: what the backbone gives for free) and ``pml_triplet_ms``, the peer:
pytorch-metric-learning's ``TripletMarginLoss`` with its ``MultiSimilarityMiner`` (library defaults:
margin 0.05, epsilon 0.1), trained by the same trainer through a task that differs from the metric
task only in its loss.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..console import print_json
from ..metric.losses import LOSSES
from . import add_training_bench_arguments, hardware

PEER = "pml_triplet_ms"
UNTRAINED = "untrained"


def register_peer() -> str:
    """A task ``metric_pml``: the metric task with pytorch-metric-learning's loss and miner."""
    from ..errors import ConfigError
    from ..tasks import _TASKS, register_task
    from ..tasks.base import StepOutput
    from ..tasks.metric import MetricTask

    try:
        from pytorch_metric_learning import losses, miners
    except ImportError:
        raise ConfigError("the peer needs pytorch-metric-learning (pip install pytorch-metric-learning)") from None
    if "metric_pml" in _TASKS:
        return "metric_pml"

    @register_task
    class PeerTask(MetricTask):
        name = "metric_pml"
        description = "metric learning with pytorch-metric-learning's TripletMarginLoss + MultiSimilarityMiner"

        def __init__(self, config=None):
            super().__init__(config)
            self.loss_fn, self.miner = losses.TripletMarginLoss(margin=0.05), miners.MultiSimilarityMiner(epsilon=0.1)

        def training_step(self, forward, model, batch, phase):
            embeddings = forward(batch.inputs).float()
            loss = self.loss_fn(embeddings, batch.targets, self.miner(embeddings, batch.targets))
            n = len(batch.targets)
            return StepOutput(loss, {"loss": loss.detach().double() * n}, n)

    return "metric_pml"


def _settings(data: str, args) -> dict[str, Any]:
    return dict(model="embedding_net", data=data, data_dir=args.data_dir or "", epochs=args.epochs,
                batch_size=args.batch_size, classes_per_batch=args.classes_per_batch, limit_train=args.limit_train,
                limit_test=args.limit_test, optimizer="adam", lr=args.lr, weight_decay=0.0, schedule="cosine",
                backbone=args.backbone, embedding_dim=args.embedding_dim, seen_classes=args.seen_classes,
                seed=args.seed, threads=args.threads, device=args.device, plan=False)


def _row(data: str, loss: str, metrics: dict[str, Any], seconds: float) -> dict[str, Any]:
    keys = ("map_at_r", "precision_at_1", "r_precision", "auc", "eer", "tar_at_far", "ident_top1")
    return {"data": data, "loss": loss, **{k: float(metrics[k]) for k in keys}, "train_seconds": round(seconds, 3)}


def untrained(data: str, args) -> dict[str, Any]:
    """The network as initialised with the bench's seed, evaluated on the unseen classes."""
    from ..registry import create_model
    from ..tasks.metric import MetricTask
    from ..train.config import TrainConfig

    task = MetricTask(TrainConfig(**_settings(data, args)).validate())
    test = task.load_split(data, "test", args.data_dir or None)
    if args.limit_test:
        test = test.subset(slice(0, args.limit_test))
    torch.manual_seed(args.seed)
    model = create_model("embedding_net", backbone=args.backbone, embedding_dim=args.embedding_dim,
                         num_classes=len(test.class_names), in_channels=test.input_size[0], image_size=test.input_size[1])
    return _row(data, UNTRAINED, task.evaluate(model, test), 0.0)


def run_benchmark(datasets: list[str], losses: list[str], args) -> list[dict[str, Any]]:

    rows = []
    for seed in [int(x) for x in str(args.seeds).split(",") if x.strip()]:
        args.seed = seed
        rows += _one_seed(datasets, losses, args)
    return rows


def _one_seed(datasets: list[str], losses: list[str], args) -> list[dict[str, Any]]:
    from ..train import train

    rows = []
    for data in datasets:
        for loss in losses:
            if loss == UNTRAINED:
                rows.append(untrained(data, args) | {"seed": args.seed})
                continue
            task = register_peer() if loss == PEER else "metric"
            start = time.perf_counter()
            result = train(**_settings(data, args), task=task, metric_loss="triplet_hard" if loss == PEER else loss,
                           out=str(Path(args.out) / data / f"{loss}-seed{args.seed}"),
                           log=(lambda s, n=f"{data} {loss}": print(f"{n}: {s}", flush=True)) if not args.json else (lambda s: None))
            final = {k[5:]: v for k, v in result.final.items() if k.startswith("test_")}
            seconds = sum(h.get("train_seconds", 0.0) for h in result.history)
            rows.append(_row(data, loss, final, seconds) | {"seed": args.seed, "seconds": round(time.perf_counter() - start, 1)})
    return rows


def averaged(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (data, loss): the mean over seeds, with ``<key>_std`` the spread (population std)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["data"], r["loss"]), []).append(r)
    out = []
    for (data, loss), group in groups.items():
        row: dict[str, Any] = {"data": data, "loss": loss, "seeds": len(group)}
        for key in ("map_at_r", "precision_at_1", "r_precision", "auc", "eer", "tar_at_far", "ident_top1", "train_seconds"):
            values = torch.tensor([float(g[key]) for g in group], dtype=torch.float64)
            row[key], row[f"{key}_std"] = float(values.mean()), float(values.std(unbiased=False))
        out.append(row)
    return out


def markdown_table(rows: list[dict[str, Any]], args) -> str:
    rows = averaged(rows)
    seeds = rows[0]["seeds"] if rows else 1
    cell = (lambda r, k: f"{r[k]:.4f} ± {r[k + '_std']:.4f}") if seeds > 1 else (lambda r, k: f"{r[k]:.4f}")
    lines = [f"Backbone `{args.backbone}`, {args.embedding_dim}-D embedding; trained on classes {args.seen_classes} "
             f"(first {args.limit_train or 'all'} of their training images), evaluated on the others' test images"
             f"{f' (first {args.limit_test})' if args.limit_test else ''}; {args.epochs} epochs, batches of "
             f"{args.classes_per_batch} classes x {args.batch_size // args.classes_per_batch} images, adam lr {args.lr} "
             f"cosine, seed{'s' if seeds > 1 else ''} {args.seeds}{' (mean ± std)' if seeds > 1 else ''}; {hardware()}, {args.threads} torch thread(s).",
             "", "| data | loss | MAP@R | P@1 | R-precision | AUC | EER | top-1 ident. | train time (s) |",
             "| --- | --- | --: | --: | --: | --: | --: | --: | --: |"]
    lines += [f"| {r['data']} | {r['loss']} | " + " | ".join(cell(r, k) for k in ("map_at_r", "precision_at_1", "r_precision",
              "auc", "eer", "ident_top1")) + f" | {r['train_seconds']:.1f} |" for r in rows]
    for data in dict.fromkeys(r["data"] for r in rows):
        ours = [r for r in rows if r["data"] == data and r["loss"] in LOSSES]
        peer = [r for r in rows if r["data"] == data and r["loss"] == PEER]
        if ours and peer:
            best = max(ours, key=lambda r: r["map_at_r"])
            lines.append(f"\n{data}: best loss {best['loss']} MAP@R {best['map_at_r']:.4f} vs the peer's "
                         f"{peer[0]['map_at_r']:.4f} ({best['map_at_r'] - peer[0]['map_at_r']:+.4f}"
                         + (f"; seed spread about ±{max(best['map_at_r_std'], peer[0]['map_at_r_std']):.4f}" if seeds > 1 else "")
                         + ").")
    return "\n".join(lines) + "\n"


def register(subparsers) -> None:
    p = subparsers.add_parser("metric", help="metric-learning losses (and pytorch-metric-learning's triplet + "
                              "multi-similarity miner) trained side by side on unseen-class retrieval")
    p.add_argument("--datasets", default="fashion-mnist,mnist-10k", help="comma list")
    p.add_argument("--losses", default=",".join((UNTRAINED,) + LOSSES + (PEER,)),
                   help=f"comma list among {UNTRAINED}, {', '.join(LOSSES)}, {PEER}")
    p.add_argument("--data-dir", default="")
    p.add_argument("--backbone", default="lenet5_modern")
    p.add_argument("--embedding-dim", type=int, default=64)
    p.add_argument("--seen-classes", default="0-4")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--classes-per-batch", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seeds", default="0", help="comma list: each seed trains every loss again (the table shows mean ± std)")
    add_training_bench_arguments(p, out="runs/bench-metric", limit_train=6000, seed=False)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..errors import ConfigError

    torch.set_num_threads(args.threads)
    losses = [x for x in args.losses.split(",") if x]
    unknown = [x for x in losses if x not in LOSSES + (UNTRAINED, PEER)]
    if unknown:
        raise ConfigError(f"unknown loss {', '.join(unknown)}; choose among {UNTRAINED}, {', '.join(LOSSES)}, {PEER}")
    rows = run_benchmark([d for d in args.datasets.split(",") if d], losses, args)
    table = markdown_table(rows, args)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table)
    if args.json:
        print_json(rows)
    else:
        print(table)
    return 0
