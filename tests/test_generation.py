"""Image generation: the DCGAN's layers against the paper's guidelines, FID / KID against independent
formulas (scipy's general matrix square root, a plain double loop), a tiny DCGAN trained through the
command line (the discriminator learns, the samples move towards the data), mode-collapse detection,
and the generate verb and the service's POST /v1/generate on the trained run."""

from __future__ import annotations

import base64
import io
import json
import math
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from browser import answer_on_page, needs_chromium, wait_ready
from cnnlab.cli import main
from cnnlab.generation import frechet_distance, kernel_inception_distance, pairwise_diversity
from cnnlab.registry import create_model
from cnnlab.tasks import get_task, task_for_model
from cnnlab.train.checkpoint import load_checkpoint, read_meta, read_weights

COMMON = ["--epochs", "3", "--batch-size", "32", "--limit-train", "512", "--limit-test", "200", "--threads", "1",
          "--plan", "no", "--gan-width", "16"]


# --- measures ---------------------------------------------------------------------------------------

def test_fid_matches_scipy_sqrtm_on_the_same_features():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 12, generator=g, dtype=torch.float64)
    mixing = torch.randn(12, 12, generator=g, dtype=torch.float64) * 0.4 + torch.eye(12, dtype=torch.float64)
    fake = torch.randn(300, 12, generator=g, dtype=torch.float64) @ mixing + 0.7
    a, b = real.numpy(), fake.numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy_linalg.sqrtm(s1 @ s2).real  # the general (non-symmetric) square root, as in Heusel et al.'s code
    want = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(root))
    assert frechet_distance(real, fake) == pytest.approx(want, rel=1e-8)
    # a pure shift d of identical features: FID = |d|^2 exactly
    assert frechet_distance(real, real + 0.5) == pytest.approx(12 * 0.25, rel=1e-9)
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-8)


def test_kid_is_the_unbiased_cubic_kernel_mmd():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = torch.randn(25, 5, generator=g, dtype=torch.float64) * 1.3 + 0.2

    def k(a, b):
        return (float(np.dot(a, b)) / 5 + 1) ** 3

    xs, ys = x.numpy()[:25], y.numpy()
    kyy = sum(k(ys[i], ys[j]) for i in range(25) for j in range(25) if i != j) / (25 * 24)
    # one subset of 25 from each side: with 25 images a side, all of y and a permutation of x[:25]
    mean, std = kernel_inception_distance(x[:25], y, subsets=1, subset_size=25)
    kxx = sum(k(xs[i], xs[j]) for i in range(25) for j in range(25) if i != j) / (25 * 24)
    kxy = sum(k(xs[i], ys[j]) for i in range(25) for j in range(25)) / (25 * 25)
    assert mean == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-9) and std == 0.0


def test_diversity_is_the_mean_distance_between_two_different_images():
    points = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])
    assert pairwise_diversity(points) == pytest.approx((5 + 4 + 3) / 3)
    assert pairwise_diversity(torch.ones(10, 3)) == 0.0


# --- the networks -----------------------------------------------------------------------------------

