"""``cnnlab compare``: models side by side (parameters, MACs, depth, year, published ImageNet accuracy)."""

from __future__ import annotations

from . import add_verb


def register(subparsers) -> None:
    p = add_verb(
        subparsers, "compare",
        help="compare models: parameters, MACs, depth, year, published ImageNet top-1/top-5",
        example="cnnlab compare alexnet vgg16 googlenet resnet152 --sort year",
        description="Parameters and multiply-accumulates (per image, 1 MAC = 2 FLOPs) are measured at each "
                    "model's own input size; depth is the number of weight layers on the longest path; year "
                    "and top-1/top-5 are the published figures. Patterns such as 'resnet*' are expanded.",
    )
    p.add_argument("models", nargs="+", metavar="MODEL", help="registered model names or shell patterns")
    p.add_argument("--input", metavar="CxHxW", help="measure every model at this input size instead")
    p.add_argument("--sort", choices=["year", "params", "macs", "depth", "top1", "name"], help="order of the rows")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis import compare_models
    from ..console import human_count, print_json, print_table
    from ..registry import list_models

    names: list[str] = []
    for word in args.models:
        matches = list_models(word) if any(c in word for c in "*?[") else [word]
        if not matches:
            from ..errors import unknown_name

            raise unknown_name("model pattern", word, list_models())
        names += [m for m in matches if m not in names]
    rows = compare_models(names, args.input, sort=args.sort)
    if args.json:
        print_json([row.to_dict() for row in rows])
        return 0

    def percent(value: float | None) -> str:
        return "" if value is None else f"{value:.1f}"

    print_table([[r.name, r.year, r.family, "x".join(map(str, r.input_size)), human_count(r.params),
                  human_count(r.macs), r.depth, percent(r.top1), percent(r.top5)] for r in rows],
                ["model", "year", "family", "input", "params", "MACs", "depth", "top-1 %", "top-5 %"],
                justify_right=["params", "MACs", "depth", "top-1 %", "top-5 %"])
    if any(r.params != r.params_total for r in rows):
        print("params: of the layers used in evaluation (auxiliary heads, used only in training, left out)")
    return 0
