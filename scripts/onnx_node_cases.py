"""Writes the ONNX conformance node test cases for the ops kestrel imports.

For each case from onnx.backend.test.case.node.collect_testcases() whose single node is one
of our ops, and whose first input and first output are float32, writes
OUTDIR/<case>/{model.onnx,input.npy,output.npy}. Inputs after the first become initializers
(kestrel's scope: one runtime input, constant weights). tests/onnx_conformance.rs runs them.
Ops that only move values (DTYPE_FREE) are also taken from their integer cases, as float32
(exact for the small integers the cases use), with the model's types rewritten to match.
"""
import os
import sys
import warnings

import numpy as np
import onnx
from onnx import helper, numpy_helper

warnings.filterwarnings("ignore")
from onnx.backend.test.case.node import collect_testcases  # noqa: E402

OPS = {
    "Conv", "ConvTranspose", "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "Clip",
    "Add", "Mul", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Gemm", "MatMul",
    "Concat", "Resize", "Upsample", "Softmax", "Identity", "Dropout", "Reshape", "ReduceMean",
    "Sub", "Div", "Neg", "Sqrt", "Pow", "Tanh", "Exp", "HardSigmoid", "HardSwish", "Elu", "Selu",
    "Mish", "Pad", "ReduceMax", "PRelu", "InstanceNormalization", "Slice",
    "Transpose", "Split", "Squeeze", "Unsqueeze",
}


# Ops whose result does not depend on the element type: their int32 cases run as float32.
DTYPE_FREE = {"Pad", "Slice", "Transpose", "Split", "Squeeze", "Unsqueeze"}


def main(out):
    os.makedirs(out, exist_ok=True)
    written = 0
    for case in collect_testcases():
        model = case.model
        if model is None or len(model.graph.node) != 1 or not case.data_sets:
            continue
        node = model.graph.node[0]
        if node.op_type not in OPS or node.domain not in ("", "ai.onnx"):
            continue
        inputs, outputs = case.data_sets[0]
        if not inputs or not outputs:
            continue
        x, y = inputs[0], outputs[0]
        if not (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)):
            continue
        if node.op_type in DTYPE_FREE and x.dtype == y.dtype and x.dtype in (np.int32, np.int64):
            x, y = x.astype(np.float32), y.astype(np.float32)
            model = onnx.ModelProto.FromString(model.SerializeToString())
            for vi in (model.graph.input[0], model.graph.output[0]):
                vi.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
        if x.dtype != np.float32 or y.dtype != np.float32:
            continue
        g = model.graph
        inits = list(g.initializer)
        for vi, val in zip(g.input[1:], inputs[1:]):
            if isinstance(val, np.generic):
                val = np.asarray(val)
            if not isinstance(val, np.ndarray):
                break
            inits.append(numpy_helper.from_array(val, vi.name))
        else:
            graph = helper.make_graph(list(g.node), g.name, [g.input[0]], [g.output[0]], inits)
            m = helper.make_model(graph, opset_imports=model.opset_import)
            m.ir_version = model.ir_version
            d = os.path.join(out, case.name)
            os.makedirs(d, exist_ok=True)
            onnx.save(m, os.path.join(d, "model.onnx"))
            np.save(os.path.join(d, "input.npy"), np.ascontiguousarray(x))
            np.save(os.path.join(d, "output.npy"), np.ascontiguousarray(y))
            written += 1
    print(f"wrote {written} node cases to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
