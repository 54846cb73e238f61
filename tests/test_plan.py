"""The execution plan: the fastest of the open settings, measured on the run's own model and machine,
cached, recorded in the run, and never a setting the caller gave."""

from __future__ import annotations

import json

import pytest
import torch

from cnnlab.train import plan as planning
from cnnlab.train.checkpoint import load_checkpoint
from cnnlab.train.plan import Setting
from cnnlab.train.trainer import Trainer, train
from cnnlab.train.config import build_config


def test_only_open_settings_are_candidates(monkeypatch):
    monkeypatch.setattr(planning, "native_bf16", lambda device: False)
    cpu = torch.device("cpu")
    every = planning.candidates(threads=0, channels_last=None, precision="auto", device=cpu)
    assert {s.channels_last for s in every} == {False, True} and {s.precision for s in every} == {"fp32"}
    assert {s.threads for s in every} == {1, torch.get_num_threads()}
    fixed = planning.candidates(threads=1, channels_last=False, precision="fp32", device=cpu)
    assert fixed == [Setting(1, False, "fp32")]
    monkeypatch.setattr(planning, "native_bf16", lambda device: True)
    assert {s.precision for s in planning.candidates(threads=1, channels_last=True, precision="auto", device=cpu)} \
        == {"fp32", "bf16"}
    assert {s.precision for s in planning.candidates(threads=1, channels_last=True, precision="fp32", device=cpu)} \
        == {"fp32"}  # numerics the run asks for are kept


def test_the_fastest_is_chosen_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_PLAN_CACHE", str(tmp_path / "plans.json"))
    costs = {Setting(1, False, "fp32"): 0.004, Setting(1, True, "fp32"): 0.001, Setting(2, False, "fp32"): 0.002}
    calls = []

    def step(setting):  # a stand-in for a training step whose cost depends on the setting
        calls.append(setting)
        end = __import__("time").perf_counter() + costs[setting]
        while __import__("time").perf_counter() < end:
            pass
        return 64

    first = planning.choose(list(costs), step, key="k")
    assert first.chosen == Setting(1, True, "fp32") and first.source == "measured"
    assert first.rates["1 thread, channels-last, fp32"] > first.rates["2 threads, NCHW, fp32"]
    assert len(calls) == 3 * 4  # one warm-up and three timed steps each
    again = planning.choose(list(costs), step, key="k")
    assert again.chosen == first.chosen and again.source == "cache" and len(calls) == 12  # nothing re-measured
    assert json.loads((tmp_path / "plans.json").read_text())["k"]["chosen"]["channels_last"] is True


