"""``cnnlab reference``: the NumPy engine from the command line.

* ``cnnlab reference train --data DIR``: train LeNet-5 with NumPy alone on an IDX image/label pair
  (the MNIST sample: first 8,000 train, last 2,000 test) and report test accuracy and speed.
* ``cnnlab reference check``: run each op and LeNet-5 in both engines (float64, same weights and
  inputs) and print the largest difference of outputs and gradients; exit 1 if any exceeds 1e-8.
"""

from __future__ import annotations

import sys

import numpy as np

from . import add_verb
from ..console import print_json, print_table

TOLERANCE = 1e-8


def register(subparsers) -> None:
    from ..reference.train import TrainConfig

    parser = add_verb(subparsers, "reference", help="the NumPy reference engine: train with it, check it against torch",
                      example="cnnlab reference train --data ../shared/data/mnist-10k")
    inner = parser.add_subparsers(dest="action", metavar="ACTION")

    train = add_verb(inner, "train", help="train LeNet-5 with NumPy alone on IDX data",
                     example="cnnlab reference train --data ../shared/data/mnist-10k --epochs 10 --json")
    train.add_argument("--data", required=True, metavar="DIR",
                       help="folder with images-idx3-ubyte.gz and labels-idx1-ubyte.gz (or train-*-ubyte.gz)")
    train.add_argument("--arch", default="lenet5", choices=["lenet5", "lenet5_modern"])
    defaults = TrainConfig()
    train.add_argument("--epochs", type=int, default=defaults.epochs)
    train.add_argument("--batch-size", type=int, default=defaults.batch_size)
    train.add_argument("--lr", type=float, default=defaults.lr)
    train.add_argument("--optimizer", default=defaults.optimizer, choices=["adam", "sgd"])
    train.add_argument("--schedule", default=defaults.schedule, choices=["cosine", "step"],
                       help="learning rate: half cosine to zero, or steps of --lr-decay")
    train.add_argument("--lr-decay-every", type=int, default=defaults.lr_decay_every,
                       help="multiply the learning rate by --lr-decay every N epochs (0: never)")
    train.add_argument("--lr-decay", type=float, default=defaults.lr_decay)
    train.add_argument("--shift", type=int, default=defaults.shift, help="random translation in pixels (0: none)")
    train.add_argument("--threads", type=int, help="threads for NumPy's BLAS (default: as loaded)")
    train.add_argument("--train-count", type=int, default=8000, help="the first N examples train")
    train.add_argument("--test-count", type=int, default=2000, help="the last N examples test")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--save", metavar="FILE.safetensors", help="write the trained weights (torch's parameter names)")
    train.add_argument("--json", action="store_true")
    train.set_defaults(func=run_train)

    check = add_verb(inner, "check", help="compare every op and LeNet-5 with torch in float64",
                     example="cnnlab reference check --json")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=run_check)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def run_train(args) -> int:
    from ..reference.train import TrainConfig, load_idx_pair, save_weights, split, train

    config = TrainConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         optimizer=args.optimizer, schedule=args.schedule, lr_decay_every=args.lr_decay_every,
                         lr_decay=args.lr_decay, shift=args.shift, seed=args.seed)
    config.validate()
    if args.threads is not None:
        from ..reference.threads import set_blas_threads

        set_blas_threads(args.threads)
    images, labels = load_idx_pair(args.data)
    (x_train, y_train), (x_test, y_test) = split(images, labels, args.train_count, args.test_count)

    def progress(figures: dict) -> None:
        if not args.json:
            print(f"epoch {figures['epoch']:>3}  loss {figures['loss']:.4f}  test accuracy {figures['test_accuracy']:.4f}"
                  f"  {figures['seconds']:.1f}s  {figures['images_per_second']:.0f} images/s", flush=True)

    result = train(x_train, y_train, x_test, y_test, config, progress)
    saved = None
    if args.save:
        saved = str(save_weights(result.model, args.save, {"arch": args.arch, "mean": str(result.mean),
                                                           "std": str(result.std)}))
    summary = {"arch": args.arch, "train_examples": len(x_train), "test_examples": len(x_test),
               "test_accuracy": result.test_accuracy, "seconds": sum(h["seconds"] for h in result.history),
               "mean": result.mean, "std": result.std, "history": result.history, "saved": saved}
    if args.json:
        print_json(summary)
    else:
        print(f"test accuracy {result.test_accuracy:.4f} on {len(x_test)} images after {args.epochs} epochs"
              f" ({summary['seconds']:.0f}s of training)" + (f"; weights in {saved}" if saved else ""))
    return 0


# --- parity check ---------------------------------------------------------------------------------

def _max_diff(mine, theirs) -> float:
    return float(np.max(np.abs(np.asarray(mine) - np.asarray(theirs)))) if np.size(mine) else 0.0


