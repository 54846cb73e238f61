"""Data-parallel training: 2 CPU processes (gloo) against one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from cnnlab import create_model
from cnnlab.cli import main
from cnnlab.train import build_config, train
from cnnlab.train.checkpoint import load_checkpoint
from cnnlab.train.distributed import DistributedContext

# 499 images in batches of 64: the last batch (51) splits 26 / 25, so the loss scaling is exercised.
RUN = dict(model="lenet5", data="fashion-mnist-mini", limit_train=499, limit_test=200, batch_size=64, epochs=2,
           optimizer="sgd", lr=0.9, momentum=0.0, weight_decay=5e-4, schedule="cosine", augment="flip",
           threads=1, seed=3)
# Two ranks sum the two halves of each gradient in another order than one process summing the whole
# batch; over 16 steps the weights stay within this of each other (measured: 4e-8). Without the loss
# scaling of the uneven last batch they drift 8e-5 apart, so the bound also checks that scaling.
TOLERANCE = 1e-6

SCRIPT = """
import json, os, sys
from cnnlab.cli import main
from cnnlab.train import build_config
from cnnlab.train.trainer import Trainer

run, out = json.loads(sys.argv[1]), sys.argv[2]
rank = int(os.environ["RANK"])
# 1. A run stopped after one epoch, counting the images each rank trains on. (In a function, so that no
#    reference to the DDP wrapper outlives the run: the trainer releases its own when run() ends.)
def first_epoch():
    trainer = Trainer(build_config(overrides={**run, "distributed": True, "out": f"{out}/part"}), progress=False,
                      log=lambda s: None)
    seen, forward = [], trainer.forward
    trainer.forward = lambda x: (seen.append(len(x)), forward(x))[1]
    trainer.run(stop_after=1)
    assert trainer.forward is trainer.model  # DDP released
    return seen
with open(f"{out}/seen-{rank}.json", "w") as f:
    json.dump(first_epoch(), f)
# 2. Resumed from its folder.
Trainer(None, resume=f"{out}/part", progress=False, log=lambda s: None).run()
# 3. The command line, to the end (it leaves the process group when done).
args = ["train", run["model"], "--quiet"] + [f"--{k.replace('_', '-')}={v}" for k, v in run.items() if k != "model"]
main(args + ["--distributed", "--out", f"{out}/full", "--json"])
"""


def test_shards_cover_the_global_batch_once():
    idx = torch.arange(51)
    parts = [DistributedContext(True, r, 2).shard(idx) for r in range(2)]
    assert [len(idx[p]) for p in parts] == [26, 25]
    assert torch.equal(torch.cat([idx[p] for p in parts]), idx)
    # Mean losses scaled this way average (as DDP does) to the mean over the whole batch.
    ctx = [DistributedContext(True, r, 2) for r in range(2)]
    losses = torch.rand(51)
    averaged = sum(losses[p].mean() * c.loss_scale(len(idx[p]), 51) for p, c in zip(parts, ctx)) / 2
    assert float(averaged) == pytest.approx(float(losses.mean()), rel=1e-6)


def test_without_the_launcher_a_clear_error(tmp_path, capsys, monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    code = main(["train", "lenet5", "--data", "fashion-mnist-mini", "--distributed", "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "torchrun" in err and "Traceback" not in err


def _weights(path):
    return load_checkpoint(path).model.state_dict()


def test_two_processes_match_one_and_resume(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script), json.dumps(RUN), str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr[:3000]

    # Rank 0 alone reported (one JSON document) and wrote the checkpoint: one history line per epoch.
    summary = json.loads(proc.stdout[proc.stdout.index("{"):proc.stdout.rindex("}") + 1])
    assert summary["epochs"] == 2
    assert len((tmp_path / "full" / "history.jsonl").read_text().splitlines()) == 2

    # Each rank trained on its half of every global batch: 8 batches, 7 of 64 and one of 51.
    seen = [json.loads((tmp_path / f"seen-{r}.json").read_text()) for r in range(2)]
    assert seen[0] == [32] * 7 + [26] and seen[1] == [32] * 7 + [25]

    # One process, same global batch, same seed.
    single = train(build_config(overrides={**RUN, "out": str(tmp_path / "single")}))
    reference, distributed_ = _weights(single.run_dir), _weights(tmp_path / "full")
    for key, value in reference.items():
        assert torch.allclose(distributed_[key], value, atol=TOLERANCE, rtol=0), key
    # ... while training moved the weights far beyond that tolerance from where they started.
    torch.manual_seed(RUN["seed"])
    start = create_model("lenet5").state_dict()
    assert max(float((start[k] - reference[k]).abs().max()) for k in start) > 1000 * TOLERANCE

    # Stopped after epoch 1 and resumed: the same weights as the uninterrupted distributed run.
    resumed = _weights(tmp_path / "part")
    for key, value in distributed_.items():
        assert torch.allclose(resumed[key], value, atol=1e-6, rtol=0), key
