#!/usr/bin/env bash
# Conformance figure (issue 12): per group, how many checks pass on the interpreter, on QEMU TCG
# and natively, measured in one run, printed as a Markdown table.
#
# - Integer, x87, MMX, SSE: the instruction-level differential harness (crates/x86/src/difftest).
#   The host run (CHR_VMM_DIFF_RECORD) compares the interpreter with the host CPU and records the
#   host's outcome of every case; the same test binary then runs under qemu-x86_64 (QEMU's
#   user-mode emulator, i.e. TCG as the CPU) with CHR_VMM_DIFF_REPLAY, where the harness's
#   "native" side is TCG, compared with the recorded host outcomes with the same tolerances.
#   Natively = the reference: every case passes by definition.
# - System: the interpreter's unit tests of system behaviour that have an expected value from
#   the manuals or the host (fast_syscall, cpuid, difftest::regress: exact faults). They test the
#   interpreter itself: n/a on TCG and natively.
# - Userland battery: crates/chr-vmm/tests/interp_battery.rs (both Debian kernels, the guest on
#   the interpreter and on qemu-system-x86_64 TCG, the host running the portable part): the
#   host's lines (the reference) that each side repeats exactly, summed over the two kernels.
#
# Usage: benches/conformance.sh [QEMU_CPU]   (default: max, which has SSE4.2; qemu64 lacks SSSE3+)
set -euo pipefail
cd "$(dirname "$0")/.."
cpu=${1:-max}
work=$(mktemp -d /tmp/chr-vmm-conformance.XXXXXX); trap 'rm -rf "$work"' EXIT
# CONFORMANCE_REPORT=dir keeps TCG's differences (two examples per form) in dir/<group>.txt.
report=${CONFORMANCE_REPORT:-$work/report}
mkdir -p "$work/rec" "$report"
started=$(date +%s)

bin=$(cargo test -p x86 --lib --no-run 2>&1 | sed -n 's/.*Executable unittests src\/lib.rs (\(.*\))/\1/p')
[ -x "$bin" ] || { echo "cannot find the x86 test binary" >&2; exit 1; }
qemu=$(command -v qemu-x86_64) || { echo "qemu-x86_64 is not installed (qemu-user)" >&2; exit 1; }

# Host: the interpreter against the host CPU, host outcomes recorded.
CHR_VMM_DIFF_RECORD="$work/rec" "$bin" difftest::tests --test-threads=1 --nocapture >"$work/host.log" 2>&1 || true
# TCG: the same cases, TCG's outcomes against the recorded host outcomes.
CHR_VMM_DIFF_REPLAY="$work/rec" CHR_VMM_DIFF_REPORT="$report" \
  "$qemu" -cpu "$cpu" "$bin" difftest::tests --test-threads=1 --nocapture >"$work/tcg.log" 2>&1 || true
# System: the interpreter's unit tests.
"$bin" fast_syscall cpuid difftest::regress --test-threads=1 >"$work/system.log" 2>&1 || true
# Battery, if this tree has it.
if [ -f crates/chr-vmm/tests/interp_battery.rs ]; then
  cargo test -p chr-vmm --test interp_battery -- --nocapture >"$work/battery.log" 2>&1 || true
fi

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
cell() { # log group -> "pass / cases" or "-"
  local l; l=$(grep "^conformance: group=$2 " "$1" | head -1)
  [ -n "$l" ] && echo "$(echo "$l" | field pass) / $(echo "$l" | field cases)" || echo "not run"
}
tcg_cell() {
  local l; l=$(grep "^conformance: group=$1 " "$work/tcg.log" | head -1)
  if [ -z "$l" ]; then echo "not run | not run"; return; fi
  echo "$(echo "$l" | field pass) / $(echo "$l" | field cases) | $(echo "$l" | field clean_pass) / $(echo "$l" | field clean)"
}
native_cell() {
  local l; l=$(grep "^conformance: group=$1 " "$work/host.log" | head -1)
  [ -n "$l" ] && echo "$(echo "$l" | field cases) / $(echo "$l" | field cases) (reference)" || echo "not run"
}

echo "Measured $(date -u +%Y-%m-%d) on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"
echo "$("$qemu" --version | head -1) (qemu-system-x86_64: $(qemu-system-x86_64 --version 2>/dev/null | head -1 | sed 's/.*version //')),"
echo "\`-cpu $cpu\`; command: \`benches/conformance.sh $cpu\`."
echo
echo "| group | interpreter | QEMU TCG | QEMU TCG, cases the host ran without a fault | natively |"
echo "|---|---|---|---|---|"
for g in Integer X87 Mmx Sse; do
  name=$g; [ $g = X87 ] && name=x87; [ $g = Mmx ] && name=MMX; [ $g = Sse ] && name="SSE (to 4.2)"
  echo "| $name | $(cell "$work/host.log" $g) | $(tcg_cell $g) | $(native_cell $g) |"
done
sys=$(grep -m1 '^test result' "$work/system.log" || true)
sp=$(echo "$sys" | sed -n 's/.* \([0-9]*\) passed.*/\1/p'); sf=$(echo "$sys" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
echo "| system (unit tests) | ${sp:-?} / $(( ${sp:-0} + ${sf:-0} )) | n/a | n/a | n/a |"
if [ -f "$work/battery.log" ] && grep -q '^conformance: group=Battery' "$work/battery.log"; then
  # Summed over the two kernels (one line per side and kernel).
  b() { grep "^conformance: group=Battery side=$1 " "$work/battery.log" |
    awk '{for(i=1;i<=NF;i++){split($i,f,"="); if(f[1]=="cases")c+=f[2]; if(f[1]=="pass")p+=f[2]}} END{print p" / "c}'; }
  echo "| userland battery (both kernels) | $(b interpreter) | $(b tcg) | - | $(b native) (reference) |"
else
  echo "| userland battery | pending | pending | - | pending |"
fi
echo
echo "Why TCG differs (cases): $(for g in Integer X87 Mmx Sse; do
  grep "^conformance: group=$g " "$work/tcg.log" | field reasons | sed "s/^/$g: /; s/\$/;/"; done | tr '\n' ' ')"
[ -f "$work/battery.log" ] && echo "Battery test: $(grep -m1 '^test result' "$work/battery.log" || echo 'no result')"
[ -f "$work/battery.log" ] && echo "Battery: $(grep '^conformance: group=Battery' "$work/battery.log" | sed 's/^conformance: group=Battery //' | tr '\n' ';')"
echo "Took $(( $(date +%s) - started )) s."