def _op_cases(rng: np.random.Generator):
    """(name, torch function, reference forward, reference backward, inputs) for each op."""
    import torch.nn.functional as TF

    from ..reference import functional as F

    x = rng.standard_normal((2, 4, 9, 8))
    w = rng.standard_normal((6, 2, 3, 3))
    wt = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(6)
    conv = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    yield ("conv2d (stride, padding, dilation, groups)", lambda a, k, c: TF.conv2d(a, k, c, **conv),
           lambda a, k, c: F.conv2d(a, k, c, **conv), lambda g, a, k, c: F.conv2d_backward(g, a, k, **conv), (x, w, b))
    yield ("conv2d sliding window", lambda a, k: TF.conv2d(a, k, None, **conv),
           lambda a, k: F.conv2d_sliding(a, k, None, **conv),
           lambda g, a, k: F.conv2d_sliding_backward(g, a, k, **conv)[:2], (x, w))
    yield ("conv_transpose2d", lambda a, k: TF.conv_transpose2d(a, k, None, 2, 1, 1),
           lambda a, k: F.conv_transpose2d(a, k, None, 2, 1, 1),
           lambda g, a, k: F.conv_transpose2d_backward(g, a, k, 2, 1, has_bias=False)[:2], (x, wt))
    yield ("max_pool2d 3x3/2 pad 1", lambda a: TF.max_pool2d(a, 3, 2, 1), lambda a: F.max_pool2d(a, 3, 2, 1),
           lambda g, a: (F.max_pool2d_backward(g, a, 3, 2, 1),), (x,))
    yield ("avg_pool2d 2x2/2", lambda a: TF.avg_pool2d(a, 2), lambda a: F.avg_pool2d(a, 2),
           lambda g, a: (F.avg_pool2d_backward(g, a.shape, 2),), (x,))
    yield ("batch_norm (training)", lambda a, gm, bt: TF.batch_norm(a, None, None, gm, bt, True),
           lambda a, gm, bt: F.batch_norm(a, None, None, gm, bt, True),
           lambda g, a, gm, bt: F.batch_norm_backward(g, a, gm), (x, gamma, beta))
    yield ("local_response_norm (AlexNet)", lambda a: TF.local_response_norm(a, 5, 5e-2, 0.75, 2.0),
           lambda a: F.local_response_norm(a, 5, 1e-2, 0.75, 2.0),
           lambda g, a: (F.local_response_norm_backward(g, a, 5, 1e-2, 0.75, 2.0),), (x * 5,))
    xl, wl, bl = rng.standard_normal((5, 7)), rng.standard_normal((3, 7)), rng.standard_normal(3)
    yield ("linear", TF.linear, F.linear, lambda g, a, k, c: F.linear_backward(g, a, k), (xl, wl, bl))
    yield ("softmax", lambda a: TF.softmax(a, 1), lambda a: F.softmax(a, 1),
           lambda g, a: (F.softmax_backward(g, F.softmax(a, 1), 1),), (xl,))


def parity_report(seed: int = 0) -> list[dict]:
    """Largest absolute difference between the engines for each op and for LeNet-5 (float64)."""
    import torch

    from ..reference import functional as F
    from ..reference import nn as rnn
    from ..registry import create_model

    rng = np.random.default_rng(seed)
    rows = []
    for name, torch_fn, forward, backward, inputs in _op_cases(rng):
        tensors = [torch.tensor(a, requires_grad=True) for a in inputs]
        out = torch_fn(*tensors)
        grad_out = rng.standard_normal(tuple(out.shape))
        out.backward(torch.tensor(grad_out))
        grads = backward(grad_out, *inputs)
        rows.append({"name": name, "output": _max_diff(forward(*inputs), out.detach().numpy()),
                     "gradient": max(_max_diff(g, t.grad.numpy()) for g, t in zip(grads, tensors))})
    for arch in ("lenet5", "lenet5_modern"):
        torch.manual_seed(seed)
        twin = create_model(arch).double().train()
        model = getattr(rnn, arch)()
        model.load_state_dict(twin.state_dict())
        x = rng.standard_normal((8, 1, 28, 28))
        labels = rng.integers(0, 10, 8)
        logits_t = twin(torch.tensor(x))
        torch.nn.functional.cross_entropy(logits_t, torch.tensor(labels)).backward()
        logits = model(x)
        model.backward(F.cross_entropy_backward(logits, labels))
        torch_params = dict(twin.named_parameters())
        rows.append({"name": f"{arch} (logits, parameter gradients)", "output": _max_diff(logits, logits_t.detach().numpy()),
                     "gradient": max(_max_diff(p.grad, torch_params[n].grad.numpy()) for n, p in model.named_parameters())})
    for row in rows:
        row["ok"] = row["output"] <= TOLERANCE and row["gradient"] <= TOLERANCE
    return rows


def run_check(args) -> int:
    rows = parity_report(args.seed)
    ok = all(row["ok"] for row in rows)
    if args.json:
        print_json({"tolerance": TOLERANCE, "ok": ok, "checks": rows})
    else:
        print_table([(r["name"], f"{r['output']:.1e}", f"{r['gradient']:.1e}", "ok" if r["ok"] else "DIFFERS")
                     for r in rows], ["float64, reference vs torch", "max |output diff|", "max |gradient diff|", ""],
                    title="cnnlab.reference against torch", justify_right=["max |output diff|", "max |gradient diff|"])
        if not ok:
            print(f"some differences exceed {TOLERANCE}", file=sys.stderr)
    return 0 if ok else 1
