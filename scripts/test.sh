#!/usr/bin/env bash
# One command on a fresh machine: install what is needed, then run the whole test suite
# (unit tests, disk-format tests against qemu-img, end-to-end boots including the nested-KVM
# boot), then the arm64 leg (the portable crates' unit tests built for aarch64, run under
# qemu-aarch64). Tests that cannot run here record why in $CHR_VMM_SKIP_LOG; they are listed at
# the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The container image's test needs a docker daemon; without one it says it is skipped. A daemon
# started here is stopped when the suite ends.
export CHR_VMM_DOCKERD_PID=${TMPDIR:-/tmp}/chr-vmm-dockerd.$$.pid
stop_dockerd() {
  if [ -s "$CHR_VMM_DOCKERD_PID" ]; then
    kill "$(cat "$CHR_VMM_DOCKERD_PID")" 2>/dev/null || true
    rm -f "$CHR_VMM_DOCKERD_PID"
  fi
}
trap stop_dockerd EXIT
scripts/dockerd.sh || true
export CHR_VMM_SKIP_LOG=${CHR_VMM_SKIP_LOG:-$(mktemp /tmp/chr-vmm-skips.XXXXXX)}
: > "$CHR_VMM_SKIP_LOG"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# The compiling tier is a cargo feature, off by default until it beats the interpreter.
cargo clippy -p x86 -p chr-vmm --features chr-vmm/jit --all-targets -- -D warnings
# The end-to-end tests boot the release binary (debug builds are far too slow for the
# interpreter), so build it first.
cargo build --release -p chr-vmm
status=0
cargo test --release --workspace --no-fail-fast 2>&1 | tee /tmp/chr-vmm-test.log || status=$?
# The jit leg: every interpreter unit test and the host comparison again, with every block
# compiled at its first run (CHR_JIT=0).
CHR_JIT=0 cargo test --release -p x86 --features jit --lib 2>&1 | tee /tmp/chr-vmm-test-jit.log || status=1
# The arm64 leg: the portable crates built for aarch64 and their unit tests run under
# qemu-aarch64 (scripts/arm64-leg.sh). Its results land in its own log, its skips (prefixed
# "aarch64 ") in the skip log, and a leg that cannot run here in $legs_skipped.
legs_skipped=${TMPDIR:-/tmp}/chr-vmm-legs-skipped.$$
: > "$legs_skipped"
CHR_VMM_LEG_SKIP=$legs_skipped scripts/arm64-leg.sh /tmp/chr-vmm-test-aarch64.log || status=1
count() { # count FIELD: the sum of that field of every "test result:" line of both legs
  { grep -shEo '^test result: .*' /tmp/chr-vmm-test.log /tmp/chr-vmm-test-jit.log \
      /tmp/chr-vmm-test-aarch64.log || true; } \
    | awk -v f="$1" '{n+=$f} END {print n+0}'
}
passed=$(count 4)
failed=$(count 6)
# One line per skipped part, named by its test: a test that skipped any part of itself counts
# once, as skipped rather than passed. A whole leg that could not run counts as one skip and
# was never among the passed.
skipped_tests=$(cut -d: -f1 "$CHR_VMM_SKIP_LOG" | sort -u | grep -c . || true)
skipped_legs=$(grep -c . "$legs_skipped" || true)
if [ $((skipped_tests + skipped_legs)) -gt 0 ]; then
  echo "Skipped (the test, or part of it, did not run here; it says why):"
  cat "$CHR_VMM_SKIP_LOG" "$legs_skipped" | sed 's/^/  /'
fi
rm -f "$legs_skipped"
passed=$((passed - skipped_tests))
echo "$passed passed, $failed failed, $((skipped_tests + skipped_legs)) skipped"
exit $status
