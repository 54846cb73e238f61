"""A checkpoint is one atomic unit: a save is killed (SIGKILL, in a child process) before every one of
its file-system operations in turn, and at many moments of a loop of saves, and after each kill the
run folder loads the previous or the new checkpoint, whole (weights, metadata and training state of
one and the same save), and takes the next save."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

import cnnlab
from cnnlab.errors import CheckpointError
from cnnlab.train.checkpoint import (checkpoint_dir, load_checkpoint, load_train_state, new_run_dir, read_meta,
                                     save_checkpoint)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

META = {"arch": "lenet5", "arch_kwargs": {}, "input_size": [1, 28, 28], "class_names": list("abcdefghij"),
        "mean": [0.5], "std": [0.25]}
# Everything a save does to the file system raises one of these audit events before it happens.
FS_EVENTS = {"open", "os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.chmod", "os.scandir",
             "os.listdir", "os.truncate", "os.link", "os.symlink"}


def model_of(epoch: int) -> torch.nn.Module:
    """A LeNet-5 whose every weight equals ``epoch``: which save a loaded model came from is plain."""
    model = cnnlab.create_model("lenet5")
    with torch.no_grad():
        for p in model.state_dict().values():
            p.fill_(epoch)
    return model


def save_epoch(run, epoch: int) -> None:
    save_checkpoint(run, model_of(epoch), {**META, "epoch": epoch},
                    {"epoch": epoch, "momentum": torch.full((3,), float(epoch)), "history": json.dumps([epoch])})


def in_child(work, kill_at: int | None = None) -> tuple[bool, int]:
    """Run ``work()`` in a forked child that SIGKILLs itself just before its ``kill_at``-th file-system
    operation; returns (was it killed, operations counted)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            torch.set_num_threads(1)
            count = [0]

            def hook(event, args):
                if event in FS_EVENTS:
                    count[0] += 1
                    if count[0] == kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)

            sys.addaudithook(hook)
            work()
            os.write(write_end, str(count[0]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        reported = f.read()
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    return killed, int(reported) if reported else -1


def loaded_epoch(run) -> int:
    """The epoch of the checkpoint that loads, checking that its weights, metadata and training state
    all come from that one save."""
    ckpt = load_checkpoint(run)
    epoch = ckpt.meta.epoch
    assert all(bool((t == epoch).all()) for t in ckpt.model.state_dict().values()), epoch
    state = load_train_state(run)
    assert state["epoch"] == epoch and torch.equal(state["momentum"], torch.full((3,), float(epoch)))
    assert json.loads(state["history"]) == [epoch] and read_meta(run).epoch == epoch
    return epoch


def leftovers(run) -> list[str]:
    return sorted(p.name for p in run.iterdir() if p.name != "last")


def write_flat_checkpoint(run, epoch: int) -> None:
    """A run folder of the earlier layout: the four files side by side in the run folder."""
    from safetensors.torch import save_file

    from cnnlab.train.checkpoint import flatten_state

    run.mkdir(parents=True, exist_ok=True)
    stamp = str(1000 + epoch)
    state = {k: v.contiguous() for k, v in model_of(epoch).state_dict().items()}
    save_file(state, str(run / "model.safetensors"), metadata={"stamp": stamp, "format": "cnnlab-checkpoint"})
    tensors, tree = flatten_state({"epoch": epoch, "momentum": torch.full((3,), float(epoch)),
                                   "history": json.dumps([epoch])})
    save_file(tensors, str(run / "train_state.safetensors"), metadata={"stamp": stamp})
    (run / "train_state.json").write_text(json.dumps({"stamp": stamp, "state": tree}))
    (run / "meta.json").write_text(json.dumps({"format": "cnnlab-checkpoint", "version": 1, "stamp": stamp,
                                               **META, "epoch": epoch}))


@pytest.mark.parametrize("before", ["checkpoint", "flat", "nothing"])
def test_a_kill_before_any_operation_of_a_save_leaves_a_whole_checkpoint(tmp_path, before):
    def prepare(run):
        if before == "checkpoint":
            save_epoch(run, 1)
        elif before == "flat":
            write_flat_checkpoint(run, 1)

    # How many file-system operations does one save make?
    probe = tmp_path / "probe"
    prepare(probe)
    killed, total = in_child(lambda: save_epoch(probe, 2))
    assert not killed and total >= 10 and loaded_epoch(probe) == 2

    outcomes, left = {}, {}
    for k in range(1, total + 1):
        run = tmp_path / f"k{k}"
        prepare(run)
        killed, _ = in_child(lambda: save_epoch(run, 2), kill_at=k)
        assert killed, k
        try:
            outcomes[k] = loaded_epoch(run)
        except CheckpointError as e:
            assert before == "nothing", (k, str(e))  # only a first save may leave nothing to load...
            outcomes[k] = None
        # ... and whatever the kill left, the next save (a resumed run's) works and cleans up.
        save_epoch(run, 3)
        assert loaded_epoch(run) == 3, k
        left[k] = leftovers(run) + [f"last/{p.name}" for p in (run / "last").glob("*")]
    # The kills spanned the commit: early ones kept the previous checkpoint, late ones the new one.
    assert outcomes[1] == (1 if before != "nothing" else None) and outcomes[total] == 2, outcomes
    assert set(outcomes.values()) <= {1 if before != "nothing" else None, 2}
    whole = sorted(f"last/{name}" for name in ("meta.json", "model.safetensors", "train_state.json",
                                               "train_state.safetensors"))
    assert all(sorted(v) == whole for v in left.values()), left


def test_a_kill_while_a_save_finishes_an_interrupted_one_leaves_a_whole_checkpoint(tmp_path):
    """The save after a kill first repairs what the kill left; killing that repair anywhere is safe too."""

    def killed_at(run, k):
        save_epoch(run, 1)
        in_child(lambda: save_epoch(run, 2), kill_at=k)
        return run

    # The worst instant: last/ renamed away, the complete new folder not yet renamed into place.
    worst = next(k for k in range(1, 100) if not (killed_at(tmp_path / f"w{k}", k) / "last").exists())
    probe = tmp_path / "probe"
    killed_at(probe, worst)
    _, total = in_child(lambda: save_epoch(probe, 3))
    seen = set()
    for j in range(1, total + 1):
        run = tmp_path / f"j{j}"
        killed_at(run, worst)
        assert not (run / "last").exists() and (run / ".last.new").is_dir() and (run / ".last.old").is_dir()
        killed, _ = in_child(lambda: save_epoch(run, 3), kill_at=j)
        assert killed
        seen.add(loaded_epoch(run))  # 2 (the interrupted save, completed) or 3
        save_epoch(run, 4)
        assert loaded_epoch(run) == 4 and leftovers(run) == []
    assert seen == {2, 3}


def test_kills_at_random_moments_of_saves_in_a_loop(tmp_path):
    run = tmp_path / "run"
    save_epoch(run, 1)
    rng = random.Random(0)

    def saves_forever(epoch: int):
        while True:
            epoch += 1
            save_epoch(run, epoch)

    # One save takes a few milliseconds here; kills land anywhere in the first few saves, mid-write too.
    start = time.perf_counter()
    save_epoch(run, 2)
    per_save = max(time.perf_counter() - start, 1e-3)
    seen = set()
    for _ in range(25):
        before = loaded_epoch(run)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(read_end)
                torch.set_num_threads(1)
                epoch = loaded_epoch(run)  # read before the go: the kill is timed against the saves alone
                os.write(write_end, b"go")
                saves_forever(epoch)
            finally:
                os._exit(0)
        os.close(write_end)
        os.read(read_end, 2)  # the child is running
        os.close(read_end)
        time.sleep(rng.uniform(0, 4 * per_save))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        after = loaded_epoch(run)
        assert after >= before
        seen.add(after - before)
    assert len(seen) > 1  # some kills came before a save committed, some after


def test_earlier_flat_run_folders_load_and_move_to_last(tmp_path):
    run = tmp_path / "old-run"
    write_flat_checkpoint(run, 4)
    (run / "history.jsonl").write_text('{"epoch": 4}\n')
    assert checkpoint_dir(run) == run and loaded_epoch(run) == 4
    assert load_checkpoint(run).run_dir == run
    save_epoch(run, 5)
    assert sorted(p.name for p in run.iterdir()) == ["history.jsonl", "last"]
    assert checkpoint_dir(run) == run / "last" and loaded_epoch(run) == 5
    ckpt = load_checkpoint(run / "last" / "model.safetensors")  # a file inside a checkpoint names it too
    assert ckpt.path == run / "last" and ckpt.run_dir == run


def test_new_runs_never_replace_earlier_ones(tmp_path):
    base = tmp_path / "runs" / "lenet5"
    assert new_run_dir(base) == base and base.is_dir()
    assert new_run_dir(base) == base  # still empty: nothing to protect
    (base / "history.jsonl").write_text("{}\n")
    assert new_run_dir(base) == tmp_path / "runs" / "lenet5-2"
    assert new_run_dir(base) == tmp_path / "runs" / "lenet5-2"  # claimed but empty, so reused
    (tmp_path / "runs" / "lenet5-2" / "x").write_text("")
    assert new_run_dir(base) == tmp_path / "runs" / "lenet5-3"


def test_train_into_an_existing_run_writes_a_numbered_folder(isolated_data_root, tmp_path):
    from cnnlab.train import train

    small = dict(model="lenet5", data="fashion-mnist-mini", limit_train=128, limit_test=64, batch_size=64, epochs=1)
    first = train(out=str(tmp_path / "r"), **small)
    before = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    lines = []
    second = train(out=str(tmp_path / "r"), log=lines.append, seed=1, **small)
    assert first.run_dir == tmp_path / "r" and second.run_dir == tmp_path / "r-2"
    assert any("r holds an earlier run" in line and str(tmp_path / "r-2") in line for line in lines), lines
    assert {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()} == before  # untouched
    assert read_meta(second.run_dir).config["out"] == str(tmp_path / "r-2")
    assert read_meta(second.run_dir).config["seed"] == 1


RESUME_SCRIPT = r"""
import os, signal, sys
from cnnlab.train import train
run, kill = sys.argv[1], sys.argv[2] == "kill"
retired = []

def hook(event, args):
    # SIGKILL in the worst instant of the second epoch's save: the old last/ renamed away, the new one
    # complete but not yet renamed into place.
    if event == "os.rename" and str(args[0]).endswith(os.sep + "last"):
        retired.append(1)
    elif event == "os.rename" and retired and kill:
        os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(hook)
train(model="lenet5_modern", data="fashion-mnist-mini", limit_train=256, limit_test=128, batch_size=64,
      epochs=3, schedule="onecycle", threads=1, out=run, stop_after=2)
"""


def test_a_run_killed_mid_save_resumes_to_the_same_weights(isolated_data_root, tmp_path, one_thread):
    from cnnlab.train import train

    env = {**os.environ, "PYTHONPATH": str(os.path.dirname(os.path.dirname(cnnlab.__file__)))}
    proc = subprocess.run([sys.executable, "-c", RESUME_SCRIPT, str(tmp_path / "cut"), "kill"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not (tmp_path / "cut" / "last").exists() and (tmp_path / "cut" / ".last.new").is_dir()
    resumed = train(resume=tmp_path / "cut")
    whole = train(model="lenet5_modern", data="fashion-mnist-mini", limit_train=256, limit_test=128, batch_size=64,
                  epochs=3, schedule="onecycle", threads=1, out=str(tmp_path / "whole"))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    a, b = load_checkpoint(resumed.run_dir).model.state_dict(), load_checkpoint(whole.run_dir).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == ["best", "curves.png", "epochs.csv", "history.jsonl",
                                                                 "last", "steps.csv"]  # no leftover of the kill
