"""The figures of docs/generation.md: cnnlab's DCGAN and class-conditional GAN against the PyTorch
examples' DCGAN recipe (tools/dcgan_peer.py), the same images, epochs, batch size and width, measured
in one feature space (a cnnlab LeNet-5 trained on the same data).

    python tools/generation_results.py --data-dir ../shared/data --limit-train 10000 --epochs 4 --width 16
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit-train", type=int, default=10000)
    p.add_argument("--limit-test", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/generation-results")
    p.add_argument("--images", default="docs/images/generation")
    p.add_argument("--models", default="dcgan,cgan", help="cnnlab models to train beside the peer")
    args = p.parse_args()
    torch.set_num_threads(1)

    import dcgan_peer

    from cnnlab.data import load_dataset
    from cnnlab.generation import FeatureSpace, frechet_distance, image_grid, kernel_inception_distance
    from cnnlab.generation.grids import save_png
    from cnnlab.system import hardware
    from cnnlab.tasks import get_task
    from cnnlab.tasks.generate import generate_images, sample_latents
    from cnnlab.train import train
    from cnnlab.train.checkpoint import load_checkpoint

    out, pictures = Path(args.out), Path(args.images)
    common = dict(data=args.data, data_dir=args.data_dir or "", limit_train=args.limit_train,
                  limit_test=args.limit_test, threads=1, plan=False, seed=args.seed)
    start = time.perf_counter()
    clf = train(model="lenet5_modern", epochs=3, batch_size=128, optimizer="sgd", lr=0.1, schedule="onecycle",
                out=str(out / "classifier"), **common)
    classifier_seconds = time.perf_counter() - start
    space = FeatureSpace(clf.run_dir)
    test = load_dataset(args.data, "test", args.data_dir or None).subset(slice(0, args.limit_test))
    real = space(test.images)
    rows = []

    def measure(name: str, fake: torch.Tensor, seconds: float, extra: dict | None = None) -> None:
        f = space(fake)
        kid, kid_std = kernel_inception_distance(real, f, subsets=10, subset_size=min(1000, len(f) // 2))
        rows.append({"model": name, "fid": frechet_distance(real, f), "kid": kid, "kid_std": kid_std,
                     "train_seconds": seconds, **(extra or {})})
        save_png(image_grid(fake[:64], columns=8), pictures / f"{name}.png")
        print(rows[-1], flush=True)

    gan_settings = dict(epochs=args.epochs, batch_size=args.batch_size, gan_width=args.width,
                        feature_model=str(clf.run_dir), **common)
    for model in args.models.split(","):
        result = train(model=model, out=str(out / model), **gan_settings)
        gan = load_checkpoint(result.run_dir).model
        classes = test.labels if gan.conditional else None
        fake = generate_images(gan, sample_latents(gan, len(test), 0), classes)
        extra = {}
        if gan.conditional:
            extra["class_acc"] = float((space.classify(fake) == test.labels).float().mean())
            extra["real_class_acc"] = float((space.classify(test.images) == test.labels).float().mean())
            for sneaker in [c for c in ("Sneaker",) if c in test.class_names]:  # Fashion-MNIST's class
                k = test.class_names.index(sneaker)
                shoes = generate_images(gan, sample_latents(gan, 64, 5), torch.full((64,), k))
                extra["sneaker_acc"] = float((space.classify(shoes) == k).float().mean())
                save_png(image_grid(shoes, columns=8), pictures / "cgan-sneaker.png")
        measure(model, fake, sum(h["train_seconds"] for h in result.history), extra)

    train_set = load_dataset(args.data, "train", args.data_dir or None)
    g, seconds = dcgan_peer.train(train_set.images[:args.limit_train], epochs=args.epochs,
                                  batch_size=args.batch_size, width=args.width, seed=args.seed)
    measure("pytorch-examples-dcgan", dcgan_peer.sample(g, len(test), seed=0), seconds)
    report = {"rows": rows, "settings": vars(args), "classifier_seconds": classifier_seconds,
              "classifier_acc": clf.final.get("test_acc"), "hardware": hardware(),
              "torch_threads": torch.get_num_threads()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
