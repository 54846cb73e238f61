"""``cnnlab train``: every field of :class:`~cnnlab.train.config.TrainConfig` is an option."""

from __future__ import annotations

import dataclasses
import types
import typing

from . import add_verb
from ..console import print_json


def register(subparsers) -> None:
    from ..train.config import RECIPES, TrainConfig

    p = add_verb(subparsers, "train", help="train a model on a dataset (checkpoints every epoch)",
                 example="cnnlab train lenet5 --data fashion-mnist --recipe textbook --out runs/lenet5")
    p.add_argument("model_name", nargs="?", metavar="MODEL", help="model name (see 'cnnlab list')")
    p.add_argument("--recipe", choices=sorted(RECIPES), help="a named starting configuration")
    p.add_argument("--config", metavar="FILE", help="TOML file of settings (top level or a [train] table)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its folder")
    p.add_argument("--json", action="store_true", help="print the final result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name == "model":
            continue
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # ``bool | None``: None is the default (decided by the plan)
            kind = next(t for t in typing.get_args(kind) if t is not type(None))
        # A bare boolean flag (``--distributed``) means yes; ``--distributed no`` is also accepted.
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f"cfg_{f.name}", default=None,
                       **({"nargs": "?", "const": "yes"} if kind is bool else {}),
                       metavar="BOOL" if kind is bool else kind.__name__.upper(),
                       help=f"{f.metadata.get('help', '')} (default: {f.default!r})")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..train.config import build_config
    from ..train.trainer import Trainer

    from ..errors import ConfigError
    from ..registry import model_info
    from ..train.config import coerce

    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    extend_to = None
    if args.resume:
        # A resumed run is the saved run: only its length may change (--epochs N extends it to N).
        others = sorted(set(overrides) - {"epochs"}) + [flag for flag, given in (
            ("MODEL", args.model_name), ("--recipe", args.recipe), ("--config", args.config)) if given]
        if others:
            raise ConfigError(f"--resume continues the run with its saved settings; only --epochs may be given "
                              f"with it (got {', '.join(others)})")
        if "epochs" in overrides:
            extend_to = coerce("epochs", overrides.pop("epochs"), int)
    if args.model_name:
        overrides["model"] = args.model_name
    config = build_config(recipe=args.recipe, file=args.config, overrides=overrides)
    model_info(config.model)  # fail fast on an unknown name, before loading data
    log = (lambda s: None) if (args.quiet or args.json) else print
    trainer = Trainer(config, resume=args.resume, extend_to=extend_to, progress=not (args.quiet or args.json), log=log)
    try:
        result = trainer.run()
        trainer.dist.barrier()  # every rank leaves the process group together (rank 0 plots last)
    except KeyboardInterrupt:
        import sys

        if trainer.dist.is_main:
            done = trainer.epoch
            where = f"after epoch {done}" if done else "before the first checkpoint"
            hint = (f"; continue with: cnnlab train --resume {trainer.run_dir}" if done else "")
            print(f"cnnlab train: interrupted {where}{hint}", file=sys.stderr)
        return 130
    finally:
        from ..train.distributed import teardown

        teardown(trainer.dist)
    if not trainer.dist.is_main:  # rank 0 reports for the whole run
        return 0
    task = trainer.task
    summary = {"run_dir": str(result.run_dir), "model": trainer.config.model, "task": task.name,
               "data": trainer.config.data, "epochs": len(result.history),
               **{k: v for k, v in result.final.items() if k.startswith("test_")},
               "seconds": round(result.seconds, 2), "train_images_per_second": round(result.train_images_per_second, 1),
               "best": result.best, "stopped_early": result.stopped_early}
    if args.json:
        print_json(summary)
    elif not args.quiet:
        key = f"test_{task.primary}"
        figure = f"  {key} {summary[key]:.4f}" if isinstance(summary.get(key), float) else ""
        print(f"saved {result.run_dir}{figure}  "
              f"{summary['train_images_per_second']:.0f} train img/s  {summary['seconds']:.1f}s")
    return 0
