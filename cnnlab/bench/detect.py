"""``cnnlab bench detect``: the detectors trained side by side on one scene set (same data, epochs,
batch, optimiser, schedule and seed, in one process), or read from finished runs (``--runs``), in a
table beside the figures deck 002 gives for PASCAL VOC 2007.

For every model: parameters, training time, seconds per test image (batches of up to 16, what
``cnnlab eval`` measures), VOC mAP@0.5, COCO mAP@[.5:.95], AP50, AP75 and mask mAP where the model
predicts masks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..console import human_count, print_json
from . import add_training_bench_arguments, hardware

DEFAULT = ["rcnn", "fast_rcnn", "faster_rcnn", "ssd", "mask_rcnn"]
# deck 002's milestones on PASCAL VOC 2007 test (mAP %, seconds per image)
DECK = {"rcnn": (66.0, 47.0), "fast_rcnn": (66.9, 0.22), "faster_rcnn": (73.2, 0.196)}


def row_from_run(run: str | Path, seconds: float | None = None) -> dict:
    from ..train.checkpoint import load_checkpoint, read_meta

    run = Path(run)
    meta = read_meta(run)
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line.strip()]
    final = history[-1]
    ckpt = load_checkpoint(run)
    deck = DECK.get(meta.arch, (None, None))
    return {"model": meta.arch, "run": str(run), "epochs": len(history),
            "params": sum(p.numel() for p in ckpt.model.parameters()),
            "train_seconds": round(sum(h.get("train_seconds", 0.0) for h in history), 1),
            "seconds_per_image": final.get("test_seconds_per_image"),
            "map50_voc": final.get("test_map50_voc"), "map": final.get("test_map"), "ap50": final.get("test_ap50"),
            "ap75": final.get("test_ap75"), "mask_map": final.get("test_mask_map"),
            "deck_voc_map": deck[0], "deck_seconds_per_image": deck[1], "seconds": seconds,
            "config": {k: meta.config.get(k) for k in ("epochs", "batch_size", "optimizer", "lr", "schedule", "seed",
                                                        "augment", "threads")},
            "hardware": hardware()}


def run_benchmark(names: list[str], args) -> list[dict]:
    from ..train import train

    rows = []
    for name in names:
        start = time.perf_counter()
        result = train(model=name, data=args.data, data_dir=args.data_dir or "", epochs=args.epochs,
                       batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, schedule=args.schedule,
                       weight_decay=0.0, augment=args.augment, limit_train=args.limit_train,
                       limit_test=args.limit_test, device=args.device, seed=args.seed, threads=args.threads,
                       plan=False, out=str(Path(args.out) / name),
                       log=(lambda s, n=name: print(f"{n}: {s}", flush=True)) if not args.json else (lambda s: None))
        rows.append(row_from_run(result.run_dir, round(time.perf_counter() - start, 1)))
    return rows


def markdown_table(rows: list[dict]) -> str:
    def pct(v):
        return "-" if v is None or v < 0 else f"{100 * v:.1f}"

    c = rows[0]["config"] if rows else {}
    lines = [f"{c.get('epochs')} epochs, batch {c.get('batch_size')}, {c.get('optimizer')} lr {c.get('lr')} "
             f"{c.get('schedule')}, augment `{c.get('augment') or 'none'}`, seed {c.get('seed')}; "
             f"{rows[0]['hardware'] if rows else ''}.", "",
             "| model | parameters | train time (s) | s / image | VOC mAP@0.5 | COCO mAP | AP50 | AP75 | mask mAP "
             "| deck: VOC07 mAP | deck: s / image |",
             "| --- | --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |"]
    for r in rows:
        lines.append(f"| {r['model']} | {human_count(r['params'])} | {r['train_seconds']} | {r['seconds_per_image']:.3f} | "
                     f"{pct(r['map50_voc'])} | {pct(r['map'])} | {pct(r['ap50'])} | {pct(r['ap75'])} | "
                     f"{pct(r['mask_map'])} | {r['deck_voc_map'] or '-'} | {r['deck_seconds_per_image'] or '-'} |")
    return "\n".join(lines) + "\n"


def register(subparsers) -> None:
    p = subparsers.add_parser("detect", help="detectors trained side by side, beside the deck's VOC figures")
    p.add_argument("models", nargs="*", help=f"models (default: {' '.join(DEFAULT)})")
    p.add_argument("--runs", nargs="*", default=None, help="table finished run folders instead of training")
    p.add_argument("--data", default="fashion-scenes-mini")
    p.add_argument("--data-dir", default="")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--augment", default="flip")
    add_training_bench_arguments(p, out="runs/bench-detect")
    p.set_defaults(func=run)


def run(args) -> int:
    torch.set_num_threads(args.threads)
    if args.runs:
        rows = [row_from_run(r) for r in args.runs]
    else:
        rows = run_benchmark(list(args.models or DEFAULT), args)
    table = markdown_table(rows)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table)
    if args.json:
        print_json(rows)
    else:
        print(table)
    return 0
