"""``cnnlab bench records``: time to each Fashion-MNIST accuracy goal, beside two anchors, in one command.

The goals (test accuracy within a wall-clock limit, on the machine at hand) and the recipe that goes
for each:

=========  ========  ================  ==================================================
accuracy   within    recipe            what it is
=========  ========  ================  ==================================================
91%        15 s      ``fast``          LeNet-5 (ReLU, BN), one-cycle SGD, label smoothing
93%        60 s      ``fast-resnet``   ResNet-20 (He et al. 2016, CIFAR form), 5 epochs
94%        3 min     ``record-94``     ResNet-20, 8 epochs, crops and flips
95%        15 min    ``record-95``     ResNet-20, 24 epochs, crops and flips, weight EMA
=========  ========  ================  ==================================================

The anchors, run in the same process on the same data:

- ``textbook``: Dive into Deep Learning's LeNet chapter (``cnnlab bench train`` describes it);
- ``pytorch-example``: the recipe of PyTorch's official MNIST example (``examples/mnist/main.py``):
  two 3x3 convolutions (32, 64), max pooling, dropout 0.25, a 128-unit layer, dropout 0.5; Adadelta
  with learning rate 1.0 and a step decay of 0.7 per epoch; batch 64; 14 epochs; inputs normalised
  with MNIST's mean 0.1307 and deviation 0.3081 one sample at a time. On a CPU the example's loader has
  no workers and no shuffling, which is kept.

Every pipeline's clock starts before its data is loaded and its model built, and each epoch's
evaluation on the whole test split is counted. The interpreter's start-up and the imports (measured once,
in a fresh process) are added to every row, so a figure is what the whole command would take.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..commands import add_verb
from ..console import print_json, print_table
from ..errors import ConfigError
from .train import PilDataset, RecipePipeline, TextbookPipeline, _load, time_to_accuracy


@dataclass(frozen=True)
class Goal:
    accuracy: float
    seconds: float
    recipe: str

    @property
    def name(self) -> str:
        return f"{self.accuracy:.0%} in {self.seconds:g} s"


GOALS = (Goal(0.91, 15, "fast"), Goal(0.93, 60, "fast-resnet"), Goal(0.94, 180, "record-94"),
         Goal(0.95, 900, "record-95"))
ANCHORS = ("textbook", "pytorch-example")


def register(subparsers) -> None:
    p = add_verb(subparsers, "records", help="time to 91/93/94/95% on Fashion-MNIST beside the textbook and "
                                            "PyTorch-example anchors",
                 example="cnnlab bench records --goals 91,93 --anchor-budget 120")
    p.add_argument("--data", default="fashion-mnist", help="dataset (default: fashion-mnist)")
    p.add_argument("--data-dir", default="", help="data root (default: $CNNLAB_DATA or the user cache)")
    p.add_argument("--goals", default="91,93,94,95", help="comma list of the goals to run, by accuracy in percent")
    p.add_argument("--anchors", default=",".join(ANCHORS), help="comma list of " + "|".join(ANCHORS) + " (or none)")
    p.add_argument("--anchor-budget", type=float, default=300.0, help="seconds each anchor may train (default: 300)")
    p.add_argument("--slack", type=float, default=1.5,
                   help="a goal's run stops at this many times its time limit (default: 1.5)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: the recipes' execution plan decides)")
    p.add_argument("--limit-train", type=int, default=0, help="train on the first N images (0: all; for a quick look)")
    p.add_argument("--limit-test", type=int, default=0, help="evaluate on the first N test images (0: all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


# --- the PyTorch example's recipe ---------------------------------------------------------------------

class ExampleNet(nn.Module):
    """The network of PyTorch's MNIST example: conv 3x3 (32) - conv 3x3 (64) - max pool - dropout -
    fc 128 - dropout - fc 10, ReLU after each hidden layer."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(),    # N x 32 x 26 x 26
            nn.Conv2d(32, 64, 3), nn.ReLU(),   # N x 64 x 24 x 24
            nn.MaxPool2d(2), nn.Dropout(0.25),  # N x 64 x 12 x 12
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 12 * 12, 128), nn.ReLU(), nn.Dropout(0.5),
                                        nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class NormalisedPilDataset(PilDataset):
    """``ToTensor`` then ``Normalize((0.1307,), (0.3081,))``, one sample at a time, as the example does."""

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = super().__getitem__(i)
        return (x - 0.1307) / 0.3081, y


class ExamplePipeline:
    """PyTorch's MNIST example recipe, one epoch at a time (CPU: no loader workers, no shuffling)."""

    name = "pytorch-example"
    epochs_total = 14

    def __init__(self, train, test, *, seed: int = 1):
        torch.manual_seed(seed)  # the example's default seed
        self.train_loader = torch.utils.data.DataLoader(NormalisedPilDataset(train.images, train.labels), batch_size=64)
        self.test_loader = torch.utils.data.DataLoader(NormalisedPilDataset(test.images, test.labels), batch_size=1000)
        self.test_count = len(test)
        self.model = ExampleNet(len(train.class_names))
        self.optimizer = torch.optim.Adadelta(self.model.parameters(), lr=1.0)
        self.schedule = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=1, gamma=0.7)
        self.epochs = 0

    def train_epoch(self) -> int:
        if self.epochs >= self.epochs_total:
            return 0
        self.model.train()
        seen = 0
        for x, y in self.train_loader:
            self.optimizer.zero_grad()
            loss = nn.functional.cross_entropy(self.model(x), y)
            loss.backward()
            self.optimizer.step()
            seen += len(y)
        self.schedule.step()
        self.epochs += 1
        return seen

    @torch.no_grad()
    def accuracy(self) -> float:
        self.model.eval()
        correct = sum(int((self.model(x).argmax(1) == y).sum()) for x, y in self.test_loader)
        return correct / self.test_count


