"""The ``cnnlab summary``, ``shape`` and ``compare`` verbs: outputs parse, numbers match, mistakes are one line."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch

import cnnlab
from cnnlab.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_summary_json_matches_pytorch(capsys):
    code, out, _ = run(capsys, "summary", "lenet5", "--json")
    assert code == 0
    data = json.loads(out)
    model = cnnlab.create_model("lenet5")
    assert data["total_params"] == sum(p.numel() for p in model.parameters())
    c1 = data["layers"][0]
    assert c1["output_shape"] == [6, 28, 28] and c1["params"] == 156
    assert data["total_flops"] == 2 * data["total_macs"]


def test_summary_input_option_resizes_the_model(capsys):
    code, out, _ = run(capsys, "summary", "lenet5", "--input", "3x32x32", "--csv")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0]["output_shape"] == "6x32x32" and int(rows[0]["params"]) == (5 * 5 * 3 + 1) * 6


def test_summary_table_and_markdown(capsys):
    code, out, _ = run(capsys, "summary", "lenet5", "--depth", "1")
    assert code == 0 and "features" in out and "classifier" in out and "1 MAC = 2 FLOPs" in out
    code, out, _ = run(capsys, "summary", "lenet5", "--markdown")
    assert code == 0 and out.startswith("| layer |")


def test_summary_of_a_checkpoint(capsys, tmp_path):
    from cnnlab.train.checkpoint import save_checkpoint

    model = cnnlab.create_model("lenet5")
    save_checkpoint(tmp_path, model, {"arch": "lenet5", "arch_kwargs": {}, "class_names": [str(i) for i in range(10)],
                                      "input_size": [1, 28, 28], "mean": [0.286], "std": [0.353]})
    path = next(p for p in tmp_path.rglob("*.safetensors"))
    code, out, _ = run(capsys, "summary", str(path), "--json")
    assert code == 0 and json.loads(out)["total_params"] == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("argv, message", [
    (("summary", "lenet6"), "unknown model"),
    (("summary", "lenet5", "--input", "1x2"), "cannot take"),
    (("summary", "lenet5", "--input", "axb"), "bad input size"),
    (("shape", "7"), "at least one layer"),
    (("shape", "7", "conv:z3"), "cannot read"),
    (("compare", "nosuchnet"), "unknown model"),
])
def test_mistakes_are_one_line_errors(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


def test_shape_single_layer_flags_the_deck_example(capsys):
    code, out, _ = run(capsys, "shape", "--input", "7", "--kernel", "3", "--stride", "3")
    assert code == 0
    assert "(7 - 3 + 2*0)/3 + 1 = 2.33" in out and "does not fit" in out and "padding 1" in out


def test_shape_chain_json(capsys):
    code, out, _ = run(capsys, "shape", "3x32x32", "conv:k5,s1,p2,c10", "pool:k2,s2", "--json")
    assert code == 0
    data = json.loads(out)
    steps = data["steps"]
    conv = torch.nn.Conv2d(3, 10, 5, padding=2)
    pooled = torch.nn.MaxPool2d(2, 2)(conv(torch.zeros(1, 3, 32, 32)))
    assert data["input"] == [3, 32, 32]  # C x H x W, the order of PyTorch and of `cnnlab summary --input`
    assert steps[0]["output"] == [10, 32, 32] and steps[0]["params"] == sum(p.numel() for p in conv.parameters())
    assert steps[1]["output"] == list(pooled.shape[1:])
    assert steps[1]["receptive_field"]["size"] == [6, 6]


def test_shape_refuses_the_decks_hxwxc_order_in_one_line(capsys):
    code, out, err = run(capsys, "shape", "3x32x32", "conv:k5,s1,p2,c10")
    assert code == 0 and "10x32x32" in out and "(5*5*3 + 1)*10 = 760" in out
    code, out, err = run(capsys, "shape", "32x32x3", "conv:k5,s1,p2,c10")
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "ambiguous" in err and "write 3x32x32" in err


def test_shape_prints_the_output_size_formula_with_the_kernel_subtracted(capsys):
    # LeNet's C1: 28x28 input, six 5x5 filters, padding 2. One deck writes (n_h + k_h - 1 + p_h); its own
    # worked step, like the formula, subtracts the kernel: 28 - 5 + 2*2 + 1 = 28.
    code, out, _ = run(capsys, "shape", "1x28x28", "conv:k5,p2,c6")
    assert code == 0
    assert "(28 - 5 + 2*2)/1 + 1 = 28" in out and "6x28x28" in out and "(5*5*1 + 1)*6 = 156" in out
    assert "28 + 5" not in out


def test_shape_flags_overlapping_pooling_and_counts_flattened_values(capsys):
    code, out, _ = run(capsys, "shape", "256x13x13", "pool:k3,s2", "fc:4096")
    assert code == 0
    assert "overlapping pooling: stride 2 < window 3" in out
    assert "flatten 256*6*6 = 9,216 values -> 4096" in out and "(256*6*6 + 1)*4096 = 37752832" in out
    code, out, _ = run(capsys, "shape", "1x4x4", "pool:k2,s2")
    assert code == 0 and "overlapping" not in out


def test_compare_lists_measured_and_published_figures(capsys):
    code, out, _ = run(capsys, "compare", "lenet5*", "--json", "--sort", "params")
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["lenet5", "lenet5_modern"]  # batch norm adds parameters
    model = cnnlab.create_model("lenet5")
    assert rows[0]["params"] == sum(p.numel() for p in model.parameters())
    assert rows[0]["year"] == cnnlab.model_info("lenet5").year and rows[0]["depth"] == 5
