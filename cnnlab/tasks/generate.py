"""Image generation with GANs (deck 000: image generation among what CNNs do; deck 003: a common vision task).

A GAN is one model holding a generator and a discriminator (:class:`cnnlab.models.dcgan.GAN`),
trained as two optimisation phases, each with its own optimiser: ``discriminator`` (real images
against the generator's, Goodfellow et al. 2014, Eq. 1) then ``generator`` (the non-saturating loss
``-log D(G(z))``, §3 of the same paper) on the same fakes. The defaults are DCGAN's §4 recipe: Adam,
learning rate 2e-4, beta1 0.5, batches of 128, no weight decay, a constant rate.

Data are classification sets (:class:`~cnnlab.data.ImageDataset`): the images, scaled to [-1, 1]
(the generator's tanh range), and, for the class-conditional GAN, their labels.

Each epoch's evaluation draws samples from a fixed set of latents and measures them against the
test split: FID and KID in a feature space (``--feature-model RUN``: a cnnlab classifier of the same
data; by default raw pixels), the diversity of a batch relative to real images, the discriminator's
mean output on real and generated test images and, for the conditional GAN with a classifier, how
often the classifier gives a sample the class it was asked for. A generator that has **collapsed**
(diversity below :data:`COLLAPSE` of the real images') or a training that has **diverged** (the
discriminator tells every image apart: D(real) > 0.99 and D(fake) < 0.01) is reported, and its FID
is logged as ``fid_unsound`` rather than ``fid``: the best checkpoint is never such an epoch. A grid
of samples from the same latents is written each epoch to ``RUN/samples/epoch-NNN.png``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageDataset, load_dataset
from ..data.transforms import normalize
from ..errors import ConfigError, DataError
from ..generation import FeatureSpace, frechet_distance, image_grid, kernel_inception_distance, pairwise_diversity
from ..generation.grids import interpolate_latents, save_png, to_uint8
from . import register_task
from .base import Batch, CheckpointPredictor, DeployForm, StepOutput, Task

COLLAPSE = 0.3  # a batch whose mean pairwise distance is below 30% of real images' has collapsed
SAMPLES = 1000  # generated images per evaluation (at most the test split's size)
GRID = 64
MIN_BATCH = 64  # generated images are drawn in batches of at least this many
HALF = 0.5  # images are scaled to [-1, 1]: (x / 255 - 0.5) / 0.5


def sample_latents(gan: nn.Module, n: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``n`` latents N(0, I) from a seeded generator (the same seed draws the same images)."""
    return torch.randn(n, gan.latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)


