#!/usr/bin/env bash
# README's test command: setup, generate the ONNX fixtures, then every test with every feature.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
. scripts/setup.sh
mkdir -p target/fixtures
"$KESTREL_PYTHON" scripts/onnx_node_cases.py target/fixtures/node_cases
"$KESTREL_PYTHON" scripts/torch_like_fixtures.py target/fixtures/torch_like
export KESTREL_REQUIRE_FIXTURES=1
cargo test --release --features ort -- --test-threads=1 "$@"
