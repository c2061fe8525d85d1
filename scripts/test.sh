#!/usr/bin/env bash
# One command on a fresh machine: install what is needed, then run the whole test suite
# (unit tests, disk-format tests against qemu-img, end-to-end boots including the nested-KVM
# boot). Tests that cannot run here record why in $CHR_VMM_SKIP_LOG; they are listed at the end.
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
# The end-to-end tests boot the release binary (debug builds are far too slow for the
# interpreter), so build it first.
cargo build --release -p chr-vmm
status=0
cargo test --release --workspace --no-fail-fast 2>&1 | tee /tmp/chr-vmm-test.log || status=$?
passed=$(grep -Eo '^test result: .*' /tmp/chr-vmm-test.log | awk '{p+=$4; f+=$6} END {print p+0}')
failed=$(grep -Eo '^test result: .*' /tmp/chr-vmm-test.log | awk '{p+=$4; f+=$6} END {print f+0}')
# One line per skipped part, named by its test: a test that skipped any part of itself counts
# once, as skipped rather than passed.
skipped=$(cut -d: -f1 "$CHR_VMM_SKIP_LOG" | sort -u | grep -c . || true)
if [ "$skipped" -gt 0 ]; then
  echo "Skipped (the test, or part of it, did not run here; it says why):"
  sed 's/^/  /' "$CHR_VMM_SKIP_LOG"
fi
passed=$((passed - skipped))
echo "$passed passed, $failed failed, $skipped skipped"
exit $status
