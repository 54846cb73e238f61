"""``cnnlab explain``: what a layer computes, step by step, on small matrices.

With no matrices given, each topic runs the lecture decks' worked examples. Matrices are written as
rows separated by ';' and channels separated by '|', e.g. ``--input "0 1 2; 3 4 5; 6 7 8"``.
"""

from __future__ import annotations

import argparse
import sys

from . import add_verb
from ..console import print_json
from ..errors import ConfigError

TOPICS = ("conv", "pool", "fc", "bn", "lrn", "dropout", "rnn", "lstm", "gru")


def register(subparsers) -> None:
    parser = add_verb(subparsers, "explain", help="print what a layer computes, number by number",
                      example='cnnlab explain conv --input "0 1 2; 3 4 5; 6 7 8" --kernel "0 1; 2 3" --padding 1',
                      description="Print each window, the products, the sums and the output-size formula of a layer. "
                                  "Without --input the decks' worked examples are shown.")
    parser.add_argument("topic", nargs="?", choices=TOPICS, help="the layer to explain (not needed with --web)")
    parser.add_argument("--input", help="matrix: rows separated by ';', channels by '|' (lrn: one value per channel; "
                                        "rnn/lstm/gru: one row per time step)")
    parser.add_argument("--kernel", help="conv: the kernel, same notation (one kernel per input channel)")
    parser.add_argument("--weights", help="fc: the matrix W of y = Wx + b, one row per output, one column per input")
    parser.add_argument("--bias", help="fc: b, one bias per output")
    parser.add_argument("--stride", help="conv/pool: 'S' or 'SH,SW'")
    parser.add_argument("--padding", help="conv: 'P' or 'PH,PW'")
    parser.add_argument("--size", type=int, help="pool: window size (default 2); lrn: channels summed over (default 5)")
    parser.add_argument("--mode", choices=["max", "avg"], default="max", help="pool: max or average")
    parser.add_argument("--example", help="run one named deck example (conv: basic, padding, stride, channels, "
                                          "one-by-one, edge; "
                                          "pool: ramp, stride2)")
    parser.add_argument("--gamma", type=float, help="bn: scale gamma (default 1)")
    parser.add_argument("--bn-shift", type=float, help="bn: shift beta of y = gamma * x_hat + beta (default 0)")
    parser.add_argument("--lrn-beta", type=float, help="lrn: exponent beta (default 0.75, as in AlexNet)")
    parser.add_argument("--beta", type=float, help=argparse.SUPPRESS)  # deprecated: meant either of the two above
    parser.add_argument("--alpha", type=float, default=1e-4, help="lrn: alpha (paper: 1e-4)")
    parser.add_argument("--k", type=float, default=2.0, help="lrn: k (paper: 2)")
    parser.add_argument("--p", type=float, default=0.5, help="dropout: probability of dropping a unit")
    parser.add_argument("--hidden", type=int, default=2, help="rnn/lstm/gru: hidden units")
    parser.add_argument("--seed", type=int, default=0, help="dropout mask / recurrent weights")
    parser.add_argument("--json", action="store_true", help="print steps and numbers as JSON")
    parser.add_argument("--web", action="store_true",
                        help="serve the interactive page (convolution and pooling playground; with --checkpoint, "
                             "a walk through that model) and open it in a browser")
    parser.add_argument("--checkpoint", action="append", metavar="CKPT",
                        help="--web: a checkpoint (PATH or NAME=PATH) to walk through; may be repeated")
    parser.add_argument("--host", default="127.0.0.1", help="--web: address to bind")
    parser.add_argument("--port", type=int, default=8010, help="--web: port (default 8010)")
    parser.add_argument("--no-browser", action="store_true", help="--web: print the address, open no browser")
    parser.set_defaults(func=run)


