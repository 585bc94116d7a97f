#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo-afl on the stable toolchain (README, "Fuzzing").
# Usage: scripts/fuzz.sh [EXECS] [TARGET…]   (default: 1000000 executions of every target)
# Builds fuzz/ with AFL instrumentation (debug assertions and overflow checks on), runs each
# target from its seed corpus fuzz/corpus/<target> until EXECS executions, one after another,
# and prints executions, speed, crashes and hangs per target. Findings are in
# fuzz/out/<target>/default/{crashes,hangs}; a fixed one goes into fuzz/regressions/<target>/,
# which tests/fuzz_replay.rs replays in README's test command.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
execs="${1:-1000000}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(onnx qdq session precisions safetensors image npy tiff)
command -v cargo-afl >/dev/null || cargo install cargo-afl
cargo afl config --build >/dev/null 2>&1 || true
cd "$root/fuzz"
cargo afl build --release
mkdir -p out
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1
# Bound the engine's own allocations the way a user would.
export KESTREL_MEMORY_LIMIT="${KESTREL_MEMORY_LIMIT:-2147483648}"
for t in "${targets[@]}"; do
    echo "== fuzz $t: $execs executions"
    corpus="corpus/$t"
    [ "$t" = session ] && [ ! -d "$corpus" ] && corpus=corpus/onnx
    # -m: the process's address-space limit in MB (AFL kills it above); -t: ms per run.
    cargo afl fuzz -i "$corpus" -o "out/$t" -m 4096 -t 10000 -E "$execs" "target/release/$t" > "out/$t.log" 2>&1 || true
    s="out/$t/default/fuzzer_stats"
    printf '%s: %s executions, %s/s, %s crashes, %s hangs, %s corpus entries\n' "$t" \
        "$(awk '/^execs_done/ {print $3}' "$s")" "$(awk '/^execs_per_sec/ {print $3}' "$s")" \
        "$(awk '/^saved_crashes/ {print $3}' "$s")" "$(awk '/^saved_hangs/ {print $3}' "$s")" \
        "$(awk '/^corpus_count/ {print $3}' "$s")"
done
