#!/usr/bin/env bash
# README's main job: parity of every built-in model against ONNX Runtime, and a side-by-side
# latency of kestrel and ORT on the same inputs with the same threads; then ResNet-50 quantized
# to INT8 (static and dynamic) and checked against ORT on the very same QDQ file.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
. scripts/setup.sh
cargo build --release --features ort
threads="${THREADS:-$(nproc)}"
status=0
for m in resnet18 resnet50 unet unet-bilinear; do
  ./target/release/kestrel parity "$m" --random --batch 1 --threads "$threads" --time 10 || status=1
done
./target/release/kestrel parity resnet18 --random --batch 8 --threads "$threads" --time 5 || status=1
# INT8: quantize (static, seeded calibration), then the same file through kestrel and ORT.
mkdir -p target/main
for mode in static dynamic; do
  ./target/release/kestrel quantize resnet50 --mode "$mode" -o "target/main/resnet50-int8-$mode.onnx" || status=1
  ./target/release/kestrel parity "target/main/resnet50-int8-$mode.onnx" --batch 4 --threads "$threads" --time 10 || status=1
done
exit $status
