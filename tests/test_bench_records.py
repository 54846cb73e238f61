"""``cnnlab bench records``: goals and anchors timed in one run, the whole command's time in each row."""

import json

import pytest
import torch

from cnnlab.bench import records
from cnnlab.cli import main


def test_the_pytorch_example_network_is_the_examples():
    net = records.ExampleNet()
    # conv1 32*9+32, conv2 64*32*9+64, fc1 9216*128+128, fc2 128*10+10: the example's 1,199,882 parameters
    assert sum(p.numel() for p in net.parameters()) == 320 + 18_496 + 1_179_776 + 1_290 == 1_199_882
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_goals_are_parsed_and_unknown_ones_named():
    assert [g.recipe for g in records.parse_goals("91,95%")] == ["fast", "record-95"]
    with pytest.raises(Exception, match="unknown goal '92'"):
        records.parse_goals("92")


def test_records_times_goals_and_anchors_side_by_side(isolated_data_root, monkeypatch, capsys, one_thread):
    monkeypatch.setattr(records, "startup_seconds", lambda: 1.25)  # a known start-up, to see it added
    monkeypatch.setattr(records.ExamplePipeline, "epochs_total", 2)
    code = main(["bench", "records", "--data", "fashion-mnist-mini", "--goals", "91", "--anchor-budget", "20",
                 "--limit-train", "600", "--limit-test", "200", "--threads", "1", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["rows"]
    assert set(rows) == {"--recipe fast", "textbook", "pytorch-example"}
    assert len(rows["--recipe fast"]["curve"]) == 4  # the fast recipe's four epochs
    assert len(rows["pytorch-example"]["curve"]) == 2
    for row in rows.values():
        assert row["curve"][0]["seconds"] > 1.25  # start-up counted before the first epoch
        assert all(0 <= p["test_acc"] <= 1 for p in row["curve"])
        assert row["best_acc"] == max(p["test_acc"] for p in row["curve"])
    fast = rows["--recipe fast"]
    assert fast["best_acc"] > 0.6  # 600 images, four epochs: it learns
    reached = fast["reached"]["0.9100"]
    assert fast["met"] == (reached is not None and reached <= 15)
    # every ratio is an anchor's time over the fastest recipe's, for a target both reached
    for key, per_anchor in result["ratios"].items():
        for name, ratio in per_anchor.items():
            assert ratio == pytest.approx(rows[name]["reached"][key] / fast["reached"][key])
