"""``cnnlab bench zoo`` and ``degradation``: the tables report what the runs measured."""

import json

from cnnlab.cli import main
from cnnlab.train.checkpoint import load_checkpoint


def test_zoo_table_reports_the_runs(isolated_data_root, tmp_path, capsys):
    md = tmp_path / "results.md"
    argv = ["bench", "zoo", "lenet5_modern", "resnet20", "--data", "fashion-mnist-mini", "--epochs", "1",
            "--limit-train", "256", "--limit-test", "128", "--batch-size", "64", "--device", "cpu",
            "--out", str(tmp_path / "runs"), "--markdown", str(md), "--json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    for row in rows:
        ckpt = load_checkpoint(tmp_path / "runs" / row["model"])
        assert row["params"] == sum(p.numel() for p in ckpt.model.parameters())
        assert row["test_acc"] == ckpt.meta.metrics["test_acc"]
        assert f"| {row['model']} | 1x28x28 | 1 | {row['test_acc']:.4f} |" in md.read_text()
        # The precision column names what the run used: "auto" resolved to the hardware's choice.
        assert row["setup"] == f"{ckpt.meta.config['precision']}, channels-last"
        assert ckpt.meta.config["precision"] in ("fp32", "bf16") and ckpt.meta.config["channels_last"]


def test_degradation_reports_training_error(isolated_data_root, tmp_path, capsys):
    argv = ["bench", "degradation", "plain20", "resnet20", "--data", "fashion-mnist-mini", "--epochs", "1",
            "--limit-train", "128", "--limit-test", "64", "--batch-size", "64", "--device", "cpu",
            "--out", str(tmp_path / "runs"), "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    for name, error in out["final_train_error"].items():
        history = [json.loads(line) for line in (tmp_path / "runs" / name / "history.jsonl").read_text().splitlines()]
        assert error == 1 - history[-1]["train_acc"]
    assert (tmp_path / "runs" / "degradation.png").stat().st_size > 1000
