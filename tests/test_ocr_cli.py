"""Text recognition through the command line: a small CRNN trained for two epochs on the bundled digit
lines lowers its CTC loss, then eval (greedy and beam), predict (text with per-character confidences)
and serve (POST /v1/ocr, bad input refused) use the run; ``data make`` reproduces the bundled set."""

from __future__ import annotations

import io
import json
import time

import httpx
import pytest
import torch
from PIL import Image

from browser import answer_on_page, needs_chromium, wait_ready
from cnnlab.cli import main
from cnnlab.ocr.ctc import beam_decode, greedy_decode
from cnnlab.ocr.metrics import recognition_scores
from cnnlab.tasks import task_for_model
from cnnlab.tasks.ocr import load_line_split
from cnnlab.train.checkpoint import load_checkpoint, read_meta

class FixedTable(torch.nn.Module):
    """A stand-in recogniser answering the same T x (K + 1) probability table for every line."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = table

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.table.log()[None].expand(len(x), -1, -1)


COMMON = ["--epochs", "2", "--batch-size", "16", "--lr", "0.002", "--schedule", "constant", "--threads", "1",
          "--limit-train", "96", "--limit-test", "16", "--plan", "no"]


def run_json(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("ocr") / "crnn"
    assert main(["train", "crnn_small", *COMMON, "--out", str(run), "--quiet"]) == 0
    return run


def test_training_lowers_the_ctc_loss_and_eval_reports_both_decodings(trained, capsys):
    assert task_for_model("crnn_small") == "ocr" and task_for_model("crnn") == "ocr"
    meta = read_meta(trained)
    assert meta.task == "ocr" and meta.dataset == "digit-strings-mini" and meta.class_names == list("0123456789")
    history = [json.loads(line) for line in (trained / "history.jsonl").read_text().splitlines()]
    # the first epoch starts from a uniform guess (about T log 11 nats per line); two epochs learn the blank
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    evaluation = run_json(capsys, "eval", str(trained), "--limit", "16")
    assert evaluation["task"] == "ocr"
    for key in ("seq_acc", "cer", "seq_acc_beam", "cer_beam"):
        assert 0 <= evaluation[key] <= max(1.0, evaluation[key]) and key in evaluation
    # the figures are those of the decoders on the model's outputs
    test = load_line_split("digit-strings-mini", "test").subset(slice(0, 16))
    ckpt = load_checkpoint(trained)
    with torch.no_grad():
        probs = ckpt.model.eval()(ckpt.preprocessing.normalize(test.images)).exp()
    greedy = recognition_scores([t for t, _, _ in greedy_decode(probs, ckpt.class_names)], test.texts)
    beam = recognition_scores([t for t, _ in beam_decode(probs, ckpt.class_names, beam=8)], test.texts)
    assert evaluation["cer"] == pytest.approx(greedy["cer"]) and evaluation["cer_beam"] == pytest.approx(beam["cer"])


def test_predict_prints_text_with_character_confidences_and_serve_answers(trained, tmp_path, capsys):
    test = load_line_split("digit-strings-mini", "test")
    Image.fromarray(test.images[0, 0].numpy()).save(tmp_path / "line.png")
    out = run_json(capsys, "predict", str(trained), str(tmp_path / "line.png"))
    (item,) = out
    pred = item["prediction"]
    assert "".join(c["char"] for c in pred["characters"]) == pred["text"]
    assert all(0 < c["confidence"] <= 1 and 0 <= c["column"] < pred["columns"] for c in pred["characters"])
    assert pred["columns"] == 63
    ckpt = load_checkpoint(trained)
    with torch.no_grad():
        probs = ckpt.model.eval()(ckpt.preprocessing.normalize(test.images[:1])).exp()
    assert pred["text"] == greedy_decode(probs, ckpt.class_names)[0][0]
    # the predictor's characters on a table worked by hand: columns 3 3 - 3 7 -> "337"
    table = torch.full((5, 11), 0.01)
    for t, k in enumerate([4, 4, 0, 4, 8]):
        table[t, k] = 0.9
    table[1, 4] = 0.8
    ckpt.model = FixedTable(table / table.sum(-1, keepdim=True))
    from cnnlab.tasks.ocr import OcrPredictor

    (fixed,) = OcrPredictor(ckpt).predict_batch(test.images[:1])
    assert fixed["text"] == "337" and [c["column"] for c in fixed["characters"]] == [0, 3, 4]
    p9 = 0.9  # column 0 (0.9 of 1.0) beats column 1 (0.8 of 0.9) for the first 3
    assert [c["confidence"] for c in fixed["characters"]] == pytest.approx([p9, p9, p9], abs=1e-4)
    assert fixed["confidence"] == pytest.approx(p9 ** 3, abs=1e-4)
    main(["predict", str(trained), str(tmp_path / "line.png")])
    assert repr(pred["text"]) in capsys.readouterr().out
    (picture,) = run_json(capsys, "viz", "predictions", str(trained), "--limit", "3", "--out", str(tmp_path / "v"))
    assert picture["kind"] == "alignment" and picture["truth"] == test.texts[:3]
    assert Image.open(picture["path"]).size == (3 * 256, 3 * (3 * 32 + 30))  # three lines, drawn 3 times larger

    from cnnlab.serve import BackgroundServer, ServeConfig, build_app

    buf = io.BytesIO()
    Image.fromarray(test.images[0, 0].numpy()).save(buf, format="PNG")
    config = ServeConfig(port=0, max_batch=4, max_wait_ms=5, request_timeout_s=30)
    app = build_app([str(trained)], config)
    with BackgroundServer(app, config) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(300):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        answer = client.post("/v1/ocr", files={"image": ("l.png", buf.getvalue(), "image/png")})
        assert answer.status_code == 200 and answer.json()["result"]["text"] == pred["text"]
        beam = client.post("/v1/ocr", files={"image": ("l.png", buf.getvalue(), "image/png")},
                           data={"decoding": "beam"}).json()["result"]
        assert beam["text"] == pred["beam_text"] and beam["decoding"].startswith("beam")
        bad = client.post("/v1/ocr", files={"image": ("l.png", buf.getvalue(), "image/png")},
                          data={"decoding": "psychic"})
        assert bad.status_code == 400 and "decoding" in json.dumps(bad.json())
        junk = client.post("/v1/ocr", files={"image": ("l.png", b"not an image", "image/png")})
        assert junk.status_code == 400


def test_data_make_reproduces_the_bundled_mini_set(shared_data, tmp_path, capsys):
    from cnnlab.data.datasets import BUNDLED_DIR

    info = run_json(capsys, "data", "make", "digit-strings-mini", "--data-dir", str(shared_data),
                    "--out", str(tmp_path / "mini"))
    assert info["statistics"]["train"]["lines"] == 150 and info["statistics"]["test"]["lines"] == 40
    for split in ("train", "test"):
        assert (tmp_path / "mini" / split / "labels.txt").read_text() == \
            (BUNDLED_DIR / "digit-strings-mini" / split / "labels.txt").read_text()
        for name in ("000000.png", "000007.png"):
            assert (tmp_path / "mini" / split / name).read_bytes() == \
                (BUNDLED_DIR / "digit-strings-mini" / split / name).read_bytes()



@needs_chromium
def test_the_page_shows_the_text_the_service_reads(trained, tmp_path):
    from cnnlab.serve import BackgroundServer, ServeConfig, build_app

    test = load_line_split("digit-strings-mini", "test")
    line = tmp_path / "line.png"
    Image.fromarray(test.images[1, 0].numpy()).save(line)
    config = ServeConfig(port=0)
    with BackgroundServer(build_app([str(trained)], config), config) as server:
        wait_ready(server.url)
        want = httpx.post(server.url + "/v1/ocr", files={"image": ("l.png", line.read_bytes(), "image/png")}).json()["result"]
        shown = answer_on_page(server.url, line, "read", texts={"text": "#ocr-text", "beam": "#ocr-beam"},
                               counts={"characters": "#ocr-characters li"})
    assert shown["errors"] == [] and not shown["classify_card_shown"]
    assert shown["text"] == (want["text"] or "(nothing read)") and shown["characters"] == len(want["characters"])
    assert f'"{want["beam_text"]}"' in shown["beam"]

def test_bench_infer_times_a_text_recogniser_against_its_own_eager_reading(trained, capsys):
    result = run_json(capsys, "bench", "infer", str(trained), "--variants", "eager,onnxruntime", "--batch-sizes", "4",
                      "--rounds", "1", "--seconds", "0.2", "--threads", "1", "--limit-test", "16")
    # no labels per image for text: the variants are scored by the columns' classes they agree on with eager
    assert result["metric"] == "top1_agreement_with_eager" and result["samples"] == 16
    assert result["quality"]["eager"] == 1.0 and result["quality"]["onnxruntime"] > 0.99
    assert result["images_per_second"]["4"]["onnxruntime"] > 0
