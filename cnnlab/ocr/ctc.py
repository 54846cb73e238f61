"""Connectionist temporal classification (Graves et al., ICML 2006), as CRNN uses it (Shi et al. §2.3).

A network emits, per column t, probabilities over the alphabet plus a blank (class 0). A path (one
class per column) maps to a labelling by merging repeated classes and then removing blanks
("-aa-b" -> "ab"); the probability of a labelling is the sum over its paths, and the loss is its
negative log-probability (torch's ``ctc_loss`` sums the paths with the forward algorithm).

Decoding: *greedy* (best path, Graves §3.2) takes the most likely class per column and maps that path;
*beam search* (prefix search, Graves 2006 §3.2 and Hannun et al. 2014's formulation) keeps the
``beam`` most probable labelling prefixes, each with the probability of its paths ending in a blank
and in its last character, and so finds the labelling whose summed paths are most likely, which the
best path can miss (two columns of 0.6 blank / 0.4 "a": best path "" at 0.36, "a" at 0.64).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

BLANK = 0


def encode(texts: Sequence[str], alphabet: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts -> (concatenated class indices, 1 + position in ``alphabet``; lengths). Unknown characters raise KeyError."""
    index = {c: i + 1 for i, c in enumerate(alphabet)}
    flat = [index[c] for t in texts for c in t]
    return torch.tensor(flat, dtype=torch.long), torch.tensor([len(t) for t in texts], dtype=torch.long)


def ctc_loss(log_probs: torch.Tensor, texts: Sequence[str], alphabet: Sequence[str]) -> torch.Tensor:
    """Mean over the batch of -log p(text | image), N x T x (K + 1) log-probabilities in.

    Per line, not per character (Shi et al. eq. 1 sums the negative log-likelihoods); an impossible
    alignment (a text longer than the columns allow) counts zero instead of infinity."""
    targets, lengths = encode(texts, alphabet)
    n, t, _ = log_probs.shape
    inputs = torch.full((n,), t, dtype=torch.long)
    return F.ctc_loss(log_probs.float().transpose(0, 1), targets, inputs, lengths, blank=BLANK,
                      reduction="sum", zero_infinity=True) / n


def greedy_decode(probs: torch.Tensor, alphabet: Sequence[str]) -> list[tuple[str, list[float], list[int]]]:
    """Best-path decoding of N x T x (K + 1) probabilities: per line the text, each character's confidence
    (the highest probability over the columns of its run) and the column where it peaks."""
    conf, best = probs.max(-1)
    out = []
    for row_c, row_k in zip(conf.tolist(), best.tolist()):
        text, confs, cols, prev = [], [], [], BLANK
        for t, (p, k) in enumerate(zip(row_c, row_k)):
            if k != BLANK and k != prev:
                text.append(alphabet[k - 1])
                confs.append(p)
                cols.append(t)
            elif k != BLANK and k == prev and p > confs[-1]:
                confs[-1], cols[-1] = p, t
            prev = k
        out.append(("".join(text), confs, cols))
    return out


def _logsum(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def beam_decode(probs: torch.Tensor, alphabet: Sequence[str], beam: int = 8,
                prune: float = 1e-4) -> list[tuple[str, float]]:
    """Prefix beam search over N x T x (K + 1) probabilities: per line the most probable labelling kept
    in a beam of ``beam`` prefixes and its probability (summed over its paths). Classes below ``prune``
    in a column are not tried as extensions (they cannot change the winner at this beam width)."""
    logp = probs.double().clamp(min=1e-300).log()
    floor = math.log(prune) if prune > 0 else -math.inf
    out = []
    for row in logp:
        beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix -> (log p blank-end, non-blank-end)
        for column in row.tolist():
            candidates = [k for k in range(1, len(column)) if column[k] >= floor]
            nxt: dict[tuple[int, ...], list[float]] = {}

            def add(prefix, blank_end, char_end):
                cur = nxt.setdefault(prefix, [-math.inf, -math.inf])
                cur[0], cur[1] = _logsum(cur[0], blank_end), _logsum(cur[1], char_end)

            for prefix, (pb, pnb) in beams.items():
                total = _logsum(pb, pnb)
                add(prefix, total + column[BLANK], -math.inf)  # a blank: the prefix stays
                if prefix:
                    add(prefix, -math.inf, pnb + column[prefix[-1]])  # the last character repeated: merged
                for k in candidates:
                    if prefix and k == prefix[-1]:
                        add(prefix + (k,), -math.inf, pb + column[k])  # a repeat needs a blank between
                    else:
                        add(prefix + (k,), -math.inf, total + column[k])
            ranked = sorted(nxt.items(), key=lambda kv: _logsum(*kv[1]), reverse=True)[:beam]
            beams = {p: (v[0], v[1]) for p, v in ranked}
        prefix, (pb, pnb) = max(beams.items(), key=lambda kv: _logsum(*kv[1]))
        out.append(("".join(alphabet[k - 1] for k in prefix), math.exp(_logsum(pb, pnb))))
    return out
