"""``cnnlab summary``: the per-layer table of a model (shapes, parameters, MACs, receptive fields)."""

from __future__ import annotations

import os

from . import add_verb


def register(subparsers) -> None:
    p = add_verb(
        subparsers, "summary",
        help="per-layer table: output shapes, parameters, MACs, neurons, receptive fields, memory",
        example="cnnlab summary alexnet_original --input 3x227x227 --depth 2",
        description="One row per layer of MODEL (a registered name or a checkpoint file): kernel/stride/"
                    "padding, output shape CxHxW, parameters, multiply-accumulates (1 MAC = 2 FLOPs; conv, "
                    "linear and recurrent layers only), neurons, receptive field size/jump/start in input "
                    "pixels, and output memory, all per image; then totals and the conv vs fully connected "
                    "shares.",
    )
    p.add_argument("model", metavar="MODEL", help="registered model name (see 'cnnlab list') or checkpoint path")
    p.add_argument("--input", metavar="CxHxW", help="input size, e.g. 3x224x224 (default: the model's own)")
    p.add_argument("--depth", type=int, metavar="N", help="show blocks N levels deep instead of every layer")
    p.add_argument("--num-classes", type=int, metavar="K", help="classes of the model's output layer")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON")
    out.add_argument("--csv", action="store_true", help="print CSV, one line per layer")
    out.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis import summarize
    from ..console import print_json, print_table

    kwargs = {"num_classes": args.num_classes} if args.num_classes else {}
    if os.path.exists(args.model):  # a run folder, or a file inside one
        from ..train.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(args.model, device="cpu")
        size = args.input or tuple(checkpoint.input_size)
        summary = summarize(checkpoint.model, size, depth=args.depth)
        summary.model = checkpoint.arch or args.model
    else:
        summary = summarize(args.model, args.input, depth=args.depth, **kwargs)
    if args.json:
        print_json(summary.to_dict())
    elif args.csv:
        print(summary.to_csv(), end="")
    elif args.markdown:
        print(summary.to_markdown(), end="")
    else:
        print_table(summary.table_rows(), summary.COLUMNS, title=f"{summary.model}",
                    justify_right=["params", "MACs", "neurons", "memory"])
        print("\n".join(summary.footer()))
    return 0
