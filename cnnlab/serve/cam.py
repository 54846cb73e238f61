"""What the web page shows beside the scores: the input as the model sees it, each stage's feature
maps and a Grad-CAM overlay (Selvaraju et al., ICCV 2017), all as small PNG data URLs."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import torch

from .errors import ServeError

TILES_PER_STAGE = 8  # strongest channels drawn per stage
MAX_STAGES = 8  # deep networks: the last stages are the interesting ones
MIN_TILE = 32  # pixels; small maps are enlarged (nearest neighbour) to at least this


def png_data_url(pixels: np.ndarray) -> str:
    """uint8 H x W or H x W x 3 -> ``data:image/png;base64,...``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def input_view(image: torch.Tensor) -> np.ndarray:
    """C x H x W uint8 -> H x W (grey) or H x W x 3 uint8."""
    arr = image.permute(1, 2, 0).numpy()
    return arr[:, :, 0] if arr.shape[2] == 1 else arr


def _viz():
    try:
        from ..viz import cam, features, style
    except ImportError as e:  # the visualisation package is optional at run time
        raise ServeError(501, "cam_unavailable", f"feature maps and CAM are unavailable: {e}") from None
    return cam, features, style


def stage_mosaic(maps: torch.Tensor, channels: list[int], cmap) -> np.ndarray:
    """1 x C x h x w activations -> one row of coloured tiles (each channel scaled to its own range)."""
    tiles = []
    for c in channels:
        m = maps[0, c].float()
        lo, hi = float(m.min()), float(m.max())
        unit = ((m - lo) / (hi - lo)).numpy() if hi > lo else np.zeros(tuple(m.shape), np.float32)
        rgb = (cmap(unit)[:, :, :3] * 255.0 + 0.5).astype(np.uint8)  # h x w x 3
        scale = max(1, -(-MIN_TILE // max(rgb.shape[:2])))
        tiles.append(np.kron(rgb, np.ones((scale, scale, 1), np.uint8)))
    gap = np.full((tiles[0].shape[0], 2, 3), 255, np.uint8)
    row = [t for tile in tiles for t in (tile, gap)][:-1]
    return np.concatenate(row, axis=1)


def stage_entry(name: str, maps: torch.Tensor, channels: list[int], cmap) -> dict[str, Any]:
    """One stage for the page: its mosaic, and for each tile the channel it shows and the range its
    colours span (each tile is scaled to its own minimum and maximum)."""
    tiles = [{"channel": c, "min": round(float(maps[0, c].min()), 4), "max": round(float(maps[0, c].max()), 4)}
             for c in channels]
    return {"name": name, "shape": list(maps.shape[1:]), "tiles": tiles,
            "png": png_data_url(stage_mosaic(maps, channels, cmap))}


def cam_view(model: torch.nn.Module, image: torch.Tensor, preprocessing, class_index: int | None) -> dict[str, Any]:
    """Input view, feature-map mosaics and CAM overlay of one C x H x W uint8 image."""
    cam, features, style = _viz()
    import matplotlib

    cmap = matplotlib.colormaps[style.HEAT_CMAP]
    x = preprocessing.normalize(image.unsqueeze(0))  # 1 x C x H x W float
    with torch.no_grad():
        probs = torch.softmax(model(x).float(), dim=1)[0]
    target = int(probs.argmax()) if class_index is None else class_index
    heat = cam.grad_cam(model, x, class_index=target)  # H x W in [0, 1]
    view = input_view(image)
    stages = features.feature_maps(model, x)
    shown = [(n, m) for n, m in stages if m.dim() == 4][-MAX_STAGES:]
    return {
        "class_index": target,
        "input_png": png_data_url(view),
        "cam_png": png_data_url(style.overlay_heatmap(view, heat)),
        "feature_maps": [stage_entry(name, m, features.strongest_channels(m, TILES_PER_STAGE), cmap)
                         for name, m in shown],
    }
