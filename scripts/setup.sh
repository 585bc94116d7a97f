#!/usr/bin/env bash
# Installs what kestrel's build and its ONNX Runtime reference need, idempotently:
# protoc (for candle-onnx) from apt, and a local venv with onnxruntime==1.31.1, onnx, numpy, and
# with KESTREL_SETUP_NVRTC=1 the NVRTC wheel (nvidia-cuda-nvrtc-cu12, for the CUDA kernels'
# compile tests; no GPU needed). Source it (`. scripts/setup.sh`) to get ORT_DYLIB_PATH (and
# KESTREL_NVRTC) exported.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Debian's python3 lacks ensurepip (so `python3 -m venv` fails) until python3-venv is installed.
apt_pkgs=()
command -v protoc >/dev/null 2>&1 || apt_pkgs+=(protobuf-compiler)
command -v python3 >/dev/null 2>&1 || apt_pkgs+=(python3)
{ command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip, venv' 2>/dev/null; } || apt_pkgs+=(python3-venv)
# On AVX-512 hosts the tests also run ORT's and kestrel's AVX2 paths on an emulated AVX2-only
# CPU (qemu user mode); see scripts/test.sh.
if grep -qw avx512f /proc/cpuinfo 2>/dev/null && ! command -v qemu-x86_64 >/dev/null 2>&1; then
  apt_pkgs+=(qemu-user)
fi
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  sudo_="" ; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import onnxruntime, onnx, numpy; assert onnxruntime.__version__ == "1.31.1"' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "onnxruntime==1.31.1" "onnx==1.23.2" "numpy>=1.26"
fi
ORT_DYLIB_PATH="$(ls "$venv"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1 | head -n 1)"
export ORT_DYLIB_PATH
# NVRTC for the CUDA backend's compile tests (feature `cuda`; no GPU needed): the pip wheel,
# when the caller asks for it (scripts/test.sh sets KESTREL_SETUP_NVRTC=1).
if [ "${KESTREL_SETUP_NVRTC:-0}" = 1 ]; then
  if ! ls "$venv"/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12 >/dev/null 2>&1; then
    "$venv/bin/pip" install -q --disable-pip-version-check "nvidia-cuda-nvrtc-cu12==12.8.*"
  fi
  KESTREL_NVRTC="$(ls "$venv"/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12 | head -n 1)"
  export KESTREL_NVRTC
fi
export KESTREL_PYTHON="$venv/bin/python"
