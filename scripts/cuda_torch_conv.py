"""PyTorch's FP16 conv (cuDNN, channels_last, bias + ReLU) on the shapes of
examples/cuda_conv_speed.rs, timed the same way: 3 warm-ups, then N launches between two
synchronisations, seeded data in [-1, 1]. Prints ms and TFLOP/s per shape.

    python3 scripts/cuda_torch_conv.py [iterations]
"""
import pathlib
import re
import sys
import time

import torch


def shapes():
    """The SHAPES list of examples/cuda_conv_speed.rs, read from its source so both time the
    same convs: (name, batch, cin, h = w, cout, k, stride)."""
    root = pathlib.Path(__file__).resolve().parent
    for cand in (root / ".." / "examples" / "cuda_conv_speed.rs", pathlib.Path("examples/cuda_conv_speed.rs")):
        if cand.exists():
            src = cand.read_text()
            break
    else:
        raise SystemExit("examples/cuda_conv_speed.rs not found: run from the repository root")
    rows = re.findall(r'\("([^"]+)",\s*(\d+),\s*(\d+),\s*(\d+),\s*(\d+),\s*(\d+),\s*(\d+)\)', src)
    return [(name, *map(int, rest)) for name, *rest in rows]


def main():
    iters = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    print(f"torch {torch.__version__} cuDNN {torch.backends.cudnn.version()} on {torch.cuda.get_device_name(0)}, {iters} iterations per shape")
    g = torch.Generator(device="cpu").manual_seed(7)
    for name, n, cin, hw, cout, k, s in shapes():
        conv = torch.nn.Conv2d(cin, cout, k, stride=s, padding=k // 2).to(dev, torch.float16).to(memory_format=torch.channels_last)
        x = (torch.rand(n, cin, hw, hw, generator=g) * 2 - 1).to(dev, torch.float16).to(memory_format=torch.channels_last)
        with torch.no_grad():
            for _ in range(3):
                torch.relu_(conv(x))
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(iters):
                torch.relu_(conv(x))
            torch.cuda.synchronize()
            secs = (time.perf_counter() - t) / iters
        o = (hw + 2 * (k // 2) - k) // s + 1
        flops = 2.0 * n * o * o * cout * k * k * cin
        print(f"{name:<24} n {n:>3} {cin:>4}->{cout:<4} {hw:>3}^2 k{k} s{s}: {secs * 1e3:>8.3f} ms  {flops / secs / 1e12:>7.1f} TFLOP/s")


if __name__ == "__main__":
    main()