@pytest.mark.parametrize("side", [28, 32])
def test_dcgan_follows_the_paper_guidelines(side):
    gan = create_model("dcgan", image_size=side, in_channels=1)
    shapes, hooks = [], []
    for m in gan.generator.body:
        if isinstance(m, nn.ConvTranspose2d):
            hooks.append(m.register_forward_hook(lambda mod, i, o: shapes.append(tuple(o.shape[1:]))))
    out = gan.generate(torch.randn(4, 100))
    first = (4, 4) if side == 28 else (4, 4)
    assert gan.generator.start == (256, first[0])
    half, quarter = side // 2, side // 4 + (side % 8 != 0) * 0  # 28: 14, 7; 32: 16, 8
    assert shapes == [(128, quarter, quarter), (64, half, half), (1, side, side)]
    assert out.shape == (4, 1, side, side) and out.abs().max() <= 1  # tanh output
    assert isinstance(gan.generator.body[-1], nn.Tanh)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gan.generator.body[-2:])  # no BN on the output
    d = gan.discriminator.features
    assert isinstance(d[1], nn.LeakyReLU) and d[1].negative_slope == 0.2  # no BN on the input layer
    assert all(not isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in gan.modules())  # strided convs only
    assert all(m.stride == (2, 2) for m in d if isinstance(m, nn.Conv2d))
    assert gan(out).shape == (4,)
    weights = torch.cat([m.weight.detach().flatten() for m in gan.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert float(weights.mean().abs()) < 2e-3 and float(weights.std()) == pytest.approx(0.02, rel=0.05)  # §4: N(0, 0.02)


def test_projection_discriminator_adds_the_class_inner_product():
    gan = create_model("cgan", num_classes=10, image_size=28, in_channels=1).eval()
    x = torch.randn(3, 1, 28, 28)
    y = torch.tensor([0, 4, 9])
    d = gan.discriminator
    h = d.features(x)
    want = d.logit(h).flatten() + (d.embed(y) * h.sum((2, 3))).sum(1)  # Miyato & Koyama Eq. 3
    assert torch.allclose(gan(x, y), want, atol=1e-5)
    assert not torch.allclose(gan(x, y), gan(x, (y + 1) % 10))
    assert task_for_model("dcgan") == "generate" and task_for_model("cgan") == "generate"


# --- training through the command line ---------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("gan") / "dcgan"
    assert main(["train", "dcgan", *COMMON, "--out", str(run), "--quiet"]) == 0  # bundled Fashion-MNIST mini
    return run


def test_training_carries_two_networks_and_two_optimisers(trained):
    meta = read_meta(trained)
    assert meta.task == "generate" and meta.dataset == "fashion-mnist-mini"
    # DCGAN's §4 recipe, taken where the command line kept the classification defaults
    assert meta.config["optimizer"] == "adam" and meta.config["lr"] == 2e-4 and meta.config["momentum"] == 0.5
    weights = read_weights(trained)
    assert any(k.startswith("generator.") for k in weights) and any(k.startswith("discriminator.") for k in weights)
    from safetensors.torch import load_file

    state_files = list((trained / "last").glob("*state*"))
    assert state_files, list((trained / "last").iterdir())
    history = [json.loads(line) for line in (trained / "history.jsonl").read_text().splitlines()]
    assert len(history) == 3 and all("train_d_loss" in h and "train_g_loss" in h for h in history)
    assert sorted(p.name for p in (trained / "samples").iterdir()) == [f"epoch-00{i}.png" for i in (1, 2, 3)]
    assert (trained / "curves.png").exists()
    # The discriminator learns: from 2 ln 2 (it cannot tell) its loss falls, and it rates real test
    # images above generated ones.
    assert history[-1]["train_d_loss"] < 2 * math.log(2) - 0.2
    assert history[-1]["test_d_real"] > history[-1]["test_d_fake"] + 0.2


def test_samples_move_from_noise_towards_the_data(trained):
    task = get_task("generate")
    test = task.load_split("fashion-mnist-mini", "test").subset(slice(0, 200))
    untrained = create_model("dcgan", image_size=28, in_channels=1, width=16)
    before = task.evaluate(untrained, test)
    after = task.evaluate(load_checkpoint(trained).model, test)
    assert after["fid"] < 0.95 * before["fid"]
    # Uniform noise is farther from the data than the generator's samples
    noise = torch.randint(0, 256, (200, 1, 28, 28), dtype=torch.uint8)
    assert after["fid"] < frechet_distance(task.feature_space((1, 28, 28))(test.images),
                                           task.feature_space((1, 28, 28))(noise))


def test_a_collapsed_generator_is_flagged_and_never_the_best(tmp_path):
    task = get_task("generate")
    test = task.load_split("fashion-mnist-mini", "test").subset(slice(0, 100))
    gan = create_model("dcgan", image_size=28, in_channels=1, width=16)
    nn.init.zeros_(gan.generator.body[-2].weight)  # every sample the same grey image
    metrics = task.evaluate(gan, test)
    assert metrics["collapsed"] and metrics["diversity"] < 1e-6
    scalars = task.scalars(metrics)
    assert "fid" not in scalars and scalars["fid_unsound"] > 0 and scalars["collapsed"] == 1.0
    from cnnlab.tasks.generate import health

    assert any("MODE COLLAPSE" in line for line in health(metrics))


def test_generate_verb_writes_grids_and_interpolations(trained, tmp_path, capsys):
    assert main(["generate", str(trained), "--n", "16", "--out", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    grid = np.asarray(Image.open(result["path"]))
    assert result["images"] == 16 and grid.shape == (2 * (2 + 2 * 30), 2 * (2 + 8 * 30))  # 2 rows of 8, scale 2
    assert main(["generate", str(trained), "--n", "3", "--interpolate", "--steps", "5", "--out", str(tmp_path),
                 "--json"]) == 0
    walk = json.loads(capsys.readouterr().out)
    assert walk["images"] == 15 and walk["path"].endswith("interpolation.png")
    # the same seed draws the same images; a class is refused by an unconditional GAN
    p = get_task("generate").predictor(load_checkpoint(trained))
    a, _ = p.sample(5, seed=3)
    b, _ = p.sample(5, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, p.sample(5, seed=4)[0])
    assert main(["generate", str(trained), "--class", "Sneaker", "--out", str(tmp_path)]) != 0
    assert "not class-conditional" in capsys.readouterr().err


def test_eval_reports_fid_and_health(trained, capsys):
    assert main(["eval", str(trained), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fid"] > 0 and 0 <= out["d_fake"] <= 1 and out["features"] == "pixels"


def test_serve_generate_answers_a_grid(trained):
    from cnnlab.serve import BackgroundServer, ServeConfig, build_app

    config = ServeConfig(port=0, max_batch=4, max_wait_ms=5, request_timeout_s=30)
    app = build_app([str(trained)], config)
    with BackgroundServer(app, config) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        for _ in range(300):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        answer = client.post("/v1/generate", json={"n": 4, "seed": 7})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        grid = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["grid_png"]))))
        assert body["n"] == 4 and grid.shape == (2 + 2 * 30, 2 + 2 * 30)
        want, _ = get_task("generate").predictor(load_checkpoint(trained)).sample(4, seed=7)
        assert np.array_equal(grid[2:30, 2:30], want[0, 0].numpy())
        assert client.post("/v1/generate", json={"n": 1000}).status_code == 400
        assert client.post("/v1/generate", json={"class": "Sneaker"}).status_code == 400
        assert client.post("/v1/generate", content=b"[1, 2]").status_code == 400


# --- conditional samples, resuming, shipping -----------------------------------------------------------

class RealImagesOfTheClass(nn.Module):
    """A stand-in conditional GAN whose generator answers real test images: of the asked class, or (with
    ``shift``) of the next class, so the class accuracy it must get is known beforehand."""

    conditional, latent_dim, num_classes = True, 4, 10

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, shift: int = 0):
        super().__init__()
        self.generator, self.discriminator = nn.Identity(), nn.Linear(1, 1)
        self.bank = [images[labels == k] for k in range(10)]
        self.shift = shift

    def generate(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        picks = [self.bank[(int(k) + self.shift) % 10][i % len(self.bank[(int(k) + self.shift) % 10])]
                 for i, k in enumerate(y)]
        return torch.stack(picks).float() / 127.5 - 1  # uint8 -> [-1, 1], as a generator's tanh gives

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.zeros(len(x))


def test_class_accuracy_of_conditional_samples_is_the_classifiers_verdict():
    import cnnlab

    classifier = str(Path(cnnlab.__file__).parent / "bundled/pretrained/lenet5_modern-fashion-mnist")
    task = get_task("generate")
    test = task.load_split("fashion-mnist-mini", "test").subset(slice(0, 300))
    faithful = task.evaluate(RealImagesOfTheClass(test.images, test.labels), test, feature_model=classifier)
    # the same images, classified here without the task: the share given the class they were asked for
    gan = RealImagesOfTheClass(test.images, test.labels)
    images = ((gan.generate(None, test.labels) + 1) * 127.5).round().to(torch.uint8)
    ckpt = load_checkpoint(classifier)
    with torch.no_grad():
        verdict = ckpt.model.eval()(ckpt.preprocessing.normalize(images)).argmax(1)
    assert faithful["class_acc"] == pytest.approx(float((verdict == test.labels).float().mean()))
    assert faithful["class_acc"] > 0.8  # the classifier is right on ~91% of Fashion-MNIST
    blind = task.evaluate(RealImagesOfTheClass(test.images, test.labels, shift=1), test, feature_model=classifier)
    assert blind["class_acc"] < 0.15


def test_a_gan_run_resumes_to_the_same_weights(tmp_path):
    from cnnlab.train.trainer import train

    kw = dict(model="dcgan", epochs=2, batch_size=32, limit_train=128, limit_test=100, threads=1, plan="no",
              gan_width=8)
    train(out=str(tmp_path / "whole"), **kw)
    train(out=str(tmp_path / "cut"), stop_after=1, **kw)
    assert main(["train", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0
    whole, cut = read_weights(tmp_path / "whole"), read_weights(tmp_path / "cut")
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)
    lines = (tmp_path / "cut" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def test_export_ships_the_generator_on_standing_statistics(trained, tmp_path, capsys):
    import onnxruntime

    from cnnlab.generation.deploy import ShippedGenerator
    from cnnlab.tasks.generate import generate_images

    out = run_json_cli(capsys, "export", str(trained), "--out", str(tmp_path / "g.onnx"))
    assert out["input"]["name"] == "codes" and out["input"]["shape"] == ["N", 100, 1, 1] and out["check"]["ok"]
    gan = load_checkpoint(trained).model
    shipped = ShippedGenerator(gan)
    codes = shipped.examples(512, 7)
    session = onnxruntime.InferenceSession(str(tmp_path / "g.onnx"))
    (images,) = session.run(None, {"codes": codes.numpy()})
    with torch.no_grad():
        mine = shipped(codes)
        alone = shipped(codes[:1])
    assert np.allclose(images, mine.numpy(), atol=1e-5)
    assert torch.allclose(alone[0], mine[0], atol=1e-6)  # one image does not depend on its batch
    # standing statistics stand in for a large batch's own: the images differ by a fraction of a grey
    # level on average (training's running averages, which lag behind the generator: several levels)
    batch = generate_images(gan, codes[:, :, 0, 0]).float()
    assert (((mine + 1) * 127.5).round() - batch).abs().mean() < 2
    bench = run_json_cli(capsys, "bench", "infer", str(trained), "--variants", "eager,onnxruntime", "--seconds",
                         "0.05", "--rounds", "1", "--batch-sizes", "8")
    assert bench["metric"].startswith("values_within") and bench["quality"]["onnxruntime"] == 1.0


def run_json_cli(capsys, *argv):
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@needs_chromium
def test_the_page_draws_samples_of_a_served_gan(trained, tmp_path):
    from cnnlab.serve import BackgroundServer, ServeConfig, build_app

    picture = tmp_path / "any.png"
    Image.new("L", (28, 28), 128).save(picture)
    config = ServeConfig(port=0, max_batch=4, max_wait_ms=5, request_timeout_s=30)
    with BackgroundServer(build_app([str(trained)], config), config) as server:
        wait_ready(server.url)
        want = httpx.post(server.url + "/v1/generate", json={"n": 16, "seed": 0}).json()
        shown = answer_on_page(server.url, picture, "generated", texts={"caption": "#gen-caption"},
                               counts={"grid": "#gen-grid[src^='data:image/png;base64,']"})
    assert shown["errors"] == [] and not shown["classify_card_shown"] and shown["grid"] == 1
    assert shown["caption"].startswith(f"{want['n']} images of 1×28×28 · seed 0")
