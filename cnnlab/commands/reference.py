"""``cnnlab reference``: the NumPy engine from the command line.

* ``cnnlab reference train --data NAME_OR_DIR``: train LeNet-5 with NumPy alone on a named dataset
  (``mnist-10k``: first 8,000 train, last 2,000 test; ``fashion-mnist`` ...) or a folder with one IDX
  image/label pair, report test accuracy and speed; ``--save RUN`` writes a cnnlab checkpoint that
  ``eval``, ``predict`` and ``serve`` take.
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
                     example="cnnlab reference train --data mnist-10k --epochs 10 --save runs/lenet5-numpy")
    train.add_argument("--data", required=True, metavar="NAME_OR_DIR",
                       help="a dataset name (mnist-10k, fashion-mnist, ...) or a folder with images-idx3-ubyte.gz "
                            "and labels-idx1-ubyte.gz (or train-*-ubyte.gz)")
    train.add_argument("--data-dir", help="data root for a dataset name (default: $CNNLAB_DATA or the user cache)")
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
    train.add_argument("--save", metavar="RUN",
                       help="write the trained model as a cnnlab checkpoint folder (eval, predict and serve take it); "
                            "a name ending in .safetensors writes the bare weights (torch's parameter names)")
    train.add_argument("--json", action="store_true")
    train.set_defaults(func=run_train)

    check = add_verb(inner, "check", help="compare every op and LeNet-5 with torch in float64",
                     example="cnnlab reference check --json")
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--json", action="store_true")
    check.set_defaults(func=run_check)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def run_train(args) -> int:
    from ..reference.train import TrainConfig, save_weights, train

    config = TrainConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         optimizer=args.optimizer, schedule=args.schedule, lr_decay_every=args.lr_decay_every,
                         lr_decay=args.lr_decay, shift=args.shift, seed=args.seed)
    config.validate()
    if args.threads is not None:
        from ..reference.threads import set_blas_threads

        set_blas_threads(args.threads)
    (x_train, y_train), (x_test, y_test), data = _data(args)

    def progress(figures: dict) -> None:
        if not args.json:
            print(f"epoch {figures['epoch']:>3}  loss {figures['loss']:.4f}  test accuracy {figures['test_accuracy']:.4f}"
                  f"  {figures['seconds']:.1f}s  {figures['images_per_second']:.0f} images/s", flush=True)

    result = train(x_train, y_train, x_test, y_test, config, progress)
    saved = None
    if args.save and args.save.endswith(".safetensors"):
        saved = str(save_weights(result.model, args.save, {"arch": args.arch, "mean": str(result.mean),
                                                           "std": str(result.std)}))
    elif args.save:
        saved = str(save_as_checkpoint(result, args, data))
    summary = {"arch": args.arch, "train_examples": len(x_train), "test_examples": len(x_test),
               "test_accuracy": result.test_accuracy, "seconds": sum(h["seconds"] for h in result.history),
               "mean": result.mean, "std": result.std, "history": result.history, "saved": saved}
    if args.json:
        print_json(summary)
    else:
        print(f"test accuracy {result.test_accuracy:.4f} on {len(x_test)} images after {args.epochs} epochs"
              f" ({summary['seconds']:.0f}s of training)" + (f"; weights in {saved}" if saved else ""))
    return 0


def _data(args):
    """(train pair, test pair, dataset name and class names) from a dataset name or an IDX folder."""
    from pathlib import Path

    from ..data import DATASETS, load_dataset
    from ..reference.train import load_idx_pair, split

    if args.data in DATASETS:
        train, test = (load_dataset(args.data, s, args.data_dir) for s in ("train", "test"))
        if train.input_size[0] != 1:
            from ..errors import DataError

            raise DataError(f"the reference LeNet-5 reads greyscale images; {args.data} is {train.input_size[0]}-channel")
        pick = lambda d, n: (d.images.numpy()[:n], d.labels.numpy()[:n])  # noqa: E731
        return pick(train, args.train_count), pick(test, args.test_count), (args.data, list(train.class_names))
    images, labels = load_idx_pair(args.data)
    classes = [str(i) for i in range(int(labels.max()) + 1)]
    return (*split(images, labels, args.train_count, args.test_count), (str(Path(args.data)), classes))


def save_as_checkpoint(result, args, data):
    """The NumPy-trained LeNet-5 as a cnnlab checkpoint: the torch twin holding its weights, with metadata."""
    import torch

    from ..registry import create_model
    from ..train.checkpoint import save_checkpoint
    from ..train.meta import CheckpointMeta, Preprocessing

    name, classes = data
    kwargs = {"num_classes": len(classes), "in_channels": 1, "image_size": 28}
    twin = create_model(args.arch, **kwargs)
    twin.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float32)) if np.asarray(v).dtype.kind == "f"
                          else torch.from_numpy(np.asarray(v)) for k, v in result.model.state_dict().items()})
    meta = CheckpointMeta(arch=args.arch, arch_kwargs=kwargs, class_names=classes,
                          preprocessing=Preprocessing((1, 28, 28), (result.mean,), (result.std,)), dataset=name,
                          epoch=args.epochs, config={"engine": "cnnlab.reference", "epochs": args.epochs,
                                                     "lr": args.lr, "optimizer": args.optimizer, "seed": args.seed},
                          metrics={"test_acc": result.test_accuracy})
    return save_checkpoint(args.save, twin, meta)


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
    rows += _recurrent_rows(rng) + _loss_rows(rng) + [_dropout_row(rng)] + _optimiser_rows(rng)
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


def _recurrent_rows(rng: np.random.Generator) -> list[dict]:
    """RNN, LSTM and GRU unrolled over 5 steps and back-propagated through time, against nn.RNN/LSTM/GRU."""
    import torch

    from ..reference.recurrent import init_params, run_sequence, run_sequence_backward

    rows = []
    steps, batch, inputs, hidden = 5, 3, 4, 6
    for kind, layer_type in (("rnn", torch.nn.RNN), ("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)):
        params = init_params(kind, inputs, hidden, rng)
        layer = layer_type(inputs, hidden).double()
        layer.load_state_dict({f"{name}_l0": torch.tensor(value) for name, value in params.items()})
        xs = rng.standard_normal((steps, batch, inputs))
        grad_out = rng.standard_normal((steps, batch, hidden))
        x_t = torch.tensor(xs, requires_grad=True)
        out_t, _ = layer(x_t)
        (out_t * torch.tensor(grad_out)).sum().backward()
        outputs, _, run = run_sequence(kind, xs, params, reset_after=True)  # torch's GRU resets after W_hh h
        dxs, _, grads = run_sequence_backward(grad_out, run, params)
        gradient = max([_max_diff(dxs, x_t.grad.numpy())] + [
            _max_diff(g, getattr(layer, f"{name}_l0").grad.numpy()) for name, g in grads.items()])
        rows.append({"name": f"{kind.upper()} over 5 steps (BPTT)", "output": _max_diff(outputs, out_t.detach().numpy()),
                     "gradient": gradient})
    return rows


def _loss_rows(rng: np.random.Generator) -> list[dict]:
    """The decks' four losses: cross-entropy, MSE, L1 and the multi-class hinge, value and gradient."""
    import torch
    import torch.nn.functional as TF

    from ..reference import loss as L

    scores = rng.standard_normal((6, 5))
    labels = rng.integers(0, 5, 6)
    target = rng.standard_normal((6, 5))
    cases = [("cross-entropy loss", lambda s: TF.cross_entropy(s, torch.tensor(labels)), L.cross_entropy,
              L.cross_entropy_backward, labels),
             ("MSE loss", lambda s: TF.mse_loss(s, torch.tensor(target)), L.mse_loss, L.mse_loss_backward, target),
             ("L1 loss", lambda s: TF.l1_loss(s, torch.tensor(target)), L.l1_loss, L.l1_loss_backward, target),
             ("multi-class hinge loss", lambda s: TF.multi_margin_loss(s, torch.tensor(labels)), L.multi_margin_loss,
              L.multi_margin_loss_backward, labels)]
    rows = []
    for name, torch_loss, forward, backward, y in cases:
        s_t = torch.tensor(scores, requires_grad=True)
        value = torch_loss(s_t)
        value.backward()
        rows.append({"name": name, "output": abs(float(forward(scores, y)) - float(value.detach())),
                     "gradient": _max_diff(backward(scores, y), s_t.grad.numpy())})
    return rows


