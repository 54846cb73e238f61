"""``cnnlab data``: download, verify and describe datasets."""

from __future__ import annotations

from pathlib import Path

from . import add_verb
from ..console import print_json, print_table


def register(subparsers) -> None:
    p = add_verb(subparsers, "data", help="download, verify or describe a dataset",
                 example="cnnlab data info fashion-mnist --data-dir ~/data")
    p.add_argument("action", choices=["download", "verify", "info"])
    p.add_argument("dataset", help="dataset name or folder")
    p.add_argument("--data-dir", help="data root (default: $CNNLAB_DATA or the user cache)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..data import DATASETS, ensure_files, load_dataset
    from ..data.datasets import dataset_folder
    from ..data.download import sha256_of
    from ..data.idx import read_idx
    from ..errors import DataError

    if args.action == "info":
        # Describing never downloads (nor creates folders): 'cnnlab data download' does that.
        info = {split: load_dataset(args.dataset, split, args.data_dir, download_missing=False).describe()
                for split in ("train", "test")}
        if args.json:
            print_json(info)
        else:
            for split, d in info.items():
                print(f"{d['name']} {split}: {d['size']} images of {'x'.join(map(str, d['input_size']))}, "
                      f"{len(d['classes'])} classes, mean {d['mean']} std {d['std']}")
            print_table([(c, info["train"]["per_class"][i], info["test"]["per_class"][i])
                         for i, c in enumerate(info["train"]["classes"])], ["class", "train", "test"],
                        justify_right=["train", "test"])
        return 0
    if args.dataset not in DATASETS:
        raise DataError(f"'{args.dataset}' is not a named dataset ({', '.join(DATASETS)}); only those can be "
                        f"{'downloaded' if args.action == 'download' else 'verified'}")
    spec = DATASETS[args.dataset]
    if args.action == "download":
        folder = ensure_files(spec, args.data_dir)
        print_json({"dataset": spec.name, "folder": str(folder)}) if args.json else print(f"{spec.name}: {folder}")
        return 0
    folder = dataset_folder(spec, args.data_dir)
    rows, bad = [], 0
    for name in spec.all_files():
        path = Path(folder) / name
        if not path.is_file():
            rows.append({"file": name, "status": "missing"})
            bad += 1
            continue
        try:
            shape = list(read_idx(path).shape)
            status = "ok"
        except DataError as e:
            shape, status = None, f"invalid: {e}"
            bad += 1
        digest = sha256_of(path)
        official = spec.sha256.get(name)
        rows.append({"file": name, "status": status, "shape": shape, "sha256": digest,
                     "official_checksum": None if official is None else digest == official})
    if args.json:
        print_json({"dataset": spec.name, "folder": str(folder), "files": rows})
    else:
        print(f"{spec.name} in {folder}")
        print_table([(r["file"], r["status"], "x".join(map(str, r.get("shape") or [])),
                      {None: "-", True: "matches", False: "differs"}[r.get("official_checksum")]) for r in rows],
                    ["file", "status", "shape", "official SHA-256"])
    return 1 if bad else 0
