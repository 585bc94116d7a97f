"""Full-size parity on real torch.onnx.export output (needs torch and torchvision in the
Python that runs this; PyPI has no CPU-only torch wheel for x86-64 Linux, so scripts/test.sh
does not install it). Exports a torchvision ResNet-50 and a PyTorch UNet with random weights,
saves their state dicts as safetensors, and runs `kestrel parity` on 32 random inputs for the
ONNX files and on the safetensors files.

Usage: python scripts/torch_parity.py [OUTDIR]   (after `cargo build --release --features ort`)
"""
import os
import subprocess
import sys

import torch
import torch.nn as nn
import torchvision
from safetensors.torch import save_file


class DoubleConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.double_conv = nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x):
        return self.double_conv(x)


class Down(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(cin, cout))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
        self.conv = DoubleConv(cin, cout)

    def forward(self, x1, x2):
        return self.conv(torch.cat([x2, self.up(x1)], dim=1))


class OutConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.conv(x)


class UNet(nn.Module):
    """UNet(3 -> 1, base 32, depth 4, ConvTranspose decoder) in kestrel's native layout."""

    def __init__(self, base=32):
        super().__init__()
        c = [base << i for i in range(5)]
        self.inc = DoubleConv(3, c[0])
        self.down1, self.down2, self.down3, self.down4 = (Down(c[i], c[i + 1]) for i in range(4))
        self.up1, self.up2, self.up3, self.up4 = (Up(c[4 - i], c[3 - i]) for i in range(4))
        self.outc = OutConv(c[0], 1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x5 = self.down4(x4)
        x = self.up1(x5, x4)
        x = self.up2(x, x3)
        x = self.up3(x, x2)
        return self.outc(self.up4(x, x1))


def randomise_bn(m, g):
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2, generator=g)
            mod.running_var.uniform_(0.5, 2.0, generator=g)


def main(out):
    os.makedirs(out, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    kestrel = os.path.join(os.path.dirname(__file__), "..", "target", "release", "kestrel")
    status = 0
    for name, model, size in [("resnet50", torchvision.models.resnet50(weights=None), 224), ("unet", UNet(), 256)]:
        model.eval()
        randomise_bn(model, g)
        x = torch.randn(1, 3, size, size)
        path = os.path.join(out, f"torch_{name}.onnx")
        torch.onnx.export(model, x, path, opset_version=17, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        st = os.path.join(out, f"torch_{name}.safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, st)
        for target in (path, st):
            cmd = [kestrel, "parity", target, "--random", "--batch", "32"]
            print("+", " ".join(cmd), flush=True)
            status |= subprocess.call(cmd)
    sys.exit(status)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/torch_parity")