@torch.no_grad()
def generate_images(gan: nn.Module, z: torch.Tensor, classes: torch.Tensor | None = None, *,
                    batch_size: int = 500) -> torch.Tensor:
    """uint8 N x C x H x W samples of ``gan`` for latents ``z`` (and ``classes``, conditional GANs).

    The generator normalises with the statistics of the batch it draws, as in training (the DCGAN
    practice; running averages lag far behind a generator that changes every step). Its running
    averages are left as they were, and a batch smaller than :data:`MIN_BATCH` is drawn among that many
    latents (the first ones are the asked-for; the rest come from the same latents, mirrored), so
    a single image is drawn as it would be in a full batch.
    """
    n = len(z)
    if n == 0:
        return torch.zeros(0, dtype=torch.uint8)
    if n < MIN_BATCH:  # pad with negated latents: as likely under N(0, I), and deterministic
        reps = -(-MIN_BATCH // n)
        z = torch.cat([z if i % 2 == 0 else -z for i in range(reps)])[:MIN_BATCH]
        classes = classes.repeat(reps)[:MIN_BATCH] if classes is not None else None
    out = []
    with batch_statistics(gan.generator):
        for s in range(0, len(z), batch_size):
            y = classes[s:s + batch_size].to(z.device) if classes is not None else None
            out.append(to_uint8(gan.generate(z[s:s + batch_size], y)))
    return torch.cat(out)[:n]


@contextlib.contextmanager
def batch_statistics(module: nn.Module):
    """Run ``module`` with its batch norms on the batch's statistics (train mode), its running averages
    and mode restored afterwards."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    was_training = module.training
    module.train()
    try:
        yield module
    finally:
        for m, (mean, var, count) in zip(norms, saved):
            m.running_mean.copy_(mean), m.running_var.copy_(var), m.num_batches_tracked.copy_(count)
        module.train(was_training)


@torch.no_grad()
def realness(gan: nn.Module, images: torch.Tensor, classes: torch.Tensor | None = None, *,
             batch_size: int = 500) -> torch.Tensor:
    """The discriminator's probability that each uint8 image is real, on batch statistics as in training."""
    c, device = images.shape[1], next(gan.parameters()).device
    out = []
    with batch_statistics(gan.discriminator):
        for s in range(0, len(images), batch_size):
            x = normalize(images[s:s + batch_size].to(device), (HALF,) * c, (HALF,) * c)
            y = classes[s:s + batch_size].to(device) if classes is not None else None
            out.append(torch.sigmoid(gan(x, y)).cpu())
    return torch.cat(out)


class GeneratorPredictor(CheckpointPredictor):
    """A generator checkpoint in use: :meth:`sample` draws images; ``predict_batch`` (``predict``,
    the service's batcher) gives the discriminator's probability that each image is real."""

    def __init__(self, checkpoint, *, device: str | torch.device = "cpu"):
        super().__init__(checkpoint, device=device)

    @property
    def conditional(self) -> bool:
        return bool(self.model.conditional)

    def class_index(self, name: str | int | None) -> int | None:
        if name is None or name == "":
            return None
        if not self.conditional:
            raise ConfigError(f"{self.checkpoint.arch} is not class-conditional: it takes no class")
        if isinstance(name, int) or str(name).isdigit():
            k = int(name)
            if not 0 <= k < len(self.class_names):
                raise ConfigError(f"class {k} is out of range 0-{len(self.class_names) - 1}")
            return k
        lowered = {c.lower(): i for i, c in enumerate(self.class_names)}
        if str(name).lower() not in lowered:
            raise ConfigError(f"no class '{name}'; the classes are {', '.join(self.class_names)}")
        return lowered[str(name).lower()]

    def classes_for(self, n: int, k: int | None) -> torch.Tensor | None:
        if not self.conditional:
            return None
        if k is not None:
            return torch.full((n,), k, dtype=torch.long)
        return torch.arange(n) % len(self.class_names)  # every class in turn

    def sample(self, n: int, *, seed: int = 0, class_name: str | int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``n`` uint8 images and their classes (None for an unconditional GAN)."""
        if not 1 <= n <= 4096:
            raise ConfigError(f"n must be between 1 and 4096, got {n}")
        k = self.class_index(class_name)
        classes = self.classes_for(n, k)
        z = sample_latents(self.model, n, seed, self.device)
        return generate_images(self.model, z, classes), classes

    def interpolate(self, rows: int, steps: int = 10, *, seed: int = 0,
                    class_name: str | int | None = None) -> torch.Tensor:
        """``rows`` walks between two latents in ``steps`` steps: uint8 (rows x steps) x C x H x W, row by row."""
        if not 1 <= rows <= 64 or not 2 <= steps <= 64:
            raise ConfigError(f"interpolation takes 1-64 rows of 2-64 steps, got {rows} x {steps}")
        k = self.class_index(class_name)
        ends = sample_latents(self.model, 2 * rows, seed, self.device)
        path = interpolate_latents(ends[:rows], ends[rows:], steps)  # steps x rows x D
        z = path.transpose(0, 1).reshape(rows * steps, -1)
        classes = self.classes_for(rows * steps, k)
        if classes is not None and k is None:  # one class per row
            classes = (torch.arange(rows) % len(self.class_names)).repeat_interleave(steps)
        return generate_images(self.model, z, classes)

    @torch.no_grad()
    def predict_batch(self, images: torch.Tensor, *_: Any) -> list[dict[str, float]]:
        pre = self.checkpoint.preprocessing
        x = normalize(images.to(self.device), pre.mean, pre.std)
        p = torch.sigmoid(self.model(x)).cpu()
        return [{"real": float(v)} for v in p]


@register_task
class GenerationTask(Task):
    """Generate images: a GAN's two networks trained against each other."""

    name = "generate"
    description = "image generation: samples of a GAN (and the discriminator's view of an image)"
    phases = ("discriminator", "generator")
    shown = ("d_loss", "fid", "diversity")
    primary = "fid"
    higher_is_better = False
    defaults = {"optimizer": "adam", "lr": 2e-4, "momentum": 0.5, "weight_decay": 0.0, "batch_size": 128,
                "schedule": "constant", "epochs": 5}

    def __init__(self, config=None):
        super().__init__(config)
        self._pending: tuple[int, torch.Tensor] | None = None
        self._features: FeatureSpace | None = None

    # --- data
    def load_split(self, name: str, split: str, data_dir: str | None = None) -> ImageDataset:
        return load_dataset(name, split, data_dir, image_size=self.config.image_size or None)

    def check_data(self, train_set: ImageDataset, test_set: ImageDataset) -> None:
        c, h, w = train_set.input_size
        if h != w or h < 16:
            raise DataError(f"{train_set.name}: a DCGAN makes square images of at least 16 x 16, not {h} x {w} "
                            "(resize with --image-size)")
        if tuple(test_set.input_size) != tuple(train_set.input_size):
            raise DataError(f"{test_set.name}: test images are {test_set.input_size}, training images "
                            f"{train_set.input_size}")

    def data_fields(self, train_set: ImageDataset) -> dict[str, Any]:
        c = train_set.input_size[0]
        return {"class_names": list(train_set.class_names), "input_size": tuple(train_set.input_size),
                "mean": (HALF,) * c, "std": (HALF,) * c,
                "extra": {"feature_model": self.config.feature_model or None}}

    def for_checkpoint(self, dataset: ImageDataset, checkpoint, name: str) -> ImageDataset:
        """``eval`` of a checkpoint measures in the feature space its training did (unless the
        configuration names another)."""
        import dataclasses

        if not self.config.feature_model and (checkpoint.meta.extra or {}).get("feature_model"):
            self.config = dataclasses.replace(self.config, feature_model=checkpoint.meta.extra["feature_model"])
        return dataset

    def model_options(self) -> dict[str, Any]:
        return {"width": self.config.gan_width}

    # --- batches
    def make_batch(self, dataset: ImageDataset, indices: torch.Tensor, *, train: bool,
                   generator: torch.Generator | None = None) -> Batch:
        return Batch(dataset.images[indices], dataset.labels[indices])

    def prepare(self, batch: Batch, device: torch.device, *, channels_last: bool = False) -> Batch:
        c = batch.inputs.shape[1]
        x = normalize(batch.inputs.to(device, non_blocking=True), (HALF,) * c, (HALF,) * c)  # [-1, 1]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return Batch(x, batch.targets.to(device, non_blocking=True), batch.extra)

    # --- training
    def phase_parameters(self, model: nn.Module, phase: str):
        return getattr(model, phase).parameters()

    def training_step(self, forward, model: nn.Module, batch: Batch, phase: str) -> StepOutput:
        x, n = batch.inputs, len(batch.inputs)
        y = batch.targets if model.conditional else None
        if phase == "discriminator":
            z = torch.randn(n, model.latent_dim, device=x.device)
            fake = model.generator(z, y)  # N x C x H x W in [-1, 1]
            real_logit = model.discriminator(x, y)
            fake_logit = model.discriminator(fake.detach(), y)  # no gradient into the generator here
            loss = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                    + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
            self._pending = (id(model), fake)  # the generator's phase scores the same fakes again
            return StepOutput(loss, {"d_loss": loss.detach().double() * n,
                                     "d_real": torch.sigmoid(real_logit.detach()).double().sum(),
                                     "d_fake": torch.sigmoid(fake_logit.detach()).double().sum()}, n)
        if phase != "generator":
            raise ConfigError(f"a GAN trains the phases discriminator and generator, not '{phase}'")
        if self._pending is not None and self._pending[0] == id(model) and len(self._pending[1]) == n:
            fake = self._pending[1]
        else:
            fake = model.generator(torch.randn(n, model.latent_dim, device=x.device), y)
        self._pending = None
        logit = model.discriminator(fake, y)
        loss = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))  # non-saturating: -log D(G(z))
        return StepOutput(loss, {"loss": loss.detach().double() * n, "g_loss": loss.detach().double() * n}, n)

    # --- evaluation
    def feature_space(self, input_size: Sequence[int], device: torch.device | str = "cpu",
                      run: str | None = None) -> FeatureSpace:
        run = run if run is not None else (self.config.feature_model or None)
        if self._features is None or self._features.run != run:
            self._features = FeatureSpace(run, device=device, input_size=input_size)
        return self._features

    @torch.no_grad()
    def evaluate(self, model: nn.Module, dataset: ImageDataset, *, device: torch.device | str = "cpu",
                 batch_size: int = 500, precision: str = "fp32", channels_last: bool = False,
                 preprocessing=None, feature_model: str | None = None, samples: int = SAMPLES,
                 **options: Any) -> dict[str, Any]:
        device = torch.device(device)
        was_training = model.training
        model.eval()
        n = min(len(dataset), samples)
        real = dataset.images[:n]
        classes = dataset.labels[:n] if model.conditional else None
        fake = generate_images(model, sample_latents(model, n, 0, device), classes, batch_size=batch_size)
        space = self.feature_space(dataset.input_size, device, feature_model)
        fr, ff = space(real), space(fake)
        fid = frechet_distance(fr, ff)
        kid, kid_std = kernel_inception_distance(fr, ff, subsets=10, subset_size=min(1000, n // 2 or 1))
        diversity = pairwise_diversity(ff) / max(pairwise_diversity(fr), 1e-12)
        d_real = realness(model, real, classes).mean()
        d_fake = realness(model, fake, classes).mean()
        finite = bool(torch.isfinite(ff).all())
        collapsed = diversity < COLLAPSE
        diverged = (float(d_real) > 0.99 and float(d_fake) < 0.01) or not finite
        metrics: dict[str, Any] = {"fid": fid, "kid": kid, "kid_std": kid_std, "diversity": diversity,
                                   "d_real": float(d_real), "d_fake": float(d_fake), "collapsed": collapsed,
                                   "diverged": diverged, "images": n, "features": space.name}
        if model.conditional and space.model is not None:
            metrics["class_acc"] = float((space.classify(fake) == classes).float().mean())
            metrics["real_class_acc"] = float((space.classify(real) == dataset.labels[:n]).float().mean())
        model.train(was_training)
        return metrics

    def scalars(self, metrics: dict[str, Any]) -> dict[str, float]:
        sound = not (metrics["collapsed"] or metrics["diverged"])
        out = {("fid" if sound else "fid_unsound"): metrics["fid"]}
        out.update({k: float(metrics[k]) for k in ("kid", "diversity", "d_real", "d_fake", "class_acc")
                    if k in metrics})
        out.update(collapsed=float(metrics["collapsed"]), diverged=float(metrics["diverged"]))
        return out

    def checkpoint_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {**{f"test_{k}": v for k, v in self.scalars(metrics).items()}, "features": metrics["features"]}

    def report(self, metrics: dict[str, Any], checkpoint, *, dataset: str, split: str) -> None:
        print(f"{checkpoint.arch} against {dataset}/{split} ({metrics['images']} real, {metrics['images']} generated; "
              f"features: {metrics['features']})")
        print(f"  FID {metrics['fid']:.4f}  KID {metrics['kid']:.5f} ± {metrics['kid_std']:.5f}  "
              f"diversity {metrics['diversity']:.3f} of real  D(real) {metrics['d_real']:.3f}  "
              f"D(fake) {metrics['d_fake']:.3f}")
        if "class_acc" in metrics:
            print(f"  classifier accuracy on conditional samples {metrics['class_acc']:.4f} "
                  f"(on real images {metrics['real_class_acc']:.4f})")
        for line in health(metrics):
            print("  " + line)

    def end_epoch(self, model: nn.Module, run_dir: Path, record: dict[str, Any],
                  log: Callable[[str], None]) -> None:
        device = next(model.parameters()).device
        classes = (torch.arange(GRID) % model.num_classes) if model.conditional else None
        grid = image_grid(generate_images(model, sample_latents(model, GRID, 1, device), classes), columns=8)
        model.train()
        save_png(grid, Path(run_dir) / "samples" / f"epoch-{record['epoch']:03d}.png")
        flags = {"collapsed": record.get("test_collapsed"), "diverged": record.get("test_diverged")}
        for line in health({"collapsed": bool(flags["collapsed"]), "diverged": bool(flags["diverged"]),
                            "diversity": record.get("test_diversity", 0.0), "d_real": record.get("test_d_real", 0.0),
                            "d_fake": record.get("test_d_fake", 0.0)}):
            log(f"epoch {record['epoch']}: {line}")

    # --- using a trained model
    def deploy_form(self, checkpoint) -> DeployForm:
        """The generator alone, on standing batch-norm statistics (:mod:`cnnlab.generation.deploy`)."""
        from ..generation.deploy import ShippedGenerator

        shipped = ShippedGenerator(checkpoint.model)
        c, h, w = checkpoint.input_size
        k = shipped.num_classes
        codes = f"{shipped.latent_dim} N(0, 1) latents" + (f" then a one-hot class of {k} (class_names order)" if k else "")
        return DeployForm(shipped, (shipped.code_size, 1, 1), shipped.examples,
                          f"N x {shipped.code_size} x 1 x 1 float32 codes: {codes}",
                          f"images N x {c} x {h} x {w} in [-1, 1]: grey level = (x + 1) * 127.5",
                          class_dim=None, tolerance=1 / 127.5, names=("codes", "images"))

    def predictor(self, checkpoint, *, device: str | torch.device = "cpu") -> GeneratorPredictor:
        return GeneratorPredictor(checkpoint, device=device)

    def describe(self, prediction: dict[str, float]) -> dict[str, float]:
        return {"real": round(prediction["real"], 6)}

    def print_predictions(self, paths: Sequence[str], predictions, *, out_dir: Path | None = None,
                          images: Sequence[Any] = ()) -> list[str]:
        for path, p in zip(paths, predictions):
            print(f"{path}  D(real) {p['real']:.4f}")
        return []

    # --- the service: POST /v1/generate (no image in: its own route)
    def add_routes(self, app, service) -> None:
        from ..serve.generation import add_generation_routes

        add_generation_routes(app, service, self)


def health(metrics: dict[str, Any]) -> list[str]:
    """Warnings for a collapsed or diverged generator (empty when it looks sound)."""
    lines = []
    if metrics.get("collapsed"):
        lines.append(f"MODE COLLAPSE: the samples' diversity is {metrics['diversity']:.2f} of real images' "
                     f"(below {COLLAPSE}); this epoch is not kept as the best checkpoint")
    if metrics.get("diverged"):
        lines.append(f"DIVERGED: the discriminator wins outright (D(real) {metrics['d_real']:.3f}, D(fake) "
                     f"{metrics['d_fake']:.3f}), the generator gets no gradient; this epoch is not kept as the best")
    return lines
