"""``cnnlab bench train``: training speed on Fashion-MNIST, cnnlab's pipeline against the textbook's, in one run.

The baseline re-implements the textbook pipeline (Dive into Deep Learning, ch. 7.6 "LeNet", with its
``load_data_fashion_mnist`` and ``train_ch6``): a map-style dataset that turns each sample into a PIL
image and then into a float tensor (``ToTensor``: HWC uint8 -> CHW float in [0, 1]) one at a time; a
``DataLoader`` with 4 worker processes, re-created every epoch; sigmoid LeNet-5 with Xavier
initialisation; SGD with learning rate 0.9 and batch 256; cross-entropy; fp32, NCHW.

cnnlab's pipeline trains the same model with the same hyper-parameters, but keeps the data as one
uint8 tensor (a batch is an index), normalises whole batches and, where measured faster, uses the
channels-last layout or bf16 autocast.

Two measurements:

(a) training images/s of the same model and hyper-parameters: rounds alternate between the pipelines
    so a shared machine's load falls on both; each figure is the median over rounds of one epoch on
    ``--limit-train`` images, data loading (and the baseline's worker start-up) included.
(b) wall-clock time to reach each ``--targets`` test accuracy (data loading, model building, every
    epoch's evaluation included), for the baseline, cnnlab with the textbook recipe, and cnnlab's
    ``fast`` recipe, within ``--budget`` seconds each.
"""

from __future__ import annotations

import statistics
import time
import warnings
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..commands import add_verb
from ..console import print_json, print_table
from ..errors import ConfigError

TEXTBOOK = dict(model="lenet5", lr=0.9, batch_size=256, workers=4)


def register(subparsers) -> None:
    p = add_verb(subparsers, "train", help="training images/s and time-to-accuracy: cnnlab vs the textbook pipeline",
                 example="cnnlab bench train --limit-train 10000 --rounds 3 --budget 60 --targets 0.8,0.85")
    p.add_argument("--data", default="fashion-mnist", help="dataset (default: fashion-mnist)")
    p.add_argument("--data-dir", default="", help="data root (default: $CNNLAB_DATA or the user cache)")
    p.add_argument("--limit-train", type=int, default=0, help="train on the first N images (0: all)")
    p.add_argument("--limit-test", type=int, default=0, help="evaluate on the first N test images (0: all)")
    p.add_argument("--rounds", type=int, default=3, help="(a) alternating throughput rounds (default: 3; 0: skip (a))")
    p.add_argument("--workers", type=int, default=4, help="baseline DataLoader worker processes (textbook: 4)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for every pipeline (default: 1)")
    p.add_argument("--targets", default="0.80,0.85", help="(b) test accuracies to time, comma list")
    p.add_argument("--budget", type=float, default=120.0, help="(b) seconds allowed per pipeline (0: skip (b))")
    p.add_argument("--max-epochs", type=int, default=30, help="(b) epochs at most per pipeline")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="cnnlab's precision in (a): auto measures both and keeps the faster")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


# --- the textbook pipeline ----------------------------------------------------------------------------