def _dropout_row(rng: np.random.Generator) -> dict:
    """Inverted dropout: torch's mask, read off its output, gates and scales both directions alike."""
    import torch
    import torch.nn.functional as TF

    from ..reference.dense import dropout_backward

    x = rng.standard_normal((8, 16)) + 3.0  # no zero inputs, so the mask is visible in the output
    x_t = torch.tensor(x, requires_grad=True)
    out_t = TF.dropout(x_t, 0.4, training=True)
    grad_out = rng.standard_normal(x.shape)
    out_t.backward(torch.tensor(grad_out))
    mask = (out_t.detach().numpy() != 0) / (1 - 0.4)  # kept units scaled by 1 / (1 - p)
    return {"name": "dropout p=0.4 (training)", "output": _max_diff(x * mask, out_t.detach().numpy()),
            "gradient": _max_diff(dropout_backward(grad_out, mask), x_t.grad.numpy())}


def _optimiser_rows(rng: np.random.Generator) -> list[dict]:
    """Five steps of SGD (momentum, Nesterov, weight decay) and Adam on the same gradients as torch.optim."""
    import torch

    from ..reference.optim import SGD, Adam

    class Param:
        def __init__(self, data):
            self.data, self.grad = data.copy(), None

    start = rng.standard_normal((4, 3))
    gradients = [rng.standard_normal((4, 3)) for _ in range(5)]
    rows = []
    for name, ours, theirs in (
            ("SGD momentum 0.9, Nesterov, weight decay (5 steps)",
             lambda p: SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4),
             lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)),
            ("Adam (5 steps)", lambda p: Adam([p], lr=0.01), lambda p: torch.optim.Adam([p], lr=0.01))):
        mine, p_t = Param(start), torch.tensor(start, requires_grad=True)
        opt_mine, opt_t = ours(mine), theirs(p_t)
        for g in gradients:
            mine.grad = g.copy()
            p_t.grad = torch.tensor(g)
            opt_mine.step()
            opt_t.step()
        rows.append({"name": name, "output": _max_diff(mine.data, p_t.detach().numpy()), "gradient": 0.0})
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
