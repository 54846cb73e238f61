"""``cnnlab weights``: publish a finished run as shipped weights (MODEL@TAG), or verify the shipped files."""

from __future__ import annotations

from pathlib import Path

from . import add_verb
from ..console import print_json, print_table


def register(subparsers) -> None:
    p = add_verb(subparsers, "weights", help="publish a run as shipped pretrained weights, or verify the shipped ones",
                 example="cnnlab weights publish runs/resnet20-mnist --tag mnist "
                         "--recipe 'cnnlab train resnet20 --data mnist-10k --recipe fast --epochs 3'")
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    pub = sub.add_parser("publish", help="copy a run's last checkpoint into the pretrained folder, evaluated and "
                                         "recorded with its SHA-256 (create_model(MODEL, pretrained=TAG) then loads it)")
    pub.add_argument("run", metavar="RUN_DIR", help="a finished classification run")
    pub.add_argument("--tag", required=True, help="the weights' name, by convention the dataset (fashion-mnist, mnist)")
    pub.add_argument("--recipe", default="", help="the command that trained the run (recorded; default: rebuilt "
                                                  "from the run's settings)")
    pub.add_argument("--full-precision", action="store_true", help="keep float32 tensors (default: float16, half "
                                                                    "the size; the accuracy is measured on the copy)")
    pub.add_argument("--out", default="", help="pretrained folder (default: the package's own)")
    pub.add_argument("--data-dir", default="", help="data root for the test split")
    pub.add_argument("--json", action="store_true")
    ver = sub.add_parser("verify", help="check every shipped weight file against its recorded SHA-256 and size")
    ver.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _recipe(run_dir: Path) -> str:
    """``cnnlab train`` with the run's model, data, recipe-relevant settings and seed."""
    from ..train.checkpoint import read_meta

    meta = read_meta(run_dir)
    c = meta.config
    parts = [f"cnnlab train {meta.arch}", f"--data {meta.dataset}", f"--epochs {meta.epoch}"]
    for key in ("optimizer", "lr", "batch_size", "schedule", "weight_decay", "augment", "seed"):
        if c.get(key) not in (None, ""):
            parts.append(f"--{key.replace('_', '-')} {c[key]}")
    return " ".join(parts)


def run(args) -> int:
    from .. import weights

    if args.action == "verify":
        rows = []
        for row in weights.pretrained_table():
            folder = weights.pretrained_folder(row["model"], row["tag"])  # raises on a SHA-256 mismatch
            size = sum(f.stat().st_size for f in folder.iterdir())
            rows.append({"model": row["model"], "tag": row["tag"], "bytes": size, "sha256": "ok",
                         "size_ok": size == row["bytes"]})
        if args.json:
            print_json({"verified": rows, "total_bytes": sum(r["bytes"] for r in rows)})
        else:
            print_table([[r["model"], r["tag"], f"{r['bytes']:,}", "ok" if r["size_ok"] else "SIZE DIFFERS"]
                         for r in rows], ["model", "tag", "bytes", "SHA-256 and size"], justify_right=["bytes"])
            print(f"{len(rows)} weight files, {sum(r['bytes'] for r in rows) / 1e6:.2f} MB in all")
        return 0 if all(r["size_ok"] for r in rows) else 1
    run_dir = Path(args.run)
    out = Path(args.out) if args.out else weights.PRETRAINED_DIR
    entry = weights.publish(run_dir, args.tag, recipe=args.recipe or _recipe(run_dir), data_dir=args.data_dir or None,
                            half=not args.full_precision, out=out)
    if args.json:
        print_json(entry)
        return 0
    print(f"published {entry['folder']} into {out}: test accuracy {entry['test_accuracy']:.2%} on "
          f"{entry['test_images']:,} images, {entry['bytes'] / 1e6:.2f} MB (SHA-256 recorded)")
    return 0