class PilDataset(torch.utils.data.Dataset):
    """Samples converted one at a time, as a torchvision-style dataset with a ``ToTensor`` transform does:
    uint8 array -> PIL image (mode "L") -> float tensor 1 x H x W in [0, 1]."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images = images[:, 0].numpy()  # N x H x W uint8, as the textbook's dataset holds it
        self.labels = labels.numpy()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        image = Image.fromarray(self.images[i], mode="L")
        return to_tensor(image), int(self.labels[i])


def to_tensor(image) -> torch.Tensor:
    """``ToTensor`` for a greyscale PIL image: H x W uint8 -> 1 x H x W float in [0, 1]."""
    array = np.array(image, dtype=np.uint8, copy=True)
    return torch.from_numpy(array).view(1, *array.shape).float().div(255)


def textbook_loader(images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, workers: int,
                    shuffle: bool, seed: int = 0) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(PilDataset(images, labels), batch_size=batch_size, shuffle=shuffle,
                                       num_workers=workers, generator=torch.Generator().manual_seed(seed))


def textbook_model(seed: int = 0) -> nn.Module:
    """Sigmoid LeNet-5 with Xavier-uniform weights, as the textbook initialises it."""
    from ..registry import create_model

    torch.manual_seed(seed)
    model = create_model(TEXTBOOK["model"])
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
    return model


class TextbookPipeline:
    """The textbook's ``train_ch6`` loop, one epoch at a time."""

    name = "textbook"

    def __init__(self, train, test, *, workers: int, seed: int = 0):
        self.train_set, self.test_set, self.workers = train, test, workers
        self.model = textbook_model(seed)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=TEXTBOOK["lr"])
        self.loss = nn.CrossEntropyLoss()
        self.seed = seed
        self.epochs = 0

    def train_epoch(self) -> int:
        self.model.train()
        loader = textbook_loader(self.train_set.images, self.train_set.labels, batch_size=TEXTBOOK["batch_size"],
                                 workers=self.workers, shuffle=True, seed=self.seed + self.epochs)
        seen = 0
        for x, y in loader:
            self.optimizer.zero_grad()
            loss = self.loss(self.model(x), y)
            loss.backward()
            self.optimizer.step()
            seen += len(y)
        self.epochs += 1
        return seen

    @torch.no_grad()
    def accuracy(self) -> float:
        self.model.eval()
        loader = textbook_loader(self.test_set.images, self.test_set.labels, batch_size=TEXTBOOK["batch_size"],
                                 workers=self.workers, shuffle=False)
        correct = sum(int((self.model(x).argmax(1) == y).sum()) for x, y in loader)
        return correct / len(self.test_set)


# --- cnnlab's pipeline, same model and hyper-parameters -------------------------------------------------

def textbook_config(data: str, data_dir: str, limit_train: int, limit_test: int, *, channels_last: bool,
                    precision: str, threads: int, out: str):
    """The textbook's hyper-parameters as a cnnlab :class:`TrainConfig` (``--recipe textbook``)."""
    from ..train.config import build_config

    return build_config(recipe="textbook", overrides=dict(
        data=data, data_dir=data_dir, limit_train=limit_train, limit_test=limit_test, channels_last=channels_last,
        precision=precision, threads=threads, out=out, epochs=1000))


class TrainerPipeline:
    """The same model and hyper-parameters trained by cnnlab's own :class:`~cnnlab.train.trainer.Trainer`:
    each measured epoch is ``Trainer.train_one_epoch``, the loop ``cnnlab train`` runs (batches indexed
    from one resident uint8 tensor, normalised as a whole). The one difference from the textbook is the
    input scale: the trainer normalises by the dataset's mean and standard deviation, the textbook
    divides by 255."""

    def __init__(self, data: str, data_dir: str, limit_train: int, limit_test: int, *, channels_last: bool,
                 precision: str, threads: int):
        import tempfile

        from ..train.trainer import Trainer

        self._tmp = tempfile.TemporaryDirectory()
        self.name = "cnnlab" + ("+cl" if channels_last else "") + ("+bf16" if precision == "bf16" else "")
        config = textbook_config(data, data_dir, limit_train, limit_test, channels_last=channels_last,
                                 precision=precision, threads=threads, out=self._tmp.name)
        self.trainer = Trainer(config, progress=False, log=lambda s: None)

    def train_epoch(self) -> int:
        self.trainer.train_one_epoch()
        return len(self.trainer.train_set)


# --- measurements -------------------------------------------------------------------------------------

def _load(data: str, data_dir: str, limit_train: int, limit_test: int):
    from ..data import load_dataset

    train = load_dataset(data, "train", data_dir or None)
    test = load_dataset(data, "test", data_dir or None)
    if limit_train:
        train = train.subset(slice(0, limit_train))
    if limit_test:
        test = test.subset(slice(0, limit_test))
    return train, test


