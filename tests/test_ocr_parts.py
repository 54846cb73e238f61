"""Text recognition parts against independent facts: edit distance against the ``editdistance`` library,
CTC loss against a sum over every path by brute force, greedy and beam decoding against hand-worked
probability tables and brute force, the CRNN's sequence length from Table 1, and the line data."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.digit_strings import DigitStringConfig, load_text_lines, make_lines, write_digit_strings
from cnnlab.errors import DataError
from cnnlab.ocr.ctc import beam_decode, ctc_loss, greedy_decode
from cnnlab.ocr.metrics import edit_distance, recognition_scores


def collapse(path, alphabet):
    """A path's labelling: repeats merged, then blanks (0) dropped."""
    merged = [k for i, k in enumerate(path) if i == 0 or k != path[i - 1]]
    return "".join(alphabet[k - 1] for k in merged if k)


def labelling_probabilities(probs: torch.Tensor, alphabet) -> dict[str, float]:
    """Every labelling's probability, summed over all (K+1)^T paths of a T x (K+1) table."""
    t, c = probs.shape
    out: dict[str, float] = {}
    for path in itertools.product(range(c), repeat=t):
        p = math.prod(float(probs[i, k]) for i, k in enumerate(path))
        key = collapse(path, alphabet)
        out[key] = out.get(key, 0.0) + p
    return out


def test_edit_distance_and_cer_match_the_editdistance_library():
    editdistance = pytest.importorskip("editdistance")
    rng = random.Random(0)
    pairs = [("", ""), ("", "abc"), ("kitten", "sitting"), ("123", "321")]
    pairs += [("".join(rng.choices("0123", k=rng.randint(0, 9))), "".join(rng.choices("0123", k=rng.randint(0, 9))))
              for _ in range(200)]
    for a, b in pairs:
        assert edit_distance(a, b) == editdistance.eval(a, b), (a, b)
    predicted, truth = [a for a, _ in pairs], [b for _, b in pairs]
    scores = recognition_scores(predicted, truth)
    assert scores["cer"] == pytest.approx(sum(editdistance.eval(a, b) for a, b in pairs) / sum(len(b) for b in truth))
    assert scores["seq_acc"] == pytest.approx(sum(a == b for a, b in pairs) / len(pairs))


def test_ctc_loss_is_the_sum_over_all_paths():
    alphabet = ["a", "b"]
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 3, generator=g)  # N x T x (blank, a, b)
    logp = logits.log_softmax(-1)
    texts = ["ab", "aa", "b"]  # "aa" needs a blank between: the path a-a only
    want = 0.0
    for i, text in enumerate(texts):
        want += -math.log(labelling_probabilities(logp[i].exp(), alphabet)[text])
    assert float(ctc_loss(logp, texts, alphabet)) == pytest.approx(want / 3, rel=1e-5)
    # "aa" over 4 columns by hand: the five paths a-aa, a--a, aa-a, -a-a, a-a- (a blank must part the a's)
    p = logp[1].exp()
    paths = [(1, 0, 1, 1), (1, 0, 0, 1), (1, 1, 0, 1), (0, 1, 0, 1), (1, 0, 1, 0)]
    by_hand = sum(math.prod(float(p[t, k]) for t, k in enumerate(path)) for path in paths)
    assert by_hand == pytest.approx(labelling_probabilities(p, alphabet)["aa"])


def test_greedy_decoding_by_hand():
    # columns: a a - a b  ->  "aab"; each character's confidence is the best column of its run
    probs = torch.tensor([[[0.1, 0.7, 0.2], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.3, 0.1, 0.6]]])
    ((text, confs, cols),) = greedy_decode(probs, ["a", "b"])
    assert text == "aab"
    assert confs == pytest.approx([0.8, 0.5, 0.6]) and cols == [1, 3, 4]


def test_beam_search_finds_the_labelling_the_best_path_misses():
    # two columns of 0.6 blank / 0.4 "a": the best path "--" gives "" (0.36), yet "a" has a-, -a, aa: 0.64
    probs = torch.tensor([[[0.6, 0.4], [0.6, 0.4]]])
    assert greedy_decode(probs, ["a"])[0][0] == ""
    ((text, p),) = beam_decode(probs, ["a"], beam=4)
    assert text == "a" and p == pytest.approx(0.64)


def test_beam_search_agrees_with_brute_force_on_random_tables():
    alphabet = ["a", "b"]
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        probs = (torch.randn(5, 3, generator=g) * 1.5).softmax(-1)
        table = labelling_probabilities(probs, alphabet)
        best = max(table, key=table.get)
        ((text, p),) = beam_decode(probs[None], alphabet, beam=64, prune=0)
        assert text == best and p == pytest.approx(table[best])


