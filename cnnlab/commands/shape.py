"""``cnnlab shape``: the output-size formula (N - F + 2P)/S + 1, filled in, for one layer or a chain."""

from __future__ import annotations

from . import add_verb


def register(subparsers) -> None:
    p = add_verb(
        subparsers, "shape",
        help="output-size calculator: (N - F + 2P)/S + 1 filled in, says when a layer does not fit",
        example="cnnlab shape 3x32x32 conv:k5,s1,p2,c10 pool:k2,s2\n  cnnlab shape --input 7 --kernel 3 --stride 3",
        description="Walk an input through layers and print each output size with the formula filled in, the "
                    "parameters (F*F*C/groups + 1)*K and the receptive field. When N - F + 2P is not a multiple "
                    "of S the layer does not fit (7x7 input, 3x3 filter, stride 3 gives 2.33): it says what "
                    "PyTorch does then and which padding would fit. Input, channels first as in 'summary "
                    "--input': CxHxW (e.g. 3x32x32), C@HxW (e.g. 3@32x32) or N (1xNxN). Layers: conv:k5,s1,p2,c10 (kernel, stride, padding or 'same', filters; also d "
                    "dilation, g groups, b0 no bias), pool:k2,s2 (max), avgpool:k2, fc:1000.",
    )
    p.add_argument("chain", nargs="*", metavar="INPUT LAYER...", help="input size then layers, e.g. 7 conv:k3,s2")
    p.add_argument("--input", metavar="SIZE", help="input size (instead of the first positional value)")
    p.add_argument("--kernel", "-k", type=int, help="one convolution: filter size F")
    p.add_argument("--stride", "-s", type=int, default=1, help="one convolution: stride S (default 1)")
    p.add_argument("--padding", "-p", type=int, default=0, help="one convolution: zero padding P (default 0)")
    p.add_argument("--dilation", "-d", type=int, default=1, help="one convolution: dilation (default 1)")
    p.add_argument("--filters", "-K", type=int, help="one convolution: number of filters K")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.shapes import LayerSpec, ShapeError, parse_input, parse_layer, shape_chain
    from ..console import print_json, print_table

    words = list(args.chain)
    text = args.input or (words.pop(0) if words else None)
    if text is None:
        raise ShapeError("give an input size, e.g. 'cnnlab shape 7 conv:k3,s2' or '--input 7 --kernel 3'")
    size = parse_input(text)
    layers = [parse_layer(word) for word in words]
    if args.kernel is not None:
        layers.append(LayerSpec("conv", kernel=(args.kernel,) * 2, stride=(args.stride,) * 2,
                                padding=(args.padding,) * 2, dilation=(args.dilation,) * 2, filters=args.filters))
    if not layers:
        raise ShapeError("give at least one layer, e.g. conv:k3,s1,p1 or --kernel 3")
    steps = shape_chain(size, layers)
    if args.json:
        print_json({"input": list(size), "steps": [step.to_dict() for step in steps]})
        return 0

    def chw(shape: tuple[int, int, int]) -> str:
        return "x".join(map(str, shape))

    rows = []
    for number, step in enumerate(steps, 1):
        field = step.field_size[0] if step.field_size[0] == step.field_size[1] else "x".join(map(str, step.field_size))
        rows.append([number, step.layer.describe(), step.formula(), chw(step.output_shape),
                     step.params_formula, f"{field}/{step.field_jump[0]}/{step.field_start[0]}"])
    print_table(rows, ["#", "layer", "output size (N - F + 2P)/S + 1", "output CxHxW", "parameters",
                       "RF size/jump/start"], title=f"input {chw(size)}")
    for number, step in enumerate(steps, 1):
        for note in step.notes:
            print(f"layer {number} ({step.layer.describe()}): {note}")
    print(f"total parameters: {sum(step.params for step in steps):,}")
    return 0
