#!/usr/bin/env bash
# README's test command: setup, generate the ONNX fixtures, then every test with every feature.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
KESTREL_SETUP_NVRTC=1 . scripts/setup.sh
# The default build (the CLI), and the engine alone as an edge binary embeds it (README,
# "Embedding"): no default features, none of the `app` feature's crates in its tree, and
# examples/embed built and run that way, f32 and INT8.
cargo build --release
lean="$(cargo tree -e normal --no-default-features --prefix none)"
if grep -E '^(clap|indicatif|plotters|image|png|tiff|weezl|flate2|zip) ' <<<"$lean"; then
    echo "error: a crate of the app feature is in the build without default features" >&2
    exit 1
fi
cargo build --release --no-default-features --example embed
target/release/examples/embed resnet18 --runs 2
target/release/examples/embed resnet18 --int8 --runs 2
mkdir -p target/fixtures
"$KESTREL_PYTHON" scripts/onnx_node_cases.py target/fixtures/node_cases
"$KESTREL_PYTHON" scripts/torch_like_fixtures.py target/fixtures/torch_like
"$KESTREL_PYTHON" scripts/ort_qdq_fixtures.py target/fixtures 2>/dev/null
export KESTREL_REQUIRE_FIXTURES=1
log="$(mktemp)"
set +e
cargo test --release --features ort -- --test-threads=1 "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
# The CUDA backend without a GPU: the `cuda` feature builds with no CUDA present, every kernel
# compiles through NVRTC (the wheel setup.sh installs), missing CUDA answers cleanly.
if [ "$#" -eq 0 ]; then
    echo "== CUDA backend without a GPU (--features cuda)"
    cargo test --release --features ort,cuda --test cuda --test cuda_gpu -- --test-threads=1 2>&1 | tee -a "$log"
    r=${PIPESTATUS[0]}
    [ "$r" -eq 0 ] || rc=$r
