"""int8 engine (issue 12 item 4): ONNX Runtime static quantization of the converted deploy graph
(pipeline/caffe_to_onnx.py), calibrated on net inputs of held-out regions.

QDQ format, weights int8 per output channel, activations uint8 (the u8 x s8 products that AVX-512
VNNI runs), MinMax calibration; the convolutions and fully connected layers are quantized, except
the LRN band convolutions (norm*/Conv: their squared input spans many decades) and the task
output layers (kept float so the outputs keep their float resolution). `quantize` writes the
model; `OnnxInt8Backend` runs it like pipeline.backends.OnnxRuntimeBackend. Whether it may be the
default is measured by benchmarks/engines.py (side by side with fp32 and OpenVINO bf16).
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import numpy as np

from core.net_io import INPUT_BLOB

# float in the int8 model: LRN band convolutions and the last layer of every task head
KEEP_FLOAT = ("norm1/Conv", "norm2/Conv", "detection_score/Gemm", "landmarks/Gemm", "visibility/Gemm",
              "pose/Gemm", "gender_score/Gemm", "bbox_deltas/Gemm", "landmarks68/Gemm")


def calibration_digest(batches: list[np.ndarray]) -> str:
    h = hashlib.sha1()
    for b in batches:
        h.update(np.ascontiguousarray(b, dtype=np.float32).tobytes())
    return h.hexdigest()[:16]


def quantize(fp32_path: str | Path, batches: Iterable[np.ndarray], out_path: str | Path) -> Path:
    """Statically quantize the fp32 ONNX model at fp32_path, calibrated on `batches` of net input
    ((n, 3, H, W) float32, mean subtracted), into out_path."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, data):
            self.data = iter([{INPUT_BLOB: np.ascontiguousarray(b, dtype=np.float32)} for b in data])

        def get_next(self):
            return next(self.data, None)

    import onnx

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    pre = out_path.with_name(out_path.stem + ".pre.onnx")
    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    names = {n.name for n in onnx.load(str(pre)).graph.node}
    quantize_static(str(pre), str(out_path), Reader(list(batches)), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=["Conv", "Gemm", "MatMul"], nodes_to_exclude=[n for n in KEEP_FLOAT if n in names],
                    calibrate_method=CalibrationMethod.MinMax)
    pre.unlink(missing_ok=True)
    return out_path


class OnnxInt8Backend:
    """Runs the int8 model made by `quantize` (same interface as the other backends)."""
    name = "onnxruntime-int8"

    def __init__(self, prototxt: str | Path, caffemodel: str | Path, calibration: list[np.ndarray],
                 outputs: list[str] | None = None, threads: int | None = None):
        import os

        import onnxruntime as ort

        from pipeline.backends import net_outputs
        from pipeline.caffe_to_onnx import cached_onnx

        self.outputs = outputs or net_outputs(prototxt)
        fp32 = cached_onnx(prototxt, caffemodel, self.outputs)
        path = fp32.with_name(f"int8-{calibration_digest(calibration)}.onnx")
        if not path.is_file():
            tmp = path.with_name(path.stem + ".tmp.onnx")
            quantize(fp32, calibration, tmp)
            tmp.replace(path)
        self.path = path
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def forward(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.session.run(self.outputs, {INPUT_BLOB: np.ascontiguousarray(batch, dtype=np.float32)})
        return {name: np.asarray(o, dtype=np.float32) for name, o in zip(self.outputs, outs)}
