#!/usr/bin/env bash
# The arm64 leg of the test suite: the portable crates built for aarch64-unknown-linux-gnu with
# Debian's cross toolchain (scripts/aarch64-cross.sh installs it) and their unit tests run under
# qemu-aarch64, with the interpreter running SeaBIOS's POST (crate x86's seabios_pc) and the
# instruction-level differential test replayed against outcomes recorded on this host. The KVM
# crate is x86-only; the end-to-end boots and x86's linux_direct (a 300 s time budget that
# asserts nothing) would take far longer emulated than they tell.
#
# Usage: scripts/arm64-leg.sh [LOG]    cargo's output is shown and kept in LOG
#                                      (default /tmp/chr-vmm-test-aarch64.log)
# Builds into ${CARGO_TARGET_DIR:-target}/aarch64-cross, apart from the native build.
# A test's skip goes to $CHR_VMM_SKIP_LOG as "aarch64 TEST: why", apart from the native test of
# the same name. When the toolchain cannot be installed, the leg does not run: "arm64 leg: why"
# is appended to $CHR_VMM_LEG_SKIP and the status is 0 (scripts/test.sh counts it as skipped);
# without $CHR_VMM_LEG_SKIP the reason goes to stderr and the status is 2.
# Exit status 1 when a test failed or the build broke.
set -euo pipefail
cd "$(dirname "$0")/.."
LOG=${1:-/tmp/chr-vmm-test-aarch64.log}
: > "$LOG"
CRATES=(x86 machine irqchip disk net virtio display test-support)
TARGET=aarch64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-target}/aarch64-cross

leg_skip() {
  if [ -n "${CHR_VMM_LEG_SKIP:-}" ]; then echo "arm64 leg: $*" >> "$CHR_VMM_LEG_SKIP"; exit 0; fi
  echo "SKIPPED: arm64 leg: $*" >&2; exit 2
}
setup_err=$(mktemp); record=$(mktemp -d)
trap 'rm -rf "$setup_err" "${skips:-}" "$record"' EXIT
# The host comparison's cases and this x86-64 host's outcomes, recorded (with the native
# toolchain, before the cross one's environment) for the aarch64 build to replay: its
# difftest groups then compare the interpreter with them, as the native ones do with the CPU.
if [ "$(uname -m)" = x86_64 ]; then
  echo "[arm64-leg] recording the host's outcomes of the differential test" >&2
  if ! CHR_VMM_DIFF_RECORD=$record CHR_VMM_SKIP_LOG=/dev/null nice -n 10 cargo test --release -p x86 --lib \
      difftest::tests > "$LOG.record" 2>&1; then
    echo "[arm64-leg] recording failed (see $LOG.record); the aarch64 differential test will skip" >&2
  fi
fi
if ! env_lines=$(scripts/aarch64-cross.sh 2>"$setup_err"); then
  cat "$setup_err" >&2
  leg_skip "the aarch64 cross toolchain could not be installed: $(tail -1 "$setup_err" | sed "s/^\[aarch64-cross\] //")"
fi
cat "$setup_err" >&2
eval "$env_lines"

args=(--release --target "$TARGET" --target-dir "$TARGET_DIR")
for c in "${CRATES[@]}" chr-vmm; do args+=(-p "$c"); done
args+=(--lib --bins --test seabios_pc)  # unit tests everywhere (chr-vmm's are in its binary)
start=$SECONDS
echo "[arm64-leg] building ${CRATES[*]} and chr-vmm for $TARGET into $TARGET_DIR" >&2
if ! nice -n 10 /usr/bin/cargo test "${args[@]}" --no-run 2>&1 | tee -a "$LOG"; then
  echo "[arm64-leg] the aarch64 build failed" >&2; exit 1
fi
built=$SECONDS
skips=$(mktemp)
status=0
CHR_VMM_DIFF_REPLAY=$record CHR_VMM_SKIP_LOG=$skips /usr/bin/cargo test "${args[@]}" --no-fail-fast 2>&1 \
  | tee -a "$LOG" || status=1
if [ -n "${CHR_VMM_SKIP_LOG:-}" ]; then sed 's/^/aarch64 /' "$skips" >> "$CHR_VMM_SKIP_LOG"; fi
echo "[arm64-leg] build $((built - start)) s, tests $((SECONDS - built)) s" | tee -a "$LOG" >&2
exit $status
