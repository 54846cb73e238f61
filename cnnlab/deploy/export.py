"""Export a model to ONNX or TorchScript, and check the exported file against the PyTorch model.

The exported graph takes the *normalised* float input ``N x C x H x W`` (as the model does) and has a
free batch dimension. A check runs the same random and real inputs through both and reports the
largest absolute difference of the logits and whether the top-1 classes agree.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import CnnlabError

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}


class ExportError(CnnlabError):
    """The model could not be exported, or the export does not match the model."""


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warnings meant for their developers; keep the terminal clean."""
    names = ("", "torch.onnx", "torch.export", "torch._dynamo", "onnxscript")  # "": ONNX Runtime logs to the root
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def export_onnx(model: nn.Module, path: str | Path, input_size: tuple[int, int, int], *, opset: int = 18,
                names: tuple[str, str] = ("images", "logits")) -> Path:
    """Write ``model`` (eval mode) as ONNX with a dynamic batch axis; input and output named ``names``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.randn(2, *input_size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        with _quiet():
            torch.onnx.export(model.eval(), (example,), str(path), dynamo=True, external_data=False,
                              input_names=[names[0]], output_names=[names[1]], opset_version=opset,
                              dynamic_shapes=({0: batch},))
    except Exception as e:  # noqa: BLE001 - the exporter raises many types; one clear message
        raise ExportError(f"ONNX export of {type(model).__name__} failed: {str(e).splitlines()[0]}") from None
    return path


def export_torchscript(model: nn.Module, path: str | Path, input_size: tuple[int, int, int]) -> Path:
    """Write ``model`` (eval mode) as a traced TorchScript file, loadable with ``torch.jit.load``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _quiet(), torch.no_grad():
            traced = torch.jit.trace(model.eval(), torch.randn(2, *input_size))
            traced.save(str(path))
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"TorchScript export of {type(model).__name__} failed: {str(e).splitlines()[0]}") from None
    return path


def write_metadata(path: str | Path, metadata: dict[str, str]) -> None:
    """Record ``metadata`` in an exported file, so that it carries how to feed it: ONNX metadata
    properties (``onnx.ModelProto.metadata_props``, shown by Netron and read by ONNX Runtime's
    ``get_modelmeta().custom_metadata_map``), or a TorchScript file's ``meta.json`` extra file."""
    import json

    from ..io import atomic_write_bytes

    path = Path(path)
    if path.suffix == ".onnx":
        import onnx

        model = onnx.load(str(path))
        del model.metadata_props[:]
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        atomic_write_bytes(path, model.SerializeToString())
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(path), map_location="cpu")
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer, _extra_files={"meta.json": json.dumps(metadata)})
    atomic_write_bytes(path, buffer.getvalue())


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata :func:`write_metadata` recorded in an exported file."""
    import json

    path = Path(path)
    if path.suffix == ".onnx":
        return dict(onnx_session(path).get_modelmeta().custom_metadata_map)
    extra = {"meta.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return json.loads(extra["meta.json"]) if extra["meta.json"] else {}


def onnx_session(path: str | Path, threads: int = 0):
    """An ONNX Runtime CPU session for ``path`` (``threads`` 0: the runtime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_runner(path: str | Path, threads: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function ``images -> logits`` backed by ONNX Runtime, taking and returning torch tensors."""
    session = onnx_session(path, threads)
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: np.ascontiguousarray(x.float().numpy())})[0])

    return run


def load_exported(path: str | Path, threads: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """Load an ``.onnx`` or TorchScript file as a function ``images -> logits``."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"exported file '{path}' does not exist")
    if path.suffix == ".onnx":
        return onnx_runner(path, threads)
    with warnings.catch_warnings():  # TorchScript is deprecated upstream but still the format many tools read
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(path), map_location="cpu").eval()
    return lambda x: scripted(x).detach()


@dataclass
class ExportCheck:
    max_abs_diff: float
    max_rel_diff: float  # relative to the largest logit magnitude
    top1_agreement: float
    samples: int
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_rel_diff <= self.tolerance

    def to_dict(self) -> dict:
        return {"max_abs_diff": self.max_abs_diff, "max_rel_diff": self.max_rel_diff,
                "top1_agreement": self.top1_agreement, "samples": self.samples, "tolerance": self.tolerance,
                "ok": self.ok}


@torch.no_grad()
def compare_outputs(reference: Callable[[torch.Tensor], torch.Tensor], candidate: Callable[[torch.Tensor], torch.Tensor],
                    inputs: torch.Tensor, *, tolerance: float = 1e-4, batch_size: int = 64) -> ExportCheck:
    """Run ``inputs`` through both functions and measure how far the logits are apart."""
    max_abs, scale, agree = 0.0, 0.0, 0
    for start in range(0, len(inputs), batch_size):
        x = inputs[start:start + batch_size]
        a, b = reference(x).float(), candidate(x).float()
        max_abs = max(max_abs, float((a - b).abs().max()))
        scale = max(scale, float(a.abs().max()))
        same = (a.argmax(1) == b.argmax(1)).float()  # N, or N x H x W for per-pixel scores
        agree += float(same.reshape(len(same), -1).mean(1).sum())
    return ExportCheck(max_abs, max_abs / max(scale, 1e-12), agree / len(inputs), len(inputs), tolerance)


def export_model(model: nn.Module, path: str | Path, fmt: str, input_size: tuple[int, int, int], *,
                 check_inputs: torch.Tensor | None = None, tolerance: float = 1e-4,
                 names: tuple[str, str] = ("images", "logits")) -> ExportCheck:
    """Export ``model`` in ``fmt`` to ``path`` and check it numerically; raises :class:`ExportError` if the
    exported model's logits differ by more than ``tolerance`` (relative to the largest logit)."""
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, not '{fmt}'")
    model = model.eval()
    if fmt == "onnx":
        export_onnx(model, path, input_size, names=names)
    else:
        export_torchscript(model, path, input_size)
    if check_inputs is None:
        check_inputs = torch.randn(16, *input_size, generator=torch.Generator().manual_seed(0))
    check = compare_outputs(model, load_exported(path), check_inputs, tolerance=tolerance)
    if not check.ok:
        raise ExportError(f"the exported {fmt} model differs from the PyTorch model: relative difference "
                          f"{check.max_rel_diff:.2e} > {tolerance:.0e}")
    return check
