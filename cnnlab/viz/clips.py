"""Clips drawn for people: a row of frames per clip beside a bar chart of the class probabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image, ImageDraw

SHOWN_FRAMES = 8  # frames drawn per clip, spread evenly over it
BAR_WIDTH = 160
ROW_GAP = 6


def _frame_rgb(clip: torch.Tensor, t: int) -> Image.Image:
    frame = clip[:, t].numpy()  # C x H x W uint8
    return Image.fromarray(frame[0] if frame.shape[0] == 1 else frame.transpose(1, 2, 0)).convert("RGB")


def clip_strip(clips: Sequence[torch.Tensor], probabilities: Sequence[dict[str, float]],
               truth: Sequence[str | None], path: str | Path, *, zoom: int = 2) -> Path:
    """One row per clip (C x T x H x W uint8): ``SHOWN_FRAMES`` frames, then each class's probability as a
    bar (the most likely in orange, the true class's name marked with ``*``); written as PNG to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    c, t, h, w = clips[0].shape
    shown = sorted({min(t - 1, int(round(i * (t - 1) / (SHOWN_FRAMES - 1)))) for i in range(SHOWN_FRAMES)})
    fh, fw = h * zoom, w * zoom
    classes = list(probabilities[0])
    bar_h = 11
    row_h = max(fh + 14, bar_h * len(classes) + 14)
    width = len(shown) * (fw + 2) + BAR_WIDTH + 130
    canvas = Image.new("RGB", (width, row_h * len(clips) + ROW_GAP * (len(clips) - 1)), "white")
    draw = ImageDraw.Draw(canvas)
    for row, (clip, probs, true) in enumerate(zip(clips, probabilities, truth)):
        top = row * (row_h + ROW_GAP)
        best = max(probs, key=probs.get)
        title = f"predicted {best} {probs[best]:.2f}" + (f"   truth {true}" if true is not None else "")
        draw.text((2, top), title, fill=(0, 0, 0) if true in (None, best) else (190, 0, 0))
        for i, index in enumerate(shown):
            frame = _frame_rgb(clip, index).resize((fw, fh), Image.NEAREST)
            canvas.paste(frame, (i * (fw + 2), top + 12))
            draw.text((i * (fw + 2) + 1, top + 12), str(index), fill=(255, 220, 0))
        left = len(shown) * (fw + 2) + 8
        for k, name in enumerate(classes):
            y = top + 12 + k * bar_h
            label = f"{'*' if name == true else ''}{name}"
            draw.text((left, y - 1), label, fill=(0, 0, 0))
            x0 = left + 80
            length = int(round(float(probs[name]) * BAR_WIDTH))
            draw.rectangle([x0, y + 1, x0 + BAR_WIDTH, y + bar_h - 2], outline=(200, 200, 200))
            if length:
                draw.rectangle([x0, y + 1, x0 + length, y + bar_h - 2],
                               fill=(230, 120, 0) if name == best else (70, 110, 200))
            draw.text((x0 + BAR_WIDTH + 4, y - 1), f"{probs[name]:.2f}", fill=(0, 0, 0))
    canvas.save(path)
    return path

