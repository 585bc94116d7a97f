#!/usr/bin/env bash
# README's test command: setup, generate the ONNX fixtures, then every test with every feature.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
. scripts/setup.sh
# The default (edge) build: no features, cargo alone.
cargo build --release
mkdir -p target/fixtures
"$KESTREL_PYTHON" scripts/onnx_node_cases.py target/fixtures/node_cases
"$KESTREL_PYTHON" scripts/torch_like_fixtures.py target/fixtures/torch_like
"$KESTREL_PYTHON" scripts/ort_qdq_fixtures.py target/fixtures 2>/dev/null
export KESTREL_REQUIRE_FIXTURES=1
log="$(mktemp)"
set +e
cargo test --release --features ort -- --test-threads=1 "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "kestrel tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$rc"
