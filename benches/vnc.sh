#!/usr/bin/env bash
# VNC benchmark: chr-vmm (--accel interp --vnc) beside qemu-system-x86_64 (-accel tcg -vga std
# -vnc) on the same guest in the same run: the test guest with SYSLINUX waiting at `boot:`.
#
#  - latency: a key sent over RFB to the first framebuffer update that draws its echo (glyph
#    lines of a text cell changed, not just the blinking cursor), KEYS times, one key at a time
#    (benches/vnc_client.py latency);
#  - CPU: utime+stime from /proc/PID/stat over SECS seconds, with no client and with one idle
#    client that keeps an incremental update request outstanding (as real viewers do). The
#    guest itself polls the keyboard at the prompt, so the client's cost is the difference; for
#    chr-vmm the display threads (vga-render, vnc-*) are also counted on their own.
#
# Usage: benches/vnc.sh [KEYS [SECS]]     (defaults 30 and 10)
set -euo pipefail
cd "$(dirname "$0")/.."
keys=${1:-30}
secs=${2:-10}
port_ours=${VNC_BENCH_PORT:-5990}
port_qemu=$((port_ours + 1))
scripts/install-deps.sh
cargo build --release -p chr-vmm >&2
guest=$(images/test-guest/build.sh)
work=$(mktemp -d /tmp/chr-vmm-vnc-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# The prompt disk: SYSLINUX waits at boot: for ever.
start=$(sed -n 's/^p1=start:\([0-9]*\).*/\1/p' "$guest/info.txt")
cp --sparse=always "$guest/guest.img" "$work/prompt.img"
printf 'SERIAL 0 115200\nPROMPT 1\nTIMEOUT 0\nDEFAULT chr\nLABEL chr\n  KERNEL /vmlinuz\n  INITRD /initrd.gz\n  APPEND %s\n' \
  "$(cat "$guest/cmdline")" > "$work/syslinux.cfg"
MTOOLS_SKIP_CHECK=1 mcopy -o -i "$work/prompt.img@@$((start * 512))" "$work/syslinux.cfg" ::/syslinux.cfg

ticks() { # ticks PID [THREAD-NAME-REGEX]: utime+stime of the process, or of its matching threads
  if [ -z "${2:-}" ]; then awk '{print $14 + $15}' "/proc/$1/stat"; return; fi
  local t sum=0
  for t in /proc/"$1"/task/*; do
    grep -qE "$2" "$t/comm" 2>/dev/null && sum=$((sum + $(awk '{print $14 + $15}' "$t/stat")))
  done
  echo $sum
}
hz=$(getconf CLK_TCK)
pct() { awk -v t="$1" -v hz="$hz" -v s="$secs" 'BEGIN { printf "%.1f", 100 * t / (hz * s) }'; }

# measure NAME PID PORT: fills result_NAME with "idle-cpu client-cpu display-cpu median p90 min max"
measure() {
  local name=$1 pid=$2 port=$3 t0 t1 d0 d1 idle client display
  sleep 2
  t0=$(ticks "$pid"); sleep "$secs"; t1=$(ticks "$pid"); idle=$(pct $((t1 - t0)))
  python3 -B benches/vnc_client.py idle "$port" $((secs + 3)) &
  local cl=$!
  sleep 2
  t0=$(ticks "$pid"); d0=$(ticks "$pid" '^(vga-render|vnc-)')
  sleep "$secs"
  t1=$(ticks "$pid"); d1=$(ticks "$pid" '^(vga-render|vnc-)')
  wait $cl
  client=$(pct $((t1 - t0)))
  display=$( [ "$name" = ours ] && pct $((d1 - d0)) || echo "-")
  python3 -B benches/vnc_client.py latency "$port" "$keys" > "$work/$name.lat"
  local stats
  stats=$(python3 -c '
import statistics, sys
v = sorted(float(l) * 1000 for l in open(sys.argv[1]))
q = statistics.quantiles(v, n=10)
print(f"{statistics.median(v):.1f} {q[8]:.1f} {v[0]:.1f} {v[-1]:.1f}")' "$work/$name.lat")
  eval "result_$name=\"$idle $client $display $stats\""
}

wait_prompt() { # wait_prompt FILE PID
  for _ in $(seq 1 300); do
    grep -q "boot:" "$1" 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "vnc bench: the VMM exited; see $1" >&2; exit 1; }
    sleep 0.2
  done
  echo "vnc bench: no boot: prompt in $1" >&2; exit 1
}

echo "chr-vmm --accel interp: booting to boot:" >&2
"${CARGO_TARGET_DIR:-target}"/release/chr-vmm run --accel interp --snapshot --serial "file:$work/ours.serial" \
  --vnc "127.0.0.1:$port_ours" "$work/prompt.img" 2> "$work/ours.log" &
pids+=($!); ours=$!
wait_prompt "$work/ours.serial" "$ours"
measure ours "$ours" "$port_ours"
kill "$ours"; wait "$ours" 2>/dev/null || true

echo "qemu -accel tcg -vga std: booting to boot:" >&2
qemu-system-x86_64 -nodefaults -no-user-config -machine pc -accel tcg -m 256 \
  -bios /usr/share/seabios/bios-256k.bin -vga std -vnc "127.0.0.1:$((port_qemu - 5900))" \
  -serial "file:$work/qemu.serial" -drive "file=$work/prompt.img,format=raw,if=virtio,snapshot=on" \
  2> "$work/qemu.log" &
pids+=($!); qemu=$!
wait_prompt "$work/qemu.serial" "$qemu"
measure qemu "$qemu" "$port_qemu"
kill "$qemu"; wait "$qemu" 2>/dev/null || true

row() { # row LABEL "idle client display median p90 min max"
  read -r idle client display med p90 min max <<<"$2"
  printf '| %s | %s ms | %s ms | %s-%s ms | %s %% | %s %% | %s |\n' "$1" "$med" "$p90" "$min" "$max" \
    "$idle" "$client" "$( [ "$display" = - ] && echo - || echo "$display %")"
}
echo
echo "$(date -u +%Y-%m-%d) on $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)); $keys keys, CPU over ${secs} s"
echo
echo "| VMM | key to echo, median | p90 | min-max | CPU, no client | CPU, one idle client | of which display threads |"
echo "|---|---|---|---|---|---|---|"
row "chr-vmm --accel interp --vnc" "$result_ours"
row "qemu -accel tcg -vga std -vnc" "$result_qemu"
