#!/usr/bin/env bash
# kestrel on 64-bit ARM (aarch64), as edge boards run it, checked on an x86-64 host: cross-built
# and run under qemu user mode (9 minutes on 2 cores with the cross-built dependencies already
# there, 6.5 of them the tests under emulation; a cold cross build of the CLI alone took 4).
# Called by scripts/test.sh; installs what it needs (Debian's cross gcc and qemu-user, the
# rustup target). What runs:
#   - the library's unit tests and the integration tests that do not start the `kestrel`
#     binary (qemu runs one process; a test's child process would need binfmt_misc);
#   - the engine alone as an edge binary embeds it (examples/embed, no default features),
#     f32 and INT8;
#   - the CLI on the trained models next to the x86-64 build: INT8 outputs bit for bit the
#     same, f32 within 1e-5 relative L2 (x86 runs its own FP32 kernels, aarch64 the `gemm`
#     crate's: another summation order);
#   - `cargo check` of the engine alone and of the CLI for Windows (x86-64) and macOS (ARM).
# With arguments it runs only the cargo tests, filtered by them.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target=aarch64-unknown-linux-gnu
if ! command -v rustup >/dev/null 2>&1; then
    echo "SKIP aarch64: no rustup to add the $target standard library" >&2
    exit 0
fi
pkgs=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null 2>&1 || pkgs+=(qemu-user)
if [ ${#pkgs[@]} -gt 0 ]; then
    sudo_="" ; [ "$(id -u)" = 0 ] || sudo_="sudo"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="${qemu[*]}"
# Every target of the crate builds there without a warning (the lib's x86-only items and
# arguments are cfg'd or allowed off x86-64, each with its reason).
RUSTFLAGS="-D warnings" cargo check --target "$target" --features onnx --all-targets
# The tests built with `onnx` (ONNX import and export) but not `ort`: no ONNX Runtime for
# aarch64 is installed here. Twin tests there run the scalar path, the one the engine takes.
tests=(--lib --test hostile_onnx --test fuzz_replay --test quant --test models --test kernels --test qgemm --test concurrency)
cargo test --release --target "$target" --features onnx "${tests[@]}" -- --test-threads=2 "$@"
[ "$#" -eq 0 ] || exit 0

bin="target/$target/release"
echo "== aarch64: examples/embed without default features"
cargo build --release --target "$target" --no-default-features --example embed
"${qemu[@]}" "$bin/examples/embed" resnet18 --runs 1
"${qemu[@]}" "$bin/examples/embed" resnet18 --int8 --runs 1

echo "== aarch64: the CLI's outputs against x86-64's"
cargo build --release --features ort --bin kestrel
cargo build --release --target "$target" --features onnx --bin kestrel
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
x86=target/release/kestrel
"$x86" quantize models/shapes-resnet18.safetensors -o "$work/shapes-int8.onnx" --calib-samples 8 >/dev/null
"$x86" quantize models/blobs-unet.safetensors -o "$work/blobs-int8.onnx" --calib-samples 8 >/dev/null
for m in models/shapes-resnet18.safetensors "$work/shapes-int8.onnx" models/blobs-unet.safetensors "$work/blobs-int8.onnx"; do
    b="$(basename "$m")"
    "$x86" run "$m" --batch 4 --threads 2 -o "$work/x86-$b.npy" >/dev/null
    "${qemu[@]}" "$bin/kestrel" run "$m" --batch 4 --threads 2 -o "$work/arm-$b.npy" >/dev/null
done
"${KESTREL_PYTHON:-python3}" - "$work" <<'EOF'
import sys, numpy as np
work = sys.argv[1]
bad = 0
for b in ["shapes-resnet18.safetensors", "shapes-int8.onnx", "blobs-unet.safetensors", "blobs-int8.onnx"]:
    x = np.load(f"{work}/x86-{b}.npy").astype(np.float64)
    a = np.load(f"{work}/arm-{b}.npy").astype(np.float64)
    if x.shape != a.shape or not np.isfinite(a).all():
        print(f"{b}: aarch64 output {a.shape} against x86-64 {x.shape}, finite: {np.isfinite(a).all()}")
        bad += 1
        continue
    rel = float(np.linalg.norm(x - a) / max(np.linalg.norm(x), 1e-30))
    int8 = "int8" in b
    ok = np.array_equal(x, a) if int8 else rel <= 1e-5
    print(f"{b}: {'bit-identical' if np.array_equal(x, a) else f'rel L2 {rel:.2e}, max abs {np.abs(x - a).max():.2e}'}"
          f" ({'INT8: must be identical' if int8 else 'f32: within 1e-5'}) {'ok' if ok else 'FAILED'}")
    bad += not ok
sys.exit(1 if bad else 0)
EOF

# Windows and macOS on ARM: the engine alone and the CLI must build there (checked, not linked
# or run: no such system here). Warnings are errors, as kestrel builds without any.
for t in x86_64-pc-windows-gnu aarch64-apple-darwin; do
    echo "== $t: cargo check, engine alone and CLI"
    rustup target list --installed | grep -qx "$t" || rustup target add "$t"
    RUSTFLAGS="-D warnings" cargo check --target "$t" --no-default-features --lib
    RUSTFLAGS="-D warnings" cargo check --target "$t" --features onnx --lib --bins
done
