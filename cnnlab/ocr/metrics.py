"""Edit distance and the recognition figures: sequence accuracy and character error rate (CER)."""

from __future__ import annotations

from typing import Sequence


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning ``a`` into ``b``
    (Wagner & Fischer 1974's dynamic programme, one row kept)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev_diag, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev_diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev_diag + (ca != cb))
    return row[-1]


def recognition_scores(predicted: Sequence[str], truth: Sequence[str]) -> dict[str, float]:
    """``seq_acc``: share of lines read exactly; ``cer``: edit distance summed over lines / characters of the truth."""
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predictions for {len(truth)} lines")
    errors = sum(edit_distance(p, t) for p, t in zip(predicted, truth))
    chars = sum(len(t) for t in truth)
    exact = sum(p == t for p, t in zip(predicted, truth))
    return {"seq_acc": exact / max(1, len(truth)), "cer": errors / max(1, chars)}
