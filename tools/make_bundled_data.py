"""Build cnnlab's bundled offline sample, ``fashion-mnist-mini``, from a full Fashion-MNIST copy.

Takes the first 300 training and first 100 test images of each class, so the sample is balanced
and the same every time:

    python tools/make_bundled_data.py /path/to/folder-with-fashion-mnist-idx-files
"""

import sys
from pathlib import Path

import numpy as np

from cnnlab.data.idx import read_image_label_pair, write_idx

PER_CLASS = {"train": 300, "test": 100}
SOURCE = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def main(source: Path, out: Path) -> None:
    for split, (images_file, labels_file) in SOURCE.items():
        images, labels = read_image_label_pair(source / images_file, source / labels_file, 10)
        keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[: PER_CLASS[split]] for c in range(10)]))
        write_idx(out / f"fashion-mnist-mini-{split}-images.idx.gz", images[keep])
        write_idx(out / f"fashion-mnist-mini-{split}-labels.idx.gz", labels[keep].astype(np.uint8))
        print(split, len(keep))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(__file__).resolve().parent.parent / "cnnlab" / "bundled")
