"""Scene-text recognition: a line image in, its text out (deck 003; CRNN, Shi et al. 2015).

Data are text-line sets (:mod:`cnnlab.data.digit_strings`): ``digit-strings-mini`` (bundled),
``digit-strings`` (generated on first use from the MNIST sample, ``cnnlab data make digit-strings``), or
any folder of line images with ``labels.txt`` (``train/`` and ``test/`` below it). The classes are the
alphabet of the training texts; the model adds the CTC blank. The loss is CTC (:mod:`cnnlab.ocr.ctc`);
the metrics are sequence accuracy and character error rate, with greedy (best-path) and beam-search
decoding. A prediction is the text with each character's confidence; ``POST /v1/ocr`` answers it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..data.digit_strings import TextLines, load_text_lines
from ..data.transforms import normalize
from ..errors import ConfigError, DataError
from ..ocr.ctc import beam_decode, ctc_loss, greedy_decode
from ..ocr.metrics import recognition_scores
from . import register_task
from .base import Batch, CheckpointPredictor, StepOutput, Task

LINE_SETS = {"digit-strings-mini": (150, 40), "digit-strings": (5000, 1000)}
BEAM = 8


def line_folder(name: str, data_dir: str | None = None) -> Path:
    from ..data.datasets import BUNDLED_DIR, data_root

    return BUNDLED_DIR / "digit-strings-mini" if name == "digit-strings-mini" else data_root(data_dir) / name


def make_digit_strings(name: str = "digit-strings", *, data_dir: str | None = None, out: str | None = None,
                       count: int | None = None, test_count: int | None = None, seed: int = 0, force: bool = False,
                       source: str | None = None, progress=None, **settings) -> Path:
    """Write the line set ``name`` (``digit-strings`` or ``digit-strings-mini``) into ``out`` (default its folder)."""
    from ..data.digit_strings import DigitStringConfig, write_digit_strings

    if name not in LINE_SETS:
        raise DataError(f"unknown text-line set '{name}' (known: {', '.join(LINE_SETS)})")
    train, test = LINE_SETS[name]
    if name == "digit-strings-mini":
        settings.setdefault("noise", 6.0)  # milder noise keeps the bundled PNGs under 1 MB
    counts = {"train": train if count is None else count, "test": test if test_count is None else test_count}
    if min(counts.values()) < 1:
        raise DataError(f"line counts must be positive, got {counts}")
    folder = Path(out) if out else line_folder(name, data_dir)
    return write_digit_strings(folder, counts=counts, seed=seed, config=DigitStringConfig(**settings),
                               source=source or "mnist-10k", data_dir=data_dir, force=force, progress=progress)


def load_line_split(name: str, split: str, data_dir: str | None = None) -> TextLines:
    """The ``split`` of a named line set (made on first use) or of a folder; the test split of a folder
    is read with its training split's alphabet."""
    if name in LINE_SETS:
        folder = line_folder(name, data_dir)
        if not (folder / "train").is_dir():
            import logging

            logging.getLogger("cnnlab.data").warning("drawing the %s set into %s (first use)", name, folder)
            make_digit_strings(name, data_dir=data_dir)
        return load_text_lines(folder, split, name=name, alphabet=list("0123456789"))
    path = Path(name).expanduser()
    if not path.is_dir():
        raise DataError(f"{name}: no such text-line set or folder (known sets: {', '.join(LINE_SETS)})")
    alphabet = None if split == "train" else load_text_lines(path, "train").class_names
    return load_text_lines(path, split, alphabet=alphabet)


def _texts_outside(texts: Sequence[str], alphabet: Sequence[str]) -> list[str]:
    known = set(alphabet)
    return sorted({c for t in texts for c in t if c not in known})


def _log_probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if out.dim() != 3:
        raise ConfigError(f"a text recogniser gives N x T x classes scores, this model gives {tuple(out.shape)}")
    return out.float()