# --- the runs -----------------------------------------------------------------------------------------

def startup_seconds() -> float:
    """Seconds a fresh interpreter takes to start and import what training needs (the best of two)."""
    code = "import cnnlab.train.trainer, cnnlab.data"
    best = float("inf")
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def parse_goals(text: str) -> list[Goal]:
    wanted = [t.strip().rstrip("%") for t in text.split(",") if t.strip()]
    by_percent = {f"{g.accuracy * 100:.0f}": g for g in GOALS}
    unknown = [w for w in wanted if w not in by_percent]
    if unknown:
        raise ConfigError(f"unknown goal '{unknown[0]}' (choose from {', '.join(by_percent)})")
    return [by_percent[w] for w in wanted]


def measure(*, data: str = "fashion-mnist", data_dir: str = "", goals: list[Goal] | None = None,
            anchors: list[str] | None = None, anchor_budget: float = 300.0, slack: float = 1.5, threads: int = 0,
            limit_train: int = 0, limit_test: int = 0, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Every goal's run and every anchor's, as one dict (see the module docstring)."""
    from . import hardware

    goals = list(GOALS) if goals is None else goals
    anchors = list(ANCHORS) if anchors is None else anchors
    bad = [a for a in anchors if a not in ANCHORS]
    if bad:
        raise ConfigError(f"unknown anchor '{bad[0]}' (choose from {', '.join(ANCHORS)})")
    if slack < 1 or anchor_budget < 0 or threads < 0:
        raise ConfigError("--slack must be at least 1, --anchor-budget and --threads at least 0")
    import warnings

    # The textbook's 4 loader workers exceed what torch suggests on 2 cores; that is the recipe measured.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    startup = startup_seconds()
    log(f"interpreter start-up and imports: {startup:.1f} s (added to every row)")
    targets = sorted({g.accuracy for g in goals} | {0.91})
    rows: dict[str, Any] = {}
    for goal in goals:
        make = lambda g=goal: RecipePipeline(g.recipe, data, data_dir, limit_train, limit_test, 0, threads)  # noqa: E731
        rows[f"--recipe {goal.recipe}"] = {"goal": goal.name, **time_to_accuracy(
            make, targets, budget=goal.seconds * slack - startup, max_epochs=1000, log=log, name=goal.recipe)}
    loaders = {
        "textbook": lambda: TextbookPipeline(*_load(data, data_dir, limit_train, limit_test), workers=4),
        "pytorch-example": lambda: ExamplePipeline(*_load(data, data_dir, limit_train, limit_test)),
    }
    previous = torch.get_num_threads()
    try:
        for name in anchors:
            torch.set_num_threads(threads or previous)
            rows[name] = {"goal": None, **time_to_accuracy(loaders[name], targets, budget=anchor_budget - startup,
                                                           max_epochs=1000, log=log, name=name)}
    finally:
        torch.set_num_threads(previous)
    for row in rows.values():  # the whole command's time: start-up, then the pipeline's own clock
        row["reached"] = {k: (None if v is None else round(v + startup, 2)) for k, v in row["reached"].items()}
        for point in row["curve"]:
            point["seconds"] = round(point["seconds"] + startup, 2)
        if row["goal"]:
            goal = next(g for g in goals if g.name == row["goal"])
            t = row["reached"][f"{goal.accuracy:.4f}"]
            row["met"] = t is not None and t <= goal.seconds
    return {"data": data, "startup_seconds": round(startup, 2), "targets": targets, "rows": rows,
            "hardware": hardware(), "limit_train": limit_train, "limit_test": limit_test}


def ratios(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """For each target, each anchor's time over the fastest cnnlab recipe's (``x`` times faster)."""
    out: dict[str, dict[str, float]] = {}
    for key in (f"{t:.4f}" for t in result["targets"]):
        ours = [r["reached"][key] for n, r in result["rows"].items() if r["goal"] and r["reached"][key] is not None]
        if not ours:
            continue
        best = min(ours)
        out[key] = {n: r["reached"][key] / best for n, r in result["rows"].items()
                    if not r["goal"] and r["reached"][key] is not None}
    return out


def run(args) -> int:
    goals = parse_goals(args.goals)
    anchors = [] if args.anchors.strip() in ("", "none") else [a.strip() for a in args.anchors.split(",") if a.strip()]
    result = measure(data=args.data, data_dir=args.data_dir, goals=goals, anchors=anchors,
                     anchor_budget=args.anchor_budget, slack=args.slack, threads=args.threads,
                     limit_train=args.limit_train, limit_test=args.limit_test,
                     log=(lambda s: None) if args.json else print)
    result["ratios"] = ratios(result)
    if args.json:
        print_json(result)
        return 0
    keys = [f"{t:.4f}" for t in result["targets"]]
    rows = []
    for name, r in result["rows"].items():
        met = "-" if not r["goal"] else ("met" if r["met"] else "missed")
        rows.append([name, r["goal"] or "anchor", *[("-" if r["reached"][k] is None else f"{r['reached'][k]:.1f}s")
                                                    for k in keys], f"{r['best_acc']:.4f}", met])
    print_table(rows, ["pipeline", "goal", *[f"to {float(k):.0%}" for k in keys], "best acc", "goal met"],
                title=f"{result['data']}: whole-command wall clock to test accuracy; {result['hardware']}",
                justify_right=[*[f"to {float(k):.0%}" for k in keys], "best acc"])
    for key, per_anchor in result["ratios"].items():
        if per_anchor:
            print(f"to {float(key):.0%}, fastest cnnlab recipe vs " +
                  "  ".join(f"{n} {v:.2f}x faster" for n, v in per_anchor.items()))
    return 0