fi
# The main run used the best ISA; the INT8 twin tests (conv, linear, epilogues) once more on
# every other one this CPU has, forced with KESTREL_ISA.
isas="scalar"
grep -qw avx2 /proc/cpuinfo 2>/dev/null && isas="$isas avx2"
if [ "$#" -eq 0 ]; then
    for isa in $isas; do
        echo "== INT8 twin tests with KESTREL_ISA=$isa"
        KESTREL_ISA=$isa cargo test --release --features ort --test quant -- --test-threads=1 twin 2>&1 | tee -a "$log"
        r=${PIPESTATUS[0]}
        [ "$r" -eq 0 ] || rc=$r
    done
    # Sessions on a CPU with AMX take the AMX-INT8 GEMM and the AMX bf16 conv: run the session
    # twin tests once more on the VNNI GEMM and the vdpbf16ps conv (tests/qgemm.rs and
    # tests/bf16.rs check both kernels directly either way).
    if grep -qw amx_int8 /proc/cpuinfo 2>/dev/null; then
        echo "== INT8 twin and bf16 tests with KESTREL_AMX=0"
        KESTREL_AMX=0 cargo test --release --features ort --test quant --test bf16 -- --test-threads=1 2>&1 | tee -a "$log"
        r=${PIPESTATUS[0]}
        [ "$r" -eq 0 ] || rc=$r
    fi
    # The plan follows Zen 4's own rules for a few bf16 convs (`KESTREL_TUNE`, chosen by CPUID:
    # AMD family 25 with AVX-512): on a host with AVX512_BF16, run the bf16 tests once more
    # under the other family's rules (the main run used the host's own).
    if grep -qw avx512_bf16 /proc/cpuinfo 2>/dev/null; then
        other=zen4
        if grep -qm1 AuthenticAMD /proc/cpuinfo && grep -m1 '^cpu family' /proc/cpuinfo | grep -qw 25; then
            other=generic
        fi
        echo "== bf16 tests with KESTREL_TUNE=$other"
        KESTREL_TUNE=$other cargo test --release --features ort --test bf16 -- --test-threads=1 2>&1 | tee -a "$log"
        r=${PIPESTATUS[0]}
        [ "$r" -eq 0 ] || rc=$r
    fi
    # Intel's own FP32 rule (`KESTREL_TUNE=intel`: small 1×1 convs pack their B blocks): the
    # FP32 conv twin tests once more under it on other AVX-512 hosts, and under the generic
    # rules on Intel.
    if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
        other=intel
        grep -qm1 GenuineIntel /proc/cpuinfo && other=generic
        echo "== FP32 conv twin tests with KESTREL_TUNE=$other"
        KESTREL_TUNE=$other cargo test --release --features ort --test kernels -- --test-threads=1 conv 2>&1 | tee -a "$log"
        r=${PIPESTATUS[0]}
        [ "$r" -eq 0 ] || rc=$r
    fi
    # ORT's INT8 kernel saturates on AVX2 without VNNI, so QDQ parity must hold there too. On an
    # AVX-512 host, run the QDQ parity tests of ORT-made models once more on an emulated
    # AVX2-only CPU (qemu user mode, AMD EPYC-Milan = Zen 3), where ORT and kestrel both take
    # their AVX2 paths (about 3 minutes on 2 cores).
    if grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
        if command -v qemu-x86_64 >/dev/null 2>&1; then
            echo "== QDQ parity on an emulated AVX2-only CPU (qemu-x86_64 -cpu EPYC-Milan)"
            CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="qemu-x86_64 -cpu EPYC-Milan" \
                cargo test --release --features ort --test qdq -- --test-threads=1 ort_quantize_static drift_is_reported 2>&1 \
                | grep -v "TCG doesn't support" | tee -a "$log"
            r=${PIPESTATUS[0]}
            [ "$r" -eq 0 ] || rc=$r
        else
            echo "SKIP QDQ parity on an emulated AVX2-only CPU: qemu-x86_64 is not installed"
        fi
    fi
    # The criterion benches, each benchmark run once (criterion's test mode: no timing), so
    # that `cargo bench` keeps working for whoever tunes the kernels.
    echo "== cargo bench in test mode (every benchmark once, untimed)"
    cargo bench --features ort --bench kernels --bench models -- --test 2>&1 \
        | grep -vE '^(Testing |Success$|$|WARNING:root:)' | tee -a "$log"
    r=${PIPESTATUS[0]}
    [ "$r" -eq 0 ] || { echo "error: a criterion bench failed in test mode (above)" >&2; rc=$r; }
    # The API docs: every intra-doc link resolves (private items included, as whoever tunes the
    # kernels reads them), for the engine alone and with every feature that builds here.
    echo "== cargo doc, warnings as errors"
    for feats in --no-default-features "--features ort,cuda"; do
        # shellcheck disable=SC2086
        RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items $feats 2>&1 \
            | grep -vE '^ +(Checking|Compiling|Documenting) ' | tee -a "$log"
        r=${PIPESTATUS[0]}
        [ "$r" -eq 0 ] || { echo "error: cargo doc $feats: broken doc links or doc warnings (above)" >&2; rc=$r; }
    done
    # The oldest Rust the crate declares (`rust-version` in Cargo.toml): the engine alone and
    # the default crate (the CLI) must build with it, as an embedder pinned to it builds them
    # (README, "Embedding": the candle-based features need a newer one). A check build in a
    # target folder of its own.
    msrv="$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)"
    echo "== Rust $msrv (Cargo.toml's rust-version): the engine alone and the CLI build"
    if ! command -v rustup >/dev/null 2>&1; then
        echo "SKIP Rust $msrv check: no rustup to install it"
    elif ! { rustup toolchain list | grep -q "^$msrv-" || rustup toolchain install "$msrv" --profile minimal; }; then
        echo "SKIP Rust $msrv check: rustup could not install it (static.rust-lang.org unreachable?)"
    else
        { CARGO_TARGET_DIR=target/msrv cargo "+$msrv" check --release --no-default-features --lib --example embed \
            && CARGO_TARGET_DIR=target/msrv cargo "+$msrv" check --release --features cuda --lib --bins; } 2>&1 | tee -a "$log"
        r=${PIPESTATUS[0]}
        [ "$r" -eq 0 ] || { echo "error: kestrel does not build with Rust $msrv, its declared rust-version" >&2; rc=$r; }
    fi
    # 64-bit ARM, as edge boards run kestrel: cross-built, its tests and the CLI run under
    # qemu user mode, the CLI's outputs compared with this host's (scripts/cross_aarch64.sh).
    if [ "$(uname -m)" = x86_64 ]; then
        echo "== aarch64, cross-built and run under qemu-aarch64"
        bash scripts/cross_aarch64.sh 2>&1 | tee -a "$log"
        r=${PIPESTATUS[0]}
        [ "$r" -eq 0 ] || rc=$r
        # Windows, as pathologists' workstations run the CLI: cross-built with mingw-w64 and
        # run under Wine, its outputs compared with this build's (scripts/windows_wine.sh).
        echo "== Windows (x86-64), cross-built and run under Wine"
        bash scripts/windows_wine.sh 2>&1 | tee -a "$log"
        r=${PIPESTATUS[0]}
        [ "$r" -eq 0 ] || rc=$r
    fi
fi
set -e
# One closing line over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "kestrel tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$rc"