def test_a_run_measures_records_and_resumes_with_its_plan(isolated_data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_PLAN", "on")
    monkeypatch.setenv("CNNLAB_PLAN_CACHE", str(tmp_path / "plans.json"))
    lines = []
    threads = torch.get_num_threads()
    result = train(model="lenet5_modern", data="fashion-mnist-mini", epochs=1, limit_train=256, limit_test=64,
                   batch_size=64, out=str(tmp_path / "r"), log=lines.append)
    assert any(line.startswith("plan (measured): ") for line in lines), lines
    meta = load_checkpoint(result.run_dir).meta
    plan = meta.extra["plan"]
    chosen = plan["chosen"]
    assert meta.config["channels_last"] == chosen["channels_last"] and meta.config["threads"] == chosen["threads"]
    assert len(plan["rates"]) == 2 * len({1, threads})
    # Given settings win: nothing is measured when nothing is open.
    config = build_config(overrides=dict(model="lenet5", data="fashion-mnist-mini", epochs=1, limit_train=64,
                                         limit_test=32, channels_last=False, threads=1, out=str(tmp_path / "s")))
    trainer = Trainer(config, progress=False, log=lambda s: None)
    assert trainer.plan is None and trainer.config.channels_last is False  # nothing was open, nothing measured
    torch.set_num_threads(threads)


def test_planning_leaves_the_run_bitwise_as_without_it(isolated_data_root, tmp_path, monkeypatch):
    """Measuring uses copies: with the layout and threads it picks fixed by hand, the run is the same."""
    monkeypatch.setenv("CNNLAB_PLAN_CACHE", str(tmp_path / "plans.json"))
    small = dict(model="lenet5_modern", data="fashion-mnist-mini", epochs=1, limit_train=256, limit_test=64,
                 batch_size=64)
    monkeypatch.setenv("CNNLAB_PLAN", "on")
    planned = train(out=str(tmp_path / "a"), **small)
    chosen = load_checkpoint(planned.run_dir).meta.extra["plan"]["chosen"]
    monkeypatch.setenv("CNNLAB_PLAN", "off")
    fixed = train(out=str(tmp_path / "b"), channels_last=chosen["channels_last"], threads=chosen["threads"], **small)
    torch.set_num_threads(2)
    a, b = load_checkpoint(planned.run_dir).model.state_dict(), load_checkpoint(fixed.run_dir).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


# --- inference plans (predict, serve, bench infer) ------------------------------------------------------

def _served_checkpoint(tmp_path):
    from test_serve_units import make_checkpoint

    return load_checkpoint(make_checkpoint(tmp_path / "ckpt"))


def test_an_inference_plan_is_measured_once_and_leaves_the_answers_alone(tmp_path, monkeypatch):
    from cnnlab.predict import Predictor

    monkeypatch.setenv("CNNLAB_PLAN", "on")
    monkeypatch.setenv("CNNLAB_PLAN_CACHE", str(tmp_path / "plans.json"))
    monkeypatch.setattr(planning, "native_bf16", lambda device: False)
    ckpt = _served_checkpoint(tmp_path)
    batch = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    plain = Predictor(ckpt)
    expected = plain.predict_batch(batch, 3)
    planned = Predictor(_served_checkpoint(tmp_path))
    plan = planned.plan(16, threads=1, channels_last=None)
    assert plan.source == "measured" and set(plan.rates) == {"1 thread, NCHW, fp32", "1 thread, channels-last, fp32"}
    assert plan.chosen.precision == "fp32"  # fp32 was asked for: never traded for speed
    got = planned.predict_batch(batch, 3)
    assert [[p.index for p in row] for row in got] == [[p.index for p in row] for row in expected]
    assert max(abs(a.score - b.score) for r, s in zip(got, expected) for a, b in zip(r, s)) < 1e-5
    again = Predictor(_served_checkpoint(tmp_path)).plan(16, threads=1, channels_last=None)
    assert again.source == "cache" and again.chosen == plan.chosen
    other_batch = Predictor(_served_checkpoint(tmp_path)).plan(64, threads=1, channels_last=None, measure=False)
    assert other_batch.source == "default" and other_batch.chosen == Setting(1, False, "fp32")  # not measured


def test_serve_starts_with_the_plan_and_says_which(tmp_path, monkeypatch):
    from cnnlab.serve import ServeConfig
    from cnnlab.serve.models import load_models

    monkeypatch.setenv("CNNLAB_PLAN", "on")
    monkeypatch.setenv("CNNLAB_PLAN_CACHE", str(tmp_path / "plans.json"))
    ckpt = _served_checkpoint(tmp_path)
    served = load_models([ckpt], ServeConfig(max_batch=8, threads=0, channels_last=False))
    model = next(iter(served.values()))
    execution = model.info()["execution"]
    assert execution["source"] == "measured" and len(execution["rates"]) == len({1, torch.get_num_threads()})
    assert model.batcher.threads == execution["chosen"]["threads"]  # the inference thread runs as measured
    fixed = next(iter(load_models([ckpt], ServeConfig(threads=1, channels_last=True)).values()))
    assert fixed.info()["execution"]["source"] == "given" and fixed.predictor.channels_last


def test_bench_infer_reports_the_planned_variant(tmp_path, monkeypatch):
    from cnnlab.bench.infer import measure

    monkeypatch.setenv("CNNLAB_PLAN", "on")
    monkeypatch.setenv("CNNLAB_PLAN_CACHE", str(tmp_path / "plans.json"))
    monkeypatch.setattr(planning, "native_bf16", lambda device: False)
    result = measure("lenet5_modern", batch_sizes=[1, 8], variants=["eager", "planned"], seconds=0.05, rounds=1)
    plan = result["plans"]["planned"]
    assert set(plan["rates"]) == {"1 thread, NCHW, fp32", "1 thread, channels-last, fp32"}
    assert result["quality"]["planned"] == 1.0  # same classes as eager on every random image
    assert result["images_per_second"]["8"]["planned"] > 0
