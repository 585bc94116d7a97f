"""Writes small ONNX models in the form torch.onnx.export gives torchvision ResNets and
common UNets, with seeded random weights, for the parity tests:

- BatchNorm already folded into Conv (eval-mode export), nodes named like /layer1/layer1.0/conv1/Conv;
- flatten as the Shape/Gather/Unsqueeze/Concat/Reshape chain (opset 11) or as Flatten (opset 17);
- Gemm with transB=1; MaxPool with pads; Constant nodes; Identity and Dropout;
- UNet: ConvTranspose decoder, or Resize (bilinear, align_corners) by scales or by sizes;
- a segmentation_models_pytorch-style Unet: ResNet-18 encoder, nearest ×2 Resize decoder
  blocks concatenating the encoder's skips, a 3×3 segmentation head.

Narrow widths keep the files small. Usage: torch_like_fixtures.py OUTDIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(20261121)


class B:
    def __init__(self, opset):
        self.nodes, self.inits, self.opset, self.n = [], [], opset, 0

    def t(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(self, op, name, inputs, **attrs):
        out = f"{name}_output_0"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def const(self, name, arr):
        out = f"{name}_output_0"
        self.nodes.append(helper.make_node("Constant", [], [out], name=name, value=numpy_helper.from_array(np.asarray(arr))))
        return out

    def conv(self, name, x, cin, cout, k, s=1, p=0, bias=True):
        w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        ins = [x, self.t(f"onnx::Conv_{name}_w", w)]
        if bias:  # eval-mode export folds BatchNorm into the conv bias
            ins.append(self.t(f"onnx::Conv_{name}_b", (rng.standard_normal(cout) * 0.1).astype(np.float32)))
        return self.node("Conv", name, ins, kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, dilations=[1, 1], group=1)

    def model(self, x_name, x_shape, out, out_shape_rank):
        inp = helper.make_tensor_value_info(x_name, TensorProto.FLOAT, ["batch_size"] + list(x_shape[1:]))
        o = helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch_size"] + [None] * (out_shape_rank - 1))
        g = helper.make_graph(self.nodes, "main_graph", [inp], [o], self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="pytorch")
        m.ir_version = 7 if self.opset <= 13 else 8
        onnx.checker.check_model(m)
        return m


def resnet(depth, width, classes, opset, flatten_chain):
    blocks, bottleneck = {18: ([2, 2, 2, 2], False), 50: ([3, 4, 6, 3], True)}[depth]
    b = B(opset)
    x = "input"
    h = b.conv("/conv1/Conv", x, 3, width, 7, 2, 3)
    h = b.node("Relu", "/relu/Relu", [h])
    h = b.node("MaxPool", "/maxpool/MaxPool", [h], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=0)
    cin = width
    exp = 4 if bottleneck else 1
    for s, n in enumerate(blocks):
        planes = width << s
        for i in range(n):
            st = 2 if s > 0 and i == 0 else 1
            p = f"/layer{s+1}/layer{s+1}.{i}"
            if bottleneck:
                y = b.node("Relu", f"{p}/relu/Relu", [b.conv(f"{p}/conv1/Conv", h, cin, planes, 1)])
                y = b.node("Relu", f"{p}/relu_1/Relu", [b.conv(f"{p}/conv2/Conv", y, planes, planes, 3, st, 1)])
                y = b.conv(f"{p}/conv3/Conv", y, planes, planes * 4, 1)
            else:
                y = b.node("Relu", f"{p}/relu/Relu", [b.conv(f"{p}/conv1/Conv", h, cin, planes, 3, st, 1)])
                y = b.conv(f"{p}/conv2/Conv", y, planes, planes, 3, 1, 1)
            idn = h
            if st != 1 or cin != planes * exp:
                idn = b.conv(f"{p}/downsample/downsample.0/Conv", h, cin, planes * exp, 1, st, 0)
            h = b.node("Relu", f"{p}/relu_2/Relu", [b.node("Add", f"{p}/Add", [y, idn])])
            cin = planes * exp
    h = b.node("GlobalAveragePool", "/avgpool/GlobalAveragePool", [h])
    if flatten_chain:
        shp = b.node("Shape", "/Shape", [h])
        g0 = b.node("Gather", "/Gather", [shp, b.const("/Constant", np.array(0, dtype=np.int64))], axis=0)
        u = b.node("Unsqueeze", "/Unsqueeze", [g0], axes=[0])
        cat = b.node("Concat", "/Concat", [u, b.const("/Constant_1", np.array([-1], dtype=np.int64))], axis=0)
        h = b.node("Reshape", "/Reshape", [h, cat])
    else:
        h = b.node("Flatten", "/Flatten", [h], axis=1)
    h = b.node("Dropout", "/dropout/Dropout", [h]) if opset >= 12 else h
    fw = (rng.uniform(-1, 1, (classes, cin)) / np.sqrt(cin)).astype(np.float32)
    fb = (rng.uniform(-1, 1, classes) / np.sqrt(cin)).astype(np.float32)
    out = b.node("Gemm", "/fc/Gemm", [h, b.t("fc.weight", fw), b.t("fc.bias", fb)], alpha=1.0, beta=1.0, transB=1)
    b.nodes.append(helper.make_node("Identity", [out], ["output"], name="/Identity"))
    return b.model("input", [1, 3, 64, 64], "output", 2)


def unet(base, depth, up, opset):
    b = B(opset)

    def dconv(name, x, cin, cout):
        y = b.node("Relu", f"{name}/double_conv/double_conv.2/Relu", [b.conv(f"{name}/double_conv/double_conv.0/Conv", x, cin, cout, 3, 1, 1)])
        return b.node("Relu", f"{name}/double_conv/double_conv.5/Relu", [b.conv(f"{name}/double_conv/double_conv.3/Conv", y, cout, cout, 3, 1, 1)])

    ch = lambda i: base << i
    skips = [dconv("/inc", "input", 3, ch(0))]
    for i in range(1, depth + 1):
        p = b.node("MaxPool", f"/down{i}/maxpool_conv/maxpool_conv.0/MaxPool", [skips[-1]], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0])
        skips.append(dconv(f"/down{i}/maxpool_conv/maxpool_conv.1", p, ch(i - 1), ch(i)))
    h = skips[-1]
    for j in range(1, depth + 1):
        lvl = depth - j
        if up == "transpose":
            w = (rng.standard_normal((ch(lvl + 1), ch(lvl), 2, 2)) * np.sqrt(1.0 / (ch(lvl) * 4))).astype(np.float32)
            bias = (rng.standard_normal(ch(lvl)) * 0.1).astype(np.float32)
            u = b.node("ConvTranspose", f"/up{j}/up/ConvTranspose", [h, b.t(f"up{j}.up.weight", w), b.t(f"up{j}.up.bias", bias)],
                       kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0], dilations=[1, 1], group=1)
            uc = ch(lvl)
        else:
            if up == "scales":
                sc = b.const(f"/up{j}/up/Constant", np.array([1, 1, 2, 2], dtype=np.float32))
                u = b.node("Resize", f"/up{j}/up/Resize", [h, "", sc], mode="linear", coordinate_transformation_mode="align_corners", nearest_mode="floor")
            else:  # sizes computed from the skip's shape, as F.interpolate(size=skip.shape[2:]) exports
                shp = b.node("Shape", f"/up{j}/Shape", [skips[lvl]])
                sl = b.node("Slice", f"/up{j}/Slice", [shp, b.const(f"/up{j}/C0", np.array([2], dtype=np.int64)), b.const(f"/up{j}/C1", np.array([4], dtype=np.int64))])
                shp2 = b.node("Shape", f"/up{j}/Shape_1", [h])
                nc = b.node("Slice", f"/up{j}/Slice_1", [shp2, b.const(f"/up{j}/C2", np.array([0], dtype=np.int64)), b.const(f"/up{j}/C3", np.array([2], dtype=np.int64))])
                sz = b.node("Concat", f"/up{j}/Concat", [nc, sl], axis=0)
                u = b.node("Resize", f"/up{j}/up/Resize", [h, "", "", sz], mode="linear", coordinate_transformation_mode="align_corners", nearest_mode="floor")
            uc = ch(lvl + 1)
        cat = b.node("Concat", f"/up{j}/Concat_1", [skips[lvl], u], axis=1)
        h = dconv(f"/up{j}/conv", cat, ch(lvl) + uc, ch(lvl))
    out = b.conv("/outc/conv/Conv", h, ch(0), 1, 1)
    return b.model("input", [1, 3, 64, 64], out, 4)


def smp_unet(width, decoder, classes, opset):
    """smp.Unet(encoder_name="resnet18"): encoder features at 1/2 (stem), 1/4 … 1/32; each
    decoder block upsamples ×2 (nearest), concatenates the skip of that resolution (none for
    the last) and applies two conv3×3 + ReLU (BatchNorm folded by the export)."""
    b = B(opset)
    x = "input"
    stem = b.node("Relu", "/encoder/relu/Relu", [b.conv("/encoder/conv1/Conv", x, 3, width, 7, 2, 3)])
    h = b.node("MaxPool", "/encoder/maxpool/MaxPool", [stem], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=0)
    feats, cin = [stem], width
    for s in range(4):
        planes = width << s
        for i in range(2):
            st = 2 if s > 0 and i == 0 else 1
            p = f"/encoder/layer{s+1}/layer{s+1}.{i}"
            y = b.node("Relu", f"{p}/relu/Relu", [b.conv(f"{p}/conv1/Conv", h, cin, planes, 3, st, 1)])
            y = b.conv(f"{p}/conv2/Conv", y, planes, planes, 3, 1, 1)
            idn = h if st == 1 and cin == planes else b.conv(f"{p}/downsample/downsample.0/Conv", h, cin, planes, 1, st, 0)
            h = b.node("Relu", f"{p}/relu_1/Relu", [b.node("Add", f"{p}/Add", [y, idn])])
            cin = planes
        feats.append(h)
    skips = [feats[3], feats[2], feats[1], feats[0], None]
    for j, (d, skip) in enumerate(zip(decoder, skips)):
        p = f"/decoder/blocks.{j}"
        sc = b.const(f"{p}/Constant", np.array([1, 1, 2, 2], dtype=np.float32))
        h = b.node("Resize", f"{p}/Resize", [h, "", sc], mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        c_in = cin
        if skip is not None:
            skip_c = {0: width << 2, 1: width << 1, 2: width, 3: width}[j]
            h = b.node("Concat", f"{p}/Concat", [h, skip], axis=1)
            c_in += skip_c
        h = b.node("Relu", f"{p}/conv1/conv1.2/Relu", [b.conv(f"{p}/conv1/conv1.0/Conv", h, c_in, d, 3, 1, 1)])
        h = b.node("Relu", f"{p}/conv2/conv2.2/Relu", [b.conv(f"{p}/conv2/conv2.0/Conv", h, d, d, 3, 1, 1)])
        cin = d
    out = b.conv("/segmentation_head/segmentation_head.0/Conv", h, cin, classes, 3, 1, 1)
    return b.model("input", [1, 3, 64, 64], out, 4)


def main(out):
    os.makedirs(out, exist_ok=True)
    models = {
        "resnet18_w8_opset11_chain": resnet(18, 8, 10, 11, True),
        "resnet50_w8_opset17": resnet(50, 8, 16, 17, False),
        "unet_b8_transpose": unet(8, 3, "transpose", 17),
        "unet_b8_resize_scales": unet(8, 3, "scales", 13),
        "unet_b8_resize_sizes": unet(8, 3, "sizes", 17),
        "unet_smp_resnet18_nearest": smp_unet(8, [32, 16, 16, 8, 8], 2, 17),
    }
    for name, m in models.items():
        onnx.save(m, os.path.join(out, f"{name}.onnx"))
    print(f"wrote {len(models)} torch-like models to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
