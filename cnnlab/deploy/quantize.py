"""Post-training int8 quantisation with ONNX Runtime.

Static quantisation (Jacob et al., CVPR 2018, section 2): weights are stored as int8 with one scale per
output channel, activations as uint8 with a scale and zero point chosen from the ranges seen on a few
hundred calibration images; convolutions and matrix products then run in integer arithmetic.
On CPUs without VNNI instructions the weights keep 7 bits (``reduce_range``), which avoids the
saturation of the AVX2 ``vpmaddubsw`` instruction's 16-bit sums.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..system import cpu_has_vnni
from .export import ExportError, _quiet


def quantize_onnx(fp32_path: str | Path, int8_path: str | Path, calibration: torch.Tensor, *,
                  batch_size: int = 64, per_channel: bool = True) -> Path:
    """Write an int8 version of the ONNX model at ``fp32_path``, calibrated on ``calibration``
    (normalised float images, N x C x H x W)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"images": np.ascontiguousarray(calibration[i:i + batch_size].float().numpy())}
                                 for i in range(0, len(calibration), batch_size)])

        def get_next(self):
            return next(self.batches, None)

    int8_path = Path(int8_path)
    try:
        with _quiet():
            quantize_static(str(fp32_path), str(int8_path), Reader(), quant_format=QuantFormat.QOperator,
                            per_channel=per_channel, reduce_range=not cpu_has_vnni(),
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"int8 quantisation failed: {str(e).splitlines()[0]}") from None
    return int8_path
