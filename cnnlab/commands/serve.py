"""``cnnlab serve``: classify images over HTTP (JSON API + web page) with one or more checkpoints."""

from __future__ import annotations

from . import add_verb


def register(subparsers) -> None:
    p = add_verb(subparsers, "serve", help="serve checkpoints over HTTP: JSON API, web page, micro-batching",
                 example="cnnlab serve runs/lenet5 digits=runs/mnist --port 8000   # then open http://127.0.0.1:8000/",
                 description="Serve checkpoints over HTTP. API: POST /v1/classify, POST /v1/classify/batch, "
                             "POST /v1/cam, GET /v1/models, GET /livez, GET /readyz, /docs, /openapi.json; "
                             "web page at /. Give a checkpoint as PATH or NAME=PATH.")
    p.add_argument("checkpoints", metavar="CKPT", nargs="*", help="checkpoint folder, or NAME=folder; MODEL@TAG "
                   "(shipped weights) or MODEL@FILE (a torchvision/timm state dict)")
    p.add_argument("--pretrained", metavar="TAG", help="also serve the best shipped weights of TAG (fashion-mnist, "
                   "mnist); see 'cnnlab list --pretrained'")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-batch", type=int, default=32, help="largest micro-batch; 1 turns batching off")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="longest a request waits for a batch to fill")
    p.add_argument("--queue-size", type=int, default=256, help="waiting requests per model before 503")
    p.add_argument("--max-body-mb", type=float, default=10.0, help="largest request body (413 beyond)")
    p.add_argument("--max-pixels", type=int, default=4096 * 4096, help="largest image, in pixels (413 beyond)")
    p.add_argument("--max-aspect", type=float, default=32.0, help="longest side over shortest side of an image (413 beyond)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds a request may take (504 beyond)")
    p.add_argument("--header-timeout", type=float, default=5.0,
                   help="seconds a connection has to send its request line and headers, then it is closed")
    p.add_argument("--keep-alive", type=float, default=5.0, help="seconds an idle connection stays open between requests")
    p.add_argument("--max-connections", type=int, default=1000,
                   help="open connections; beyond, 503 at once (also kept below the open-file limit)")
    p.add_argument("--threads", type=int, default=0, help="torch threads for inference (0: measured at start-up)")
    p.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                   help="memory layout for inference (auto: measured at start-up)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "auto"],
                   help="inference precision (auto: bf16 where native, if measured faster)")
    p.add_argument("--no-plan", action="store_true",
                   help="measure nothing at start-up: torch's threads, NCHW, the given precision")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=run)


def config_from_args(args):
    from ..serve.config import ServeConfig

    return ServeConfig(host=args.host, port=args.port, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                       queue_size=args.queue_size, max_body_bytes=int(args.max_body_mb * 1024 * 1024),
                       max_pixels=args.max_pixels, max_aspect_ratio=args.max_aspect, request_timeout_s=args.timeout,
                       header_timeout_s=args.header_timeout, keep_alive_s=args.keep_alive,
                       max_connections=args.max_connections, threads=args.threads,
                       channels_last={"auto": None, "on": True, "off": False}[args.channels_last],
                       precision=args.precision, plan=not args.no_plan)


def checkpoint_specs(args) -> list[str]:
    """The checkpoints to serve: CKPT arguments, then ``--pretrained TAG`` as ``NAME=MODEL@TAG``."""
    specs = list(args.checkpoints)
    if args.pretrained:
        from ..weights import best_for

        specs.append(f"{args.pretrained}={best_for(args.pretrained)}@{args.pretrained}")
    if not specs:
        from ..errors import ConfigError

        raise ConfigError("serve needs a checkpoint (CKPT) or --pretrained TAG")
    return specs


def run(args) -> int:
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "python_multipart") if importlib.util.find_spec(m) is None]
    if missing:
        from ..errors import CnnlabError

        raise CnnlabError(f"serving needs FastAPI, uvicorn and python-multipart ({missing[0]} is missing): "
                          "pip install 'cnnlab[serve]'")
    from ..serve.server import run_server

    config = config_from_args(args)
    run_server(checkpoint_specs(args), config, device=args.device, log_level=args.log_level)
    return 0
