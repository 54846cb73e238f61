"""What a task is: everything about a vision problem that is not the network or the training loop.

The trainer, the checkpoint and the verbs (``train``, ``eval``, ``predict``, ``serve``, ``export``,
``bench``) know nothing of classes, masks or boxes; they ask the run's :class:`Task`:

=====================  ==========================================================================
data                   :meth:`Task.load_split` reads the kind of dataset the task needs
batching               :meth:`Task.make_batch` gathers (and, in training, augments) examples,
                       moving targets with the image; :meth:`Task.prepare` puts a batch on the
                       device as the model takes it
loss                   :meth:`Task.training_step` runs the model and returns the loss and the
                       sums to log, once per optimisation phase (one phase, or two for a GAN)
metrics                :meth:`Task.evaluate` over a whole split; :meth:`Task.scalars` the figures
                       logged per epoch; :meth:`Task.report` prints them for ``cnnlab eval``
prediction             :meth:`Task.read_input` reads a file as one example (an image, a clip),
                       :meth:`Task.predictor` for a checkpoint, :meth:`Task.describe` for JSON,
                       :meth:`Task.print_predictions` for people
service                :meth:`Task.response` shapes the HTTP answer
=====================  ==========================================================================

A new task subclasses :class:`Task`, registers with :func:`cnnlab.tasks.register_task`, and its
models register with ``task=<name>``: ``cnnlab train <model>`` then picks it up (docs/architecture.md).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import nn


@dataclass
class Batch:
    """A batch of examples: the model's ``inputs``, the task's ``targets`` (per example) and ``extra``
    (what holds for the whole batch, such as the normalisation).

    :meth:`select` keeps some examples (how a data-parallel rank keeps its shard of a global batch):
    tensors are indexed along their first dimension, lists item by item, dicts value by value.
    """

    inputs: Any
    targets: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.inputs)

    def select(self, index: torch.Tensor) -> "Batch":
        def pick(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return value[index]
            if isinstance(value, (list, tuple)):
                return [value[int(i)] for i in index]
            if isinstance(value, dict):
                return {k: pick(v) for k, v in value.items()}
            return value

        return replace(self, inputs=pick(self.inputs), targets=pick(self.targets))


@dataclass
class DeployForm:
    """A network as ``export`` and ``bench infer`` take it: ``module`` maps one float tensor of
    ``input_size`` per example to one tensor; ``examples(n, seed)`` draws inputs for the numerical checks
    and the timing; ``class_dim`` is the dimension of class scores in the output, or None where the output
    is an image (then variants are compared value by value, within ``tolerance``)."""

    module: nn.Module
    input_size: tuple[int, ...]
    examples: Callable[[int, int], torch.Tensor]
    input_description: str
    output_description: str
    class_dim: int | None = 1
    tolerance: float = 0.0
    names: tuple[str, str] = ("images", "logits")  # of the exported file's input and output


@dataclass
class StepOutput:
    """What one optimisation step reports: the loss to back-propagate and sums to average over the epoch.

    ``sums`` maps a name (``loss``, ``acc``) to a detached tensor summed over the ``count`` examples of
    the step; the trainer logs ``train_<name>`` = total sum / total count.
    """

    loss: torch.Tensor
    sums: dict[str, torch.Tensor]
    count: int


class CheckpointPredictor:
    """What every task's predictor starts from: the checkpoint, its model on ``device`` in eval mode, the
    class names (a keypoint model's keypoints) and the input size its preprocessing fits images to."""

    def __init__(self, checkpoint, *, device: str | torch.device = "cpu"):
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        self.model = checkpoint.model.to(self.device).eval()
        self.class_names = list(checkpoint.class_names)
        self.input_size = tuple(checkpoint.preprocessing.input_size)


class Task(abc.ABC):
    """Base class of the tasks; see the module docstring for who calls what."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    phases: ClassVar[tuple[str, ...]] = ("model",)  # one optimiser (and schedule) per phase
    shown: ClassVar[tuple[str, ...]] = ()  # scalars shown in the epoch line, besides the loss
    primary: ClassVar[str] = "loss"  # the scalar that says how good a model is
    higher_is_better: ClassVar[bool] = False
    default_data: ClassVar[str] = ""  # the dataset a run uses when the configuration keeps the classification default
    # Training settings (optimizer, lr, batch_size ...) the task's papers prescribe, used wherever the
    # configuration keeps the classification default (a GAN's Adam 2e-4, beta1 0.5, say).
    defaults: ClassVar[dict[str, Any]] = {}
    # The dimension of the model's output tensor that holds class scores (N x K, N x K x H x W: 1; a text
    # recogniser's N x T x K: -1). ``cnnlab bench infer`` compares variants' decisions along it.
    class_dim: ClassVar[int] = 1

    def __init__(self, config=None):
        from ..train.config import TrainConfig

        self.config = config if config is not None else TrainConfig()

    # --- data -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def load_split(self, name: str, split: str, data_dir: str | None = None):
        """The ``split`` (train or test) of dataset ``name`` (a registered name or a folder)."""

    def data_fields(self, train_set) -> dict[str, Any]:
        """What the checkpoint records of the data: ``class_names``, ``input_size``, ``mean``, ``std``
        and ``extra`` (a task's own fields)."""
        return {"class_names": list(train_set.class_names), "input_size": tuple(train_set.input_size),
                "mean": tuple(train_set.mean), "std": tuple(train_set.std), "extra": {}}

    def check_data(self, train_set, test_set) -> None:
        """Refuse a pair of splits the task cannot train on, before any epoch runs."""

    def for_checkpoint(self, dataset, checkpoint, name: str):
        """``dataset`` as ``checkpoint``'s model sees it (its classes, in its order), or refused in one line."""
        return dataset

    def init_from(self, model: nn.Module, run_dir: str) -> str:
        """Start ``model`` from the checkpoint in ``run_dir`` (``--init-from``): a model with an
        ``encoder_from(classifier)`` method takes what it can use (a segmentation encoder from a
        classifier's trunk), any other takes every tensor whose name and shape match. Returns what was done."""
        from ..errors import ConfigError
        from ..train.checkpoint import load_checkpoint

        source = load_checkpoint(run_dir).model
        if hasattr(model, "encoder_from"):
            copied = int(model.encoder_from(source))
        else:
            own = model.state_dict()
            matched = {k: v for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape}
            model.load_state_dict(matched, strict=False)
            copied = len(matched)
        if copied == 0:
            raise ConfigError(f"--init-from {run_dir}: none of its layers fits {type(model).__name__}")
        return f"started {copied} layers from {run_dir}"

    def check_meta(self, model: nn.Module, meta, what: str) -> None:
        """Refuse checkpoint metadata that does not fit ``model`` (built on the meta device)."""

    def model_options(self) -> dict[str, Any]:
        """Builder arguments the task's configuration chooses (an embedding's backbone and dimension ...),
        passed to :func:`cnnlab.registry.model_arguments` beside the ones the data decide."""
        return {}

    # --- batches ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def make_batch(self, dataset, indices: torch.Tensor, *, train: bool,
                   generator: torch.Generator | None = None) -> Batch:
        """Examples ``indices`` of ``dataset`` on the CPU, augmented (targets moved alike) when ``train``."""

    def epoch_order(self, dataset, generator: torch.Generator) -> torch.Tensor:
        """The order of one training epoch's examples; the trainer cuts it into batches of ``batch_size``
        (the default: a random permutation; a task may group examples, e.g. P classes x K images)."""
        return torch.randperm(len(dataset), generator=generator)

    @abc.abstractmethod
    def prepare(self, batch: Batch, device: torch.device, *, channels_last: bool = False) -> Batch:
        """The batch on ``device`` as the model takes it (normalised, in the chosen memory layout)."""

    # --- training ---------------------------------------------------------------------------------
    def phase_parameters(self, model: nn.Module, phase: str):
        """The parameters the optimiser of ``phase`` updates."""
        return model.parameters()

    @abc.abstractmethod
    def training_step(self, forward: Callable[..., Any], model: nn.Module, batch: Batch,
                      phase: str) -> StepOutput:
        """Run ``forward`` (the model, wrapped for data parallelism or compiled) on the batch; return
        the loss of optimisation ``phase`` and what to log."""

    def end_epoch(self, model: nn.Module, run_dir: Path, record: dict[str, Any],
                  log: Callable[[str], None]) -> None:
        """Called once per epoch after the checkpoint is written (``record`` is the epoch's history line):
        a task may write files of its own into ``run_dir`` (a GAN's sample grid) or ``log`` a warning."""

    # --- evaluation -------------------------------------------------------------------------------
    @abc.abstractmethod
    def evaluate(self, model: nn.Module, dataset, *, device: torch.device | str = "cpu",
                 batch_size: int = 256, precision: str = "fp32", channels_last: bool = False,
                 preprocessing=None, **options: Any) -> dict[str, Any]:
        """Metrics of ``model`` over the whole of ``dataset``; ``preprocessing`` (a checkpoint's) overrides
        the dataset's normalisation."""

    def load_eval_split(self, name: str, split: str, data_dir: str | None = None, *, boxes: str | None = None,
                        box_score: float = 0.0):
        """The split ``cnnlab eval`` measures on: :meth:`load_split`, or with ``boxes`` (a COCO detection
        results file; those scoring at least ``box_score``) the examples those boxes make, for a task that
        works on detected objects."""
        if boxes:
            from ..errors import ConfigError

            raise ConfigError(f"--boxes: the {self.name} task does not work on detected boxes (keypoint models do)")
        return self.load_split(name, split, data_dir)

    results_options: ClassVar[dict[str, Any]] = {}  # what :meth:`evaluate` needs to keep per-example results

    def write_results(self, metrics: dict[str, Any], dataset, path: Path) -> int:
        """Write the per-example results of an evaluation run with :attr:`results_options` into ``path``
        (``cnnlab eval --write-results``; a detector writes COCO detection results); returns their count."""
        from ..errors import ConfigError

        raise ConfigError(f"--write-results: the {self.name} task writes no results file (detectors write COCO "
                          "detection results)")

    def scalars(self, metrics: dict[str, Any]) -> dict[str, float]:
        """The figures of :meth:`evaluate` logged each epoch (as ``test_<name>``, ``val_<name>``)."""
        return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def checkpoint_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """What ``meta.json`` keeps of a test evaluation."""
        return {f"test_{k}": v for k, v in self.scalars(metrics).items()}

    def report(self, metrics: dict[str, Any], checkpoint, *, dataset: str, split: str) -> None:
        """Print an evaluation for people (``cnnlab eval``)."""
        print("  ".join(f"{k} {v:.4f}" for k, v in self.scalars(metrics).items()))

    # --- using a trained model --------------------------------------------------------------------
    @abc.abstractmethod
    def predictor(self, checkpoint, *, device: str | torch.device = "cpu"):
        """An object whose ``predict_batch(uint8 N x C x H x W, **options)`` gives one prediction per image."""

    def read_input(self, checkpoint, path: str, *, invert: bool | None = None):
        """The file (or folder) ``path`` as the model takes one example, with what was done to it
        (:class:`~cnnlab.train.meta.InputView`); ``cnnlab predict`` reads its inputs here. The default:
        an image, through the checkpoint's preprocessing (a clip task reads GIFs and frame folders)."""
        from ..predict import open_image

        return checkpoint.preprocessing.view(open_image(path), invert=invert)

    def describe(self, prediction: Any) -> Any:
        """A prediction as JSON-ready values."""
        return prediction

    def deploy_form(self, checkpoint) -> "DeployForm | None":
        """What ``cnnlab export`` writes and ``cnnlab bench infer`` times, where that is not the checkpoint's
        model on its normalised images (None, the default): a GAN's generator, latents in and images out.
        A task whose model cannot be shipped as one tensor in, one tensor out raises a clear error."""
        return None

    def output_description(self, shape: Sequence[int]) -> str:
        """What the model's output of ``shape`` (one image: 1 x K, or 1 x K x H x W) means, as an exported
        file records it."""
        return f"logits N x {' x '.join(map(str, shape[1:]))}, in class_names order"

    def print_predictions(self, paths: Sequence[str], predictions: Sequence[Any], *, out_dir: Path | None = None,
                          images: Sequence[Any] = ()) -> list[str]:
        """Print predictions for people; a task that draws them (masks, boxes) writes files into
        ``out_dir`` (``images`` are the inputs as the model saw them) and returns their paths."""
        for path, prediction in zip(paths, predictions):
            print(path, self.describe(prediction))
        return []

    # --- the service (``POST /v1/<endpoint>``, for every task but classification's own routes) ----
    endpoint: ClassVar[str] = ""

    def request_options(self, fields: dict[str, str], served) -> dict[str, Any]:
        """The request's fields (``top_k``, ``threshold``, ``format`` ...) checked and converted; raise
        :func:`cnnlab.serve.errors.bad_request` for a bad one."""
        return {}

    def response(self, served, prediction: Any, options: dict[str, Any]) -> dict[str, Any]:
        """The service's JSON answer for one image's prediction."""
        return {"result": self.describe(prediction)}

    def add_routes(self, app, service) -> None:
        """Add endpoints of the task's own beyond ``/v1/<endpoint>`` (called once per served task).

        ``service`` (:class:`cnnlab.serve.app.Service`) gives ``upload``, ``pick(name, task)``,
        ``prepare`` and ``require_ready``, so these endpoints keep the service's limits and errors.
        """

    # --- pictures (``cnnlab viz predictions``) ------------------------------------------------------
    pictures_kinds: ClassVar[tuple[str, ...]] = ()

    def pictures(self, checkpoint, dataset, out_dir: Path, *, kind: str, limit: int) -> list[dict[str, Any]]:
        """Draw ``kind`` (one of :attr:`pictures_kinds`: predictions beside ground truth, worst images ...)
        for the first ``limit`` examples of ``dataset`` into ``out_dir``; one ``{"path": ...}`` per file."""
        from ..errors import ConfigError

        raise ConfigError(f"the {self.name} task draws no pictures")
