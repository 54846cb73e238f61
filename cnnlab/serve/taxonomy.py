"""Category paths (``root`` in an answer) for the classes a checkpoint knows.

The decks' recognition service answers each keyword with the category it belongs to, e.g. keyword
"dandelion" under root "plant-fruit/seed". A cnnlab checkpoint may carry its own mapping in its
metadata; otherwise the built-in tables below cover the datasets cnnlab trains on.

Order of precedence:

1. ``meta["class_roots"]``: a list with one path per class, in class order;
2. ``meta["taxonomy"]``: a mapping class name -> path (classes it leaves out fall through);
3. a built-in table, used when it names every class of the checkpoint;
4. the dataset's name (``meta["dataset"]``), or ``"unsorted"`` when even that is unknown.
"""

from __future__ import annotations

from typing import Any, Sequence

# Fashion-MNIST (Xiao, Rasul, Vollgraf 2017, Table 1 lists the ten article classes).
FASHION_MNIST_ROOTS = {
    "T-shirt/top": "clothing/top",
    "Trouser": "clothing/bottom",
    "Pullover": "clothing/top",
    "Dress": "clothing/dress",
    "Coat": "clothing/outerwear",
    "Sandal": "footwear/sandal",
    "Shirt": "clothing/top",
    "Sneaker": "footwear/shoe",
    "Bag": "accessory/bag",
    "Ankle boot": "footwear/boot",
}

# MNIST: the ten handwritten digits.
DIGIT_ROOTS = {str(d): "digit" for d in range(10)}

# CIFAR-10 (Krizhevsky 2009): four vehicle and six animal classes.
CIFAR10_ROOTS = {
    "airplane": "vehicle/air", "automobile": "vehicle/road", "ship": "vehicle/water", "truck": "vehicle/road",
    "bird": "animal/bird", "cat": "animal/mammal", "deer": "animal/mammal", "dog": "animal/mammal",
    "frog": "animal/amphibian", "horse": "animal/mammal",
}

BUILT_IN_TABLES = (FASHION_MNIST_ROOTS, DIGIT_ROOTS, CIFAR10_ROOTS)


def class_roots(class_names: Sequence[str], meta: dict[str, Any] | None = None) -> list[str]:
    """One category path per class, following the precedence in the module docstring."""
    meta = meta or {}
    names = list(class_names)
    given = meta.get("class_roots")
    if isinstance(given, list) and len(given) == len(names) and all(isinstance(r, str) for r in given):
        return list(given)
    fallback = str(meta.get("dataset") or "unsorted")
    table = next((t for t in BUILT_IN_TABLES if names and all(n in t for n in names)), {})
    custom = meta.get("taxonomy") if isinstance(meta.get("taxonomy"), dict) else {}
    return [str(custom.get(n) or table.get(n) or fallback) for n in names]