def _pair_option(text: str | None, default: int, name: str) -> tuple[int, int]:
    if text is None:
        return default, default
    try:
        values = [int(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise ConfigError(f"--{name} takes 'N' or 'N,M' with whole numbers, got '{text}'") from None
    if len(values) not in (1, 2):
        raise ConfigError(f"--{name} takes 'N' or 'N,M', got '{text}'")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _matrix(text: str, name: str):
    from ..reference.explain import parse_matrix

    try:
        return parse_matrix(text)
    except ValueError as error:
        raise ConfigError(f"--{name}: {error}") from None


def _pick(examples: dict, name: str | None) -> list[dict]:
    if name is None:
        return list(examples.values())
    if name not in examples:
        from ..errors import unknown_name

        raise unknown_name("example", name, list(examples))
    return [examples[name]]


def _beta_options(args) -> tuple[float | None, float | None]:
    """(--bn-shift, --lrn-beta). The old --beta meant the one or the other by topic: it still works for
    bn and lrn, with a warning naming the option to use."""
    shift, exponent = getattr(args, "bn_shift", None), getattr(args, "lrn_beta", None)
    beta = getattr(args, "beta", None)
    if beta is None:
        return shift, exponent
    if args.topic not in ("bn", "lrn"):
        raise ConfigError("--beta is gone: use --bn-shift (batch norm's shift) or --lrn-beta (LRN's exponent)")
    new = "--bn-shift" if args.topic == "bn" else "--lrn-beta"
    if (shift if args.topic == "bn" else exponent) is not None:
        raise ConfigError(f"give {new} only; --beta is its deprecated name")
    print(f"cnnlab explain: warning: --beta is deprecated; for {args.topic} use {new} "
          "(--bn-shift: batch norm's shift, --lrn-beta: LRN's exponent)", file=sys.stderr)
    return (beta, exponent) if args.topic == "bn" else (shift, beta)


def explanations(args) -> list:
    """The explanations asked for by the command-line arguments."""
    import numpy as np

    from ..reference import explain as ex

    topic = args.topic
    shift, exponent = _beta_options(args)
    if topic == "conv":
        if args.input is None:
            if args.kernel or args.stride or args.padding:
                raise ConfigError("give --input together with --kernel, --stride or --padding")
            return [ex.explain_conv(**e) for e in _pick(ex.CONV_EXAMPLES, args.example)]
        if args.kernel is None:
            raise ConfigError("explain conv with --input also needs --kernel")
        return [ex.explain_conv(_matrix(args.input, "input"), _matrix(args.kernel, "kernel"),
                                _pair_option(args.stride, 1, "stride"), _pair_option(args.padding, 0, "padding"))]
    if topic == "pool":
        if args.input is None:
            return [ex.explain_pool(**e, mode=args.mode) for e in _pick(ex.POOL_EXAMPLES, args.example)]
        size = args.size or 2
        return [ex.explain_pool(_matrix(args.input, "input"), size, _pair_option(args.stride, size, "stride"), args.mode)]
    if topic == "fc":
        if args.input is None:
            return [ex.explain_fc(**ex.FC_EXAMPLE)]
        if args.weights is None:
            raise ConfigError("explain fc with --input also needs --weights")
        bias = _matrix(args.bias, "bias").reshape(-1) if args.bias else None
        return [ex.explain_fc(_matrix(args.input, "input"), _matrix(args.weights, "weights"), bias)]
    if topic == "bn":
        x = _matrix(args.input, "input") if args.input else np.array([[1.0, 2], [3, 6], [5, 10], [7, 14]])
        return [ex.explain_bn(x, args.gamma, shift)]
    if topic == "lrn":
        a = _matrix(args.input, "input").reshape(-1) if args.input else np.array([10.0, 20, 30, 40, 50])
        return [ex.explain_lrn(a, args.size or 5, args.alpha, 0.75 if exponent is None else exponent, args.k)]
    if topic == "dropout":
        if not 0 <= args.p < 1:
            raise ConfigError(f"--p must be in [0, 1), got {args.p}")
        x = _matrix(args.input, "input") if args.input else np.arange(1.0, 9).reshape(2, 4)
        return [ex.explain_dropout(x, args.p, args.seed)]
    if args.hidden < 1:
        raise ConfigError("--hidden must be at least 1")
    xs = _matrix(args.input, "input") if args.input else np.array([[1.0, 0.0], [0.0, 1.0], [0.5, -0.5]])
    return [ex.explain_recurrent(topic, xs, args.hidden, args.seed)]


def serve_page(args) -> int:
    """``--web``: the explainer page, with the given checkpoints' walk, until Ctrl-C."""
    import threading
    import webbrowser

    import uvicorn

    from ..serve.config import ServeConfig
    from ..serve.server import check_address, uvicorn_config

    config = ServeConfig(host=args.host, port=args.port)
    check_address(config.host, config.port)
    if args.checkpoint:
        from ..serve.app import build_app

        app = build_app(args.checkpoint, config)
    else:
        from ..serve.explainer import playground_app

        app = playground_app()
    url = f"http://{config.host}:{config.port}/explain"
    print(f"explainer page: {url}  (Ctrl-C stops)", flush=True)
    if not args.no_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    uvicorn.Server(uvicorn_config(app, config, log_level="warning")).run()
    return 0


def run(args) -> int:
    if args.web:
        return serve_page(args)
    if args.topic is None:
        raise ConfigError(f"name a topic ({', '.join(TOPICS)}) or give --web")
    results = explanations(args)
    if args.json:
        print_json([e.as_dict() for e in results] if len(results) > 1 else results[0].as_dict())
    else:
        print("\n\n".join(e.text() for e in results))
    return 0
