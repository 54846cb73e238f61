"""Build the background textures bundled with cnnlab, ``cnnlab/bundled/textures/*.png``, from photos
that ship with scikit-image (all CC0; see ``cnnlab/bundled/textures/LICENSE.txt``).

Each photo is cut to its central square and scaled to 256 x 256 with Lanczos filtering, so the scene
generator needs neither scikit-image nor a download, and draws the same pixels on every machine:

    python tools/make_bundled_textures.py
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

PHOTOS = ["brick", "grass", "gravel", "camera", "coffee", "chelsea"]
SIDE = 256


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        arr = np.asarray(getattr(data, name)())
        h, w = arr.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        img = Image.fromarray(arr[top:top + side, left:left + side]).resize((SIDE, SIDE), Image.LANCZOS)
        buffer = io.BytesIO()
        img.save(buffer, format="PNG", optimize=True)
        (out / f"{name}.png").write_bytes(buffer.getvalue())
        print(name, img.mode, len(buffer.getvalue()))


if __name__ == "__main__":
    main(Path(__file__).resolve().parent.parent / "cnnlab" / "bundled" / "textures")
