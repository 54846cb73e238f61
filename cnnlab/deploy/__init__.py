"""Making a trained model fast to run and easy to ship: batch-norm folding, channels-last and bf16
inference, ``torch.compile``, ONNX and TorchScript export (checked against PyTorch), int8 quantisation."""

from .export import (FORMATS, ExportCheck, ExportError, compare_outputs, export_model, export_onnx,
                     export_torchscript, load_exported, onnx_runner)
from .fold import count_batchnorms, fold_batchnorm, fold_into
from .quantize import quantize_onnx

__all__ = ["FORMATS", "ExportCheck", "ExportError", "compare_outputs", "export_model", "export_onnx",
           "export_torchscript", "load_exported", "onnx_runner", "count_batchnorms", "fold_batchnorm",
           "fold_into", "quantize_onnx"]
