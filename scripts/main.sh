#!/usr/bin/env bash
# README's main job: `kestrel report` — bench of the built-in models and bench + held-out
# evaluation of the trained reference models, over every variant this machine has (kestrel f32,
# INT8 static/dynamic, ONNX Runtime f32/INT8), written to report/ with a summary table.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
. scripts/setup.sh
cargo build --release --features ort
./target/release/kestrel report --threads "${THREADS:-$(nproc)}" "$@"
