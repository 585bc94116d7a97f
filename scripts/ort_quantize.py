"""ORT's own best INT8 model for a float ONNX model: onnxruntime.quantization.quantize_static,
QDQ format, per-channel s8 weights, u8 activations, MinMax on 8 seeded random-normal inputs.
Usage: ort_quantize.py IN.onnx OUT.onnx N,C,H,W [CALIB.npy]
With CALIB.npy ([S, C, H, W] f32), calibrate on those S samples instead."""
import sys

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static


class Reader(CalibrationDataReader):
    def __init__(self, name, shape, n=8, calib=None):
        if calib is not None:
            arr = np.load(calib).astype(np.float32)
            self.data = iter([{name: arr[i:i + 1]} for i in range(arr.shape[0])])
            return
        rng = np.random.default_rng(7)
        self.data = iter([{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(n)])

    def get_next(self):
        return next(self.data, None)


def main(src, dst, shape, calib=None):
    import onnx
    name = onnx.load(src, load_external_data=False).graph.input[0].name
    quantize_static(src, dst, Reader(name, [int(d) for d in shape.split(",")], calib=calib), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


if __name__ == "__main__":
    main(*sys.argv[1:5])