def test_crnn_sequence_length_follows_table_1():
    from cnnlab.registry import create_model

    model = create_model("crnn_small", num_classes=10)
    out = model(torch.zeros(2, 1, 32, 256))
    # two 2x2 pools quarter the width, the final 2x2 convolution without padding takes one column more
    assert out.shape == (2, 256 // 4 - 1, 11)
    assert torch.allclose(out.exp().sum(-1), torch.ones(2, 63))
    with pytest.raises(DataError, match="32 pixels"):
        model(torch.zeros(1, 1, 48, 256))
    # the baseline reads one step per pixel column: in its first BiLSTM the forward half of step t has
    # seen columns 0..t only, the backward half columns t..W-1
    baseline = create_model("lstm_ctc", num_classes=10).eval()
    x = torch.zeros(1, 1, 32, 256)
    y = x.clone()
    y[..., 100:] = 1.0
    assert baseline(x).shape == (1, 256, 11)
    first = baseline.sequence[0]
    fx, fy = (first(v.permute(0, 3, 1, 2).reshape(1, 256, 32)) for v in (x, y))
    assert torch.equal(fx[0, :100, :64], fy[0, :100, :64]) and not torch.equal(fx[0, :100, 64:], fy[0, :100, 64:])


def test_digit_lines_use_the_split_s_own_digits(shared_data, tmp_path):
    from cnnlab.data.datasets import load_dataset

    config = DigitStringConfig()
    folder = write_digit_strings(tmp_path / "lines", counts={"train": 12, "test": 6}, seed=3, data_dir=str(shared_data))
    rng = np.random.default_rng(3)  # the same draws, train first, from each split's own MNIST digits
    for split, count in (("train", 12), ("test", 6)):
        digits = load_dataset("mnist-10k", split, str(shared_data))
        lines, texts = make_lines(digits.images[:, 0].numpy(), digits.labels.numpy(), count, rng, config)
        got = load_text_lines(folder, split)
        assert got.texts == texts and np.array_equal(got.images[:, 0].numpy(), lines)
        assert all(1 <= len(t) <= 12 for t in texts)
    again = write_digit_strings(tmp_path / "again", counts={"train": 12, "test": 6}, seed=3, data_dir=str(shared_data))
    assert (again / "train" / "labels.txt").read_text() == (folder / "train" / "labels.txt").read_text()


def test_a_folder_of_lines_with_any_alphabet(tmp_path):
    split = tmp_path / "train"
    split.mkdir()
    rows = [("a.png", "Straße"), ("b.jpg", "ÉTÉ 21"), ("c.png", "x")]
    for (name, _), w in zip(rows, (300, 64, 20)):
        Image.fromarray(np.full((40, w), 200, np.uint8)).save(split / name)
    (split / "labels.txt").write_text("\n".join(f"{n}\t{t}" for n, t in rows) + "\n", encoding="utf-8")
    lines = load_text_lines(tmp_path, "train")
    assert lines.texts == ["Straße", "ÉTÉ 21", "x"]
    assert lines.class_names == sorted(set("StraßeÉTÉ 21x"))
    assert lines.images.shape == (3, 1, 32, 256)  # 40 high -> 32, widths padded or squeezed to 256
    (split / "labels.txt").write_text("a.png\tok\nmissing.png\tno\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing.png"):
        load_text_lines(tmp_path, "train")
    (split / "labels.txt").write_text("a.png\n", encoding="utf-8")
    with pytest.raises(DataError, match="file<TAB>text"):
        load_text_lines(tmp_path, "train")
    with pytest.raises(DataError, match="labels.txt"):
        load_text_lines(tmp_path / "nowhere", "train")


def test_crnn_over_zoo_backbones_reads_stride_8_columns():
    import cnnlab
    from cnnlab.models.crnn import BackboneCRNN

    for name in ("resnet18", "vgg11"):
        model = BackboneCRNN(name).eval()
        assert model(torch.zeros(1, 1, 32, 256)).shape == (1, 256 // 8, 11)
        # the trunk is the zoo classifier's, under its own names: a classifier's weights load into it
        zoo = cnnlab.create_model(name, input_size=(1, 32, 32), num_classes=10).state_dict()
        own = {k.removeprefix("features.model."): v for k, v in model.state_dict().items() if k.startswith("features.")}
        assert own and all(k in zoo and zoo[k].shape == v.shape for k, v in own.items())
    assert cnnlab.model_info("crnn_resnet18").task == "ocr"
