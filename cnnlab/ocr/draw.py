"""The CTC alignment over a line: per column, the most likely class (blank drawn as a dot) under the image."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, ImageDraw


def alignment_picture(images: torch.Tensor, probs: torch.Tensor, alphabet: Sequence[str], texts: Sequence[str],
                      read: Sequence[str], path: Path, *, scale: int = 3) -> Path:
    """For each line (uint8 N x 1 x H x W): the image ``scale`` times larger, a strip below it where column
    t's best class stands over the image pixels that column covers (its shade: that class's probability),
    and the truth beside the greedy reading."""
    n, _, h, w = images.shape
    columns = probs.shape[1]
    best_p, best = probs.max(-1)
    row_h = h * scale + 16 + 14
    canvas = Image.new("RGB", (w * scale, n * row_h), "white")
    draw = ImageDraw.Draw(canvas)
    step = w * scale / columns  # one column of features spans W / T input pixels
    for i in range(n):
        top = i * row_h
        line = Image.fromarray(images[i, 0].numpy()).resize((w * scale, h * scale), Image.NEAREST).convert("RGB")
        canvas.paste(line, (0, top))
        y = top + h * scale
        for t in range(columns):
            k, p = int(best[i, t]), float(best_p[i, t])
            shade = int(220 * (1 - p))
            x = int(t * step)
            if k == 0:
                draw.rectangle([x + step / 2 - 1, y + 7, x + step / 2, y + 8], fill=(shade, shade, shade))
            else:
                draw.rectangle([x, y, x + step - 1, y + 15], fill=(255, 220, 120))
                draw.text((x + 1, y + 2), alphabet[k - 1], fill=(shade, 0, 0))
        ok = texts[i] == read[i]
        draw.text((2, y + 16), f"truth {texts[i]}   read {read[i]}", fill=(0, 120, 0) if ok else (180, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
