#!/usr/bin/env bash
# README's main job: parity of every built-in model against ONNX Runtime, and a side-by-side
# latency of kestrel and ORT on the same inputs with the same threads.
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
exit $status
