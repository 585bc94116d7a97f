#!/usr/bin/env bash
# kestrel on Windows (x86-64), checked on a Linux x86-64 host: cross-built with Debian's mingw-w64
# and run under Wine (the CLI, the tests that start it included: Wine runs child processes).
# Called by scripts/test.sh; installs what it needs (gcc-mingw-w64-x86-64 and wine64 from apt,
# the rustup target). What runs:
#   - every test binary built with `onnx` (no ONNX Runtime for Windows here), except
#     onnx_checker, which runs the host's Python;
#   - the CLI next to the Linux build: the seeded built-in models' outputs (ResNet-18 and UNet
#     at batch 2) and `synth` datasets must be the same bytes (kestrel::detmath), the trained
#     models' outputs on one .npy input too.
# Wine 8 (Debian 12) lacks bcryptprimitives.dll, whose ProcessPrng Rust's std imports since
# 1.78; a stub over RtlGenRandom, compiled here with mingw, goes into the Wine prefix (Windows
# has the real one). If Wine cannot start a trivial Rust program even so, the step is skipped
# with a message; a test that fails under Wine fails the test command.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
target=x86_64-pc-windows-gnu
if ! command -v rustup >/dev/null 2>&1; then
    echo "SKIP Windows: no rustup to add the $target standard library" >&2
    exit 0
fi
pkgs=()
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || pkgs+=(gcc-mingw-w64-x86-64)
[ -x /usr/lib/wine/wine64 ] || pkgs+=(wine64)
if [ ${#pkgs[@]} -gt 0 ]; then
    sudo_="" ; [ "$(id -u)" = 0 ] || sudo_="sudo"
    $sudo_ apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
work="$root/target/wine"
mkdir -p "$work"
export WINEPREFIX="$work/prefix" WINEDEBUG=-all
wine=/usr/lib/wine/wine64
cat > "$work/bcryptprimitives.c" <<'EOF'
#include <windows.h>
#include <ntsecapi.h>
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!RtlGenRandom(data, n)) return FALSE;
        data += n; len -= n;
    }
    return TRUE;
}
EOF
x86_64-w64-mingw32-gcc -shared -O2 -o "$work/bcryptprimitives.dll" "$work/bcryptprimitives.c" -ladvapi32
"$wine" wineboot --init >/dev/null 2>&1 || true
cp "$work/bcryptprimitives.dll" "$WINEPREFIX/drive_c/windows/system32/"
printf 'fn main() { println!("ok"); }\n' > "$work/hello.rs"
rustc --target "$target" -C linker=x86_64-w64-mingw32-gcc -o "$work/hello.exe" "$work/hello.rs"
if [ "$("$wine" "$work/hello.exe" 2>/dev/null | tr -d '\r')" != ok ]; then
    echo "SKIP Windows: Wine does not run a Rust program here" >&2
    exit 0
fi
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER="$wine"
tests=()
for f in tests/*.rs; do
    t="$(basename "$f" .rs)"
    case "$t" in onnx_checker | parity_ort | qdq | cuda | cuda_gpu) continue ;; esac
    tests+=(--test "$t")
done
cargo test --release --target "$target" --features onnx --lib "${tests[@]}" -- --test-threads=2

echo "== Windows: the CLI's outputs against Linux's"
win="$root/target/$target/release/kestrel.exe"
lin="$root/target/release/kestrel"
[ -x "$lin" ] || cargo build --release
out="$work/out"
rm -rf "$out"
mkdir -p "$out"
"$KESTREL_PYTHON" -c "import numpy as np; np.random.seed(3); np.save('$out/in32.npy', np.random.randn(4, 3, 32, 32).astype(np.float32))"
for who in lin win; do
    if [ "$who" = lin ]; then k=("$lin"); else k=("$wine" "$win"); fi
    for m in resnet18 unet; do
        "${k[@]}" run "$m" --batch 2 --threads 2 -o "$out/$who-$m.npy" >/dev/null
    done
    "${k[@]}" run models/shapes-resnet18.safetensors --input "$out/in32.npy" --threads 2 -o "$out/$who-shapes.npy" >/dev/null
    "${k[@]}" synth shapes "$out/$who-synth/shapes" --count 20 --seed 5 >/dev/null
    "${k[@]}" synth blobs "$out/$who-synth/blobs" --count 10 --seed 6 >/dev/null
done
bad=0
for f in resnet18 unet shapes; do
    if cmp -s "$out/lin-$f.npy" "$out/win-$f.npy"; then echo "$f: the same bytes ok"; else echo "$f: outputs differ FAILED"; bad=1; fi
done
if diff -r "$out/lin-synth" "$out/win-synth" >/dev/null; then echo "synth shapes and blobs: the same files ok"; else echo "synth: files differ FAILED"; bad=1; fi
exit "$bad"