def throughput(train, test, *, rounds: int, workers: int, precision: str = "auto", source: dict[str, Any],
               log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """(a) Median images/s over ``rounds`` alternating epochs of each pipeline; ``source`` names the data
    (``data``, ``data_dir``, ``limit_train``, ``limit_test``, ``threads``) for cnnlab's trainer."""
    pipelines = [TextbookPipeline(train, test, workers=workers),
                 TrainerPipeline(**source, channels_last=False, precision="fp32"),
                 TrainerPipeline(**source, channels_last=True, precision="fp32")]
    if precision in ("auto", "bf16"):
        pipelines.append(TrainerPipeline(**source, channels_last=True, precision="bf16"))
    rates: dict[str, list[float]] = {p.name: [] for p in pipelines}
    for r in range(rounds):
        for p in pipelines:
            start = time.perf_counter()
            seen = p.train_epoch()
            rates[p.name].append(seen / (time.perf_counter() - start))
        log(f"(a) round {r + 1}/{rounds}: " + "  ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items()))
    median = {k: statistics.median(v) for k, v in rates.items()}
    ours = [k for k in median if k != "textbook" and (precision != "fp32" or "bf16" not in k)]
    best = max(ours, key=median.get)
    return {"images_per_second": median, "rounds": rates, "best": best,
            "speedup": {k: v / median["textbook"] for k, v in median.items() if k != "textbook"}}


def time_to_accuracy(make: Callable[[], Any], targets: list[float], *, budget: float, max_epochs: int,
                     log: Callable[[str], None] = lambda s: None, name: str = "") -> dict[str, Any]:
    """(b) Wall-clock seconds until the test accuracy first reaches each target. ``make`` builds the
    pipeline (its data loading and set-up count); each epoch is followed by an evaluation (counted)."""
    start = time.perf_counter()
    pipeline = make()
    reached: dict[str, float | None] = {f"{t:.4f}": None for t in targets}
    curve = []
    for epoch in range(1, max_epochs + 1):
        if not pipeline.train_epoch():  # the pipeline's own schedule has ended
            break
        acc = pipeline.accuracy()
        now = time.perf_counter() - start
        curve.append({"epoch": epoch, "test_acc": acc, "seconds": now})
        log(f"(b) {name} epoch {epoch}: test_acc {acc:.4f} at {now:.1f}s")
        for t in targets:
            if acc >= t and reached[f"{t:.4f}"] is None:
                reached[f"{t:.4f}"] = now
        if all(v is not None for v in reached.values()) or now >= budget:
            break
    return {"reached": reached, "curve": curve, "best_acc": max((c["test_acc"] for c in curve), default=0.0)}


class RecipePipeline:
    """A cnnlab recipe run through :class:`~cnnlab.train.trainer.Trainer`, one epoch at a time."""

    def __init__(self, recipe: str, data: str, data_dir: str, limit_train: int, limit_test: int, epochs: int,
                 threads: int, **overrides: Any):
        import tempfile

        from ..train.config import build_config
        from ..train.trainer import Trainer

        self._tmp = tempfile.TemporaryDirectory()
        config = build_config(recipe=recipe, overrides=dict(data=data, data_dir=data_dir, limit_train=limit_train,
                                                            limit_test=limit_test, out=self._tmp.name, threads=threads,
                                                            **({"epochs": epochs} if recipe == "textbook" else {}),
                                                            **overrides))
        self.trainer = Trainer(config, progress=False, log=lambda s: None)

    def train_epoch(self) -> int:
        if self.trainer.epoch >= self.trainer.config.epochs:
            return 0
        self.trainer.run(stop_after=self.trainer.epoch + 1)
        return len(self.trainer.train_set)

    def accuracy(self) -> float:
        return self.trainer.history[-1]["test_acc"]  # the trainer evaluates after every epoch


def measure(*, data: str = "fashion-mnist", data_dir: str = "", limit_train: int = 0, limit_test: int = 0,
            rounds: int = 3, workers: int = 4, threads: int = 1, targets: list[float] | None = None,
            budget: float = 120.0, max_epochs: int = 30, precision: str = "auto",
            log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Both measurements as one dict (see the module docstring)."""
    from . import hardware

    if rounds < 0 or workers < 0 or threads < 1:
        raise ConfigError("threads must be at least 1, rounds and workers at least 0")
    targets = sorted(targets or [0.80, 0.85])
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        # The textbook's 4 workers exceed this machine's suggestion on 2 cores; that is the recipe measured.
        warnings.filterwarnings("ignore", message="This DataLoader will create")
        train, test = _load(data, data_dir, limit_train, limit_test)
        result: dict[str, Any] = {"data": data, "train_images": len(train), "test_images": len(test),
                                  "threads": threads, "workers": workers, "hardware": hardware()}
        if rounds:
            source = dict(data=data, data_dir=data_dir, limit_train=limit_train, limit_test=limit_test, threads=threads)
            result["throughput"] = throughput(train, test, rounds=rounds, workers=workers, precision=precision,
                                              source=source, log=log)
        if budget > 0:
            runs = {
                "textbook": lambda: TextbookPipeline(*_load(data, data_dir, limit_train, limit_test), workers=workers),
                "cnnlab --recipe textbook": lambda: RecipePipeline("textbook", data, data_dir, limit_train, limit_test,
                                                                   max_epochs, threads),
                "cnnlab --recipe fast": lambda: RecipePipeline("fast", data, data_dir, limit_train, limit_test,
                                                               max_epochs, threads),
            }
            result["time_to_accuracy"] = {name: time_to_accuracy(make, targets, budget=budget, max_epochs=max_epochs,
                                                                 log=log, name=name) for name, make in runs.items()}
    finally:
        torch.set_num_threads(previous)
    return result


def run(args) -> int:
    try:
        targets = [float(t) for t in args.targets.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--targets must be a comma list of accuracies, got '{args.targets}'") from None
    if any(not 0 < t <= 1 for t in targets):
        raise ConfigError("--targets are accuracies between 0 and 1")
    result = measure(data=args.data, data_dir=args.data_dir, limit_train=args.limit_train, limit_test=args.limit_test,
                     rounds=args.rounds, workers=args.workers, threads=args.threads, targets=targets,
                     budget=args.budget, max_epochs=args.max_epochs, precision=args.precision,
                     log=(lambda s: None) if args.json else print)
    if args.json:
        print_json(result)
        return 0
    tp = result.get("throughput")
    if tp:
        print_table([[k, f"{v:,.0f}", f"{v / tp['images_per_second']['textbook']:.2f}x"]
                     for k, v in tp["images_per_second"].items()], ["pipeline", "train img/s", "vs textbook"],
                    title=f"(a) LeNet-5 (sigmoid), SGD lr 0.9, batch 256, {result['train_images']} images; "
                          f"{result['threads']} thread(s); {result['hardware']}",
                    justify_right=["train img/s", "vs textbook"])
    tta = result.get("time_to_accuracy")
    if tta:
        keys = list(next(iter(tta.values()))["reached"])
        rows = [[name, *[("-" if r["reached"][k] is None else f"{r['reached'][k]:.1f}s") for k in keys],
                 f"{r['best_acc']:.4f}", str(len(r["curve"]))] for name, r in tta.items()]
        print_table(rows, ["pipeline", *[f"to {float(k):.1%}" for k in keys], "best acc", "epochs"],
                    title=f"(b) wall clock to test accuracy ({result['test_images']} test images)",
                    justify_right=[*[f"to {float(k):.1%}" for k in keys], "best acc", "epochs"])
        base = tta["textbook"]["reached"]
        for name, r in tta.items():
            if name == "textbook":
                continue
            ratios = [f"{float(k):.1%}: {base[k] / r['reached'][k]:.2f}x" for k in keys
                      if base[k] is not None and r["reached"][k] is not None]
            if ratios:
                print(f"time-to-accuracy speed-up of {name} over textbook: " + "  ".join(ratios))
    if tp:
        best = tp["best"]
        print(f"training images/s, {best} over textbook (same model and hyper-parameters): {tp['speedup'][best]:.2f}x")
    return 0
