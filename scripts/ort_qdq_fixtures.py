"""Quantizes the torch-style fixtures with onnxruntime.quantization.quantize_static (QDQ
format, per-channel s8 weights, u8 activations, MinMax calibration on seeded random inputs),
as ORT users do, for the QDQ import tests. Usage: ort_qdq_fixtures.py FIXTURES_DIR"""
import os
import sys

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static


class Reader(CalibrationDataReader):
    def __init__(self, shape, n=8):
        rng = np.random.default_rng(7)
        self.data = iter([{"input": rng.standard_normal(shape).astype(np.float32)} for _ in range(n)])

    def get_next(self):
        return next(self.data, None)


def main(root):
    src = os.path.join(root, "torch_like")
    out = os.path.join(root, "ort_qdq")
    os.makedirs(out, exist_ok=True)
    for name in ["resnet50_w8_opset17", "unet_b8_transpose"]:
        quantize_static(
            os.path.join(src, f"{name}.onnx"),
            os.path.join(out, f"{name}_qdq.onnx"),
            Reader([1, 3, 64, 64]),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    print(f"wrote ORT QDQ models to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