@torch.no_grad()
def evaluate_lines(model: nn.Module, data: TextLines, alphabet: Sequence[str], *, device: torch.device | str = "cpu",
                   batch_size: int = 128, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                   beam: int = BEAM) -> dict[str, Any]:
    """CTC loss, sequence accuracy and CER of ``model`` on ``data``: greedy, and with beam search of
    width ``beam`` (``_beam``; 0 skips it)."""
    model.eval()
    mean, std = mean or data.mean, std or data.std
    greedy, beamed, loss_sum, scored = [], [], 0.0, 0
    for start in range(0, len(data), batch_size):
        x = normalize(data.images[start:start + batch_size].to(device), mean, std)
        logp = _log_probs(model, x).cpu()
        texts = data.texts[start:start + batch_size]
        ok = [i for i, t in enumerate(texts) if not _texts_outside([t], alphabet)]
        if ok:
            loss_sum += float(ctc_loss(logp[ok], [texts[i] for i in ok], alphabet)) * len(ok)
            scored += len(ok)
        probs = logp.exp()
        greedy += [t for t, _, _ in greedy_decode(probs, alphabet)]
        if beam:
            beamed += [t for t, _ in beam_decode(probs, alphabet, beam=beam)]
    results: dict[str, Any] = {"lines": len(data), "loss": loss_sum / max(1, scored), **recognition_scores(greedy, data.texts)}
    if beam:
        results.update({f"{k}_beam": v for k, v in recognition_scores(beamed, data.texts).items()})
    results["examples"] = [{"truth": t, "greedy": g, **({"beam": beamed[i]} if beam else {})}
                           for i, (t, g) in enumerate(zip(data.texts[:5], greedy))]
    return results


