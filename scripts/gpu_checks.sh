#!/usr/bin/env bash
# The CUDA checks that need a GPU, in two steps (the GPU machine has no Rust toolchain):
#   bash scripts/gpu_checks.sh prepare   # here: builds and strips the binaries into gpu/
#   bash scripts/gpu_checks.sh run       # there, with gpu/ carried: the kernel twin tests
#                                        # (tests/cuda_gpu.rs, KESTREL_REQUIRE_GPU=1), the
#                                        # compile tests with that machine's NVRTC, then
#                                        # kestrel's tensor-core conv and PyTorch's cuDNN conv
#                                        # on the same shapes; logs into $OUT (or gpu/out).
# gpu/ is a build output: keep it out of git (.git/info/exclude) and name it in the carry list.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
case "${1:-}" in
prepare)
    . scripts/setup.sh
    set -e
    mkdir -p gpu
    for t in cuda cuda_gpu; do
        bin=$(cargo test --release --features ort,cuda --test "$t" --no-run --message-format=json 2>/dev/null | python3 -c 'import json,sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable")][-1])')
        strip -o "gpu/$t" "$bin"
    done
    cargo build --release --features ort,cuda --example cuda_conv_speed
    strip -o gpu/cuda_conv_speed target/release/examples/cuda_conv_speed
    cp scripts/gpu_checks.sh scripts/cuda_torch_conv.py gpu/
    ls -la gpu
    ;;
run)
    out="${OUT:-gpu/out}"
    mkdir -p "$out"
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv
    nv=$(ls /usr/local/cuda/lib64/libnvrtc.so.1[0-9]* 2>/dev/null | grep -v builtins | head -1)
    [ -n "$nv" ] || nv=$(find / -xdev -name 'libnvrtc.so.1*' 2>/dev/null | grep -v builtins | head -1)
    echo "NVRTC: ${nv:-none found}"
    export KESTREL_NVRTC="$nv" LD_LIBRARY_PATH="$(dirname "$nv"):${LD_LIBRARY_PATH:-}" KESTREL_CUDA_CACHE=/tmp/kestrel-cuda-cache KESTREL_REQUIRE_GPU=1
    rc=0
    ./gpu/cuda_gpu --test-threads=1 --nocapture 2>&1 | tee "$out/twin.log" || rc=1
    # The CLI test needs the kestrel binary, which is not carried.
    ./gpu/cuda --test-threads=1 --nocapture --skip the_cli 2>&1 | tee "$out/compile.log" || rc=1
    ./gpu/cuda_conv_speed 20 2>&1 | tee "$out/speed.log" || rc=1
    python3 gpu/cuda_torch_conv.py 20 2>&1 | tee "$out/torch.log" || rc=1
    exit $rc
    ;;
*)
    echo "usage: bash scripts/gpu_checks.sh prepare|run" >&2
    exit 2
    ;;
esac
