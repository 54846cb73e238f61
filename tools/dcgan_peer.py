"""The peer of ``cnnlab train dcgan``: the DCGAN recipe of PyTorch's official examples
(``pytorch/examples``, ``dcgan/main.py``), written out here in plain torch and adapted from 64 x 64 to
32 x 32 by dropping one up-sampling layer from the generator and one strided convolution from the
discriminator. 28 x 28 images are padded with 2 black pixels to 32 x 32 (and cropped back for
measuring), so that both recipes see the same pixels.

What the recipe fixes, kept as it is: the generator starts with a 4 x 4 transposed convolution of the
1 x 1 latent (``nz`` 100), channels ``ngf * 4, ngf * 2, ngf``, tanh; the discriminator ends in a
4 x 4 convolution and a sigmoid, trained with ``BCELoss``; weights N(0, 0.02), batch-norm scales
N(1, 0.02); Adam 2e-4, betas (0.5, 0.999); each step updates D on a real and a fake batch, then G
on the same fake batch with "real" labels; samples are drawn with the networks in training mode.

    python tools/dcgan_peer.py --data fashion-mnist --limit-train 10000 --epochs 4 --width 16 --out runs/peer
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def generator(nz: int, ngf: int, nc: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 4, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),  # 4 x 4
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),  # 8 x 8
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),  # 16 x 16
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())  # 32 x 32


def discriminator(ndf: int, nc: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),  # 16 x 16
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),  # 8 x 8
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, True),  # 4 x 4
        nn.Conv2d(ndf * 4, 1, 4, 1, 0, bias=False), nn.Sigmoid())  # 1 x 1


def init_weights(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def train(images: torch.Tensor, *, epochs: int, batch_size: int = 64, width: int = 64, nz: int = 100,
          seed: int = 0, log=print) -> tuple[nn.Module, float]:
    """Train on uint8 N x C x 28 x 28 ``images``; returns the generator and the training seconds."""
    torch.manual_seed(seed)
    nc = images.shape[1]
    x_all = F.pad(images.float() / 127.5 - 1, (2, 2, 2, 2), value=-1.0)  # [-1, 1], 32 x 32, black border
    g, d = generator(nz, width, nc), discriminator(width, nc)
    g.apply(init_weights), d.apply(init_weights)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    start = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(len(x_all))
        for i in range(0, len(order), batch_size):
            real = x_all[order[i:i + batch_size]]
            n = len(real)
            d.zero_grad()
            err_real = F.binary_cross_entropy(d(real).view(-1), torch.ones(n))
            fake = g(torch.randn(n, nz, 1, 1))
            err_fake = F.binary_cross_entropy(d(fake.detach()).view(-1), torch.zeros(n))
            (err_real + err_fake).backward()
            opt_d.step()
            g.zero_grad()
            err_g = F.binary_cross_entropy(d(fake).view(-1), torch.ones(n))
            err_g.backward()
            opt_g.step()
        log(f"peer epoch {epoch + 1}: D {float(err_real + err_fake):.4f}  G {float(err_g):.4f}")
    return g, time.perf_counter() - start


@torch.no_grad()
def sample(g: nn.Module, n: int, *, nz: int = 100, seed: int = 0) -> torch.Tensor:
    """uint8 N x C x 28 x 28 samples, drawn in training mode as the recipe does, cropped back to 28 x 28."""
    z = torch.randn(n, nz, generator=torch.Generator().manual_seed(seed)).view(n, nz, 1, 1)
    out = torch.cat([g(z[i:i + 500]) for i in range(0, n, 500)])[:, :, 2:30, 2:30]
    return ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def main() -> None:
    from cnnlab.data import load_dataset

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="fashion-mnist-mini")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--limit-train", type=int, default=0)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/dcgan-peer")
    args = p.parse_args()
    train_set = load_dataset(args.data, "train", args.data_dir)
    images = train_set.images[:args.limit_train or None]
    g, seconds = train(images, epochs=args.epochs, batch_size=args.batch_size, width=args.width, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(g.state_dict(), out / "generator.pt")
    (out / "result.json").write_text(json.dumps({"seconds": seconds, **vars(args)}))


if __name__ == "__main__":
    main()