@register_task
class OcrTask(Task):
    """Text-line recognition with CTC."""

    name = "ocr"
    description = "scene-text recognition: the text of a line image (CRNN + CTC), greedy or beam-search decoded"
    shown = ("seq_acc", "cer")
    primary = "seq_acc"
    higher_is_better = True
    endpoint = "ocr"
    class_dim = -1  # N x T x (K + 1) column scores
    default_data = "digit-strings-mini"
    # Adam (CRNN used Adadelta); small batches: more steps leave the all-blank plateau of CTC sooner
    defaults = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "batch_size": 16}

    # --- data
    def load_split(self, name: str, split: str, data_dir: str | None = None) -> TextLines:
        return load_line_split(name, split, data_dir)

    def data_fields(self, train_set: TextLines) -> dict[str, Any]:
        return {**super().data_fields(train_set), "extra": {"blank": 0, "beam": BEAM}}

    def check_data(self, train_set: TextLines, test_set: TextLines) -> None:
        if not train_set.class_names:
            raise DataError(f"{train_set.name}: the training texts are empty")
        unknown = _texts_outside(test_set.texts, train_set.class_names)
        if unknown:
            raise DataError(f"{test_set.name}: test texts hold characters no training text has: {''.join(unknown)!r}")
        if test_set.input_size != train_set.input_size:
            raise DataError(f"{test_set.name}: test lines are {test_set.input_size}, training lines {train_set.input_size}")

    # --- batches
    def make_batch(self, dataset: TextLines, indices: torch.Tensor, *, train: bool,
                   generator: torch.Generator | None = None) -> Batch:
        return Batch(dataset.images[indices], [dataset.texts[int(i)] for i in indices],
                     {"mean": dataset.mean, "std": dataset.std, "alphabet": list(dataset.class_names)})

    def prepare(self, batch: Batch, device: torch.device, *, channels_last: bool = False) -> Batch:
        x = normalize(batch.inputs.to(device, non_blocking=True), batch.extra["mean"], batch.extra["std"])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return Batch(x, batch.targets, batch.extra)

    # --- training
    def training_step(self, forward, model: nn.Module, batch: Batch, phase: str) -> StepOutput:
        logp = forward(batch.inputs)
        alphabet = batch.extra["alphabet"]
        loss = ctc_loss(logp, batch.targets, alphabet)
        n = len(batch.inputs)
        with torch.no_grad():
            read = [t for t, _, _ in greedy_decode(logp.detach().float().exp().cpu(), alphabet)]
            exact = sum(p == t for p, t in zip(read, batch.targets))
        return StepOutput(loss, {"loss": loss.detach().double() * n, "seq_acc": torch.tensor(float(exact), dtype=torch.float64)}, n)

    # --- evaluation
    def evaluate(self, model: nn.Module, dataset: TextLines, *, device: torch.device | str = "cpu",
                 batch_size: int = 128, precision: str = "fp32", channels_last: bool = False,
                 preprocessing=None, beam: int = BEAM, alphabet: Sequence[str] | None = None,
                 **options: Any) -> dict[str, Any]:
        mean = preprocessing.mean if preprocessing is not None else None
        std = preprocessing.std if preprocessing is not None else None
        return evaluate_lines(model, dataset, alphabet or dataset.class_names, device=device, batch_size=batch_size,
                              mean=mean, std=std, beam=beam)

    def for_checkpoint(self, dataset: TextLines, checkpoint, name: str) -> TextLines:
        unknown = _texts_outside(dataset.texts, checkpoint.class_names)
        if unknown:
            raise DataError(f"{name}: texts hold characters the model cannot write: {''.join(unknown)!r}")
        import dataclasses

        return dataclasses.replace(dataset, class_names=list(checkpoint.class_names))

    def scalars(self, metrics: dict[str, Any]) -> dict[str, float]:
        keys = ("loss", "seq_acc", "cer", "seq_acc_beam", "cer_beam")
        return {k: float(metrics[k]) for k in keys if k in metrics}

    def report(self, metrics: dict[str, Any], checkpoint, *, dataset: str, split: str) -> None:
        from ..console import print_table

        print(f"{checkpoint.arch} on {dataset}/{split} ({metrics['lines']} lines), CTC loss {metrics['loss']:.4f}")
        rows = [["greedy", f"{metrics['seq_acc']:.4f}", f"{metrics['cer']:.4f}"]]
        if "seq_acc_beam" in metrics:
            rows.append([f"beam {BEAM}", f"{metrics['seq_acc_beam']:.4f}", f"{metrics['cer_beam']:.4f}"])
        print_table(rows, ["decoding", "sequence accuracy", "CER"], justify_right=["sequence accuracy", "CER"])

    # --- using a trained model
    def predictor(self, checkpoint, *, device: str | torch.device = "cpu"):
        return OcrPredictor(checkpoint, device=device)

    def output_description(self, shape: Sequence[int]) -> str:
        return f"log-probabilities N x {' x '.join(map(str, shape[1:]))}: per column, the CTC blank then class_names"

    def print_predictions(self, paths: Sequence[str], predictions, *, out_dir: Path | None = None,
                          images: Sequence[Any] = ()) -> list[str]:
        for path, pred in zip(paths, predictions):
            print(f"{path}  {pred['text']!r}  (confidence {pred['confidence']:.3f}, {pred['decoding']})")
            print("  " + "  ".join(f"{c['char']} {c['confidence']:.2f}" for c in pred["characters"]))
        return []

    def request_options(self, fields: dict[str, str], served) -> dict[str, Any]:
        from ..serve.errors import bad_request

        decoding = fields.get("decoding", "greedy")
        if decoding not in ("greedy", "beam"):
            raise bad_request(f"decoding must be greedy or beam, not {decoding!r}")
        return {"decoding": decoding}

    def response(self, served, prediction: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        result = dict(prediction)
        if options.get("decoding") == "beam":
            result.update(text=prediction["beam_text"], confidence=prediction["beam_confidence"], decoding=f"beam {BEAM}")
        return {"result": result}


    # --- pictures
    pictures_kinds = ("alignment",)

    def pictures(self, checkpoint, dataset: TextLines, out_dir: Path, *, kind: str, limit: int) -> list[dict[str, Any]]:
        from ..ocr.draw import alignment_picture

        data = dataset.subset(slice(0, min(limit or 8, 16)))
        with torch.no_grad():
            probs = _log_probs(checkpoint.model.eval(), checkpoint.preprocessing.normalize(data.images)).exp()
        read = [t for t, _, _ in greedy_decode(probs, checkpoint.class_names)]
        where = Path(checkpoint.path)
        name = (where.parent.name if where.name in ("last", "best") else where.name) or checkpoint.arch
        path = alignment_picture(data.images, probs, checkpoint.class_names, data.texts, read,
                                 out_dir / f"alignment-{name}.png")
        return [{"kind": kind, "path": str(path), "lines": len(data), "read": read, "truth": data.texts}]


class OcrPredictor(CheckpointPredictor):
    """``predict_batch(uint8 N x C x H x W)`` -> per line: ``text`` (greedy), its ``characters`` with
    confidences and peak columns, ``confidence`` (their product), and the beam-search ``beam_text``."""

    def __init__(self, checkpoint, *, device: str | torch.device = "cpu"):
        super().__init__(checkpoint, device=device)
        self.beam = int(checkpoint.meta.extra.get("beam", BEAM))

    @torch.no_grad()
    def predict_batch(self, images: torch.Tensor, *_: Any, **__: Any) -> list[dict[str, Any]]:
        x = self.checkpoint.preprocessing.normalize(images.to(self.device))
        probs = _log_probs(self.model, x).exp().cpu()
        out = []
        for (text, confs, cols), (btext, bprob) in zip(greedy_decode(probs, self.class_names),
                                                       beam_decode(probs, self.class_names, beam=self.beam)):
            conf = 1.0
            for c in confs:
                conf *= c
            out.append({"text": text, "confidence": round(conf, 4), "decoding": "greedy",
                        "characters": [{"char": ch, "confidence": round(c, 4), "column": col}
                                       for ch, c, col in zip(text, confs, cols)],
                        "columns": int(probs.shape[1]), "beam_text": btext, "beam_confidence": round(bprob, 4)})
        return out
