#!/bin/bash
# check-qemu.sh - check the test guest end to end under QEMU (the reference VMM) and time its boot.
#
# Usage: images/test-guest/check-qemu.sh [FORMAT]     (FORMAT as for boot-qemu.sh, default vmdk)
# Checks, in one boot: the prompt "MikroTik Login: " appears (time from QEMU start is printed),
# virtio-blk and virtio-net were found, a command typed on the serial console runs, the data
# partition reads back with the expected md5, HTTP on port 80 answers through the host forward,
# telnetd answers, and QEMU's monitor command system_powerdown makes the guest power off (QEMU
# exits). Then a second boot of the chr_test=poweroff disk must end by itself.
# Prints "check-qemu: PASS ..." lines; exits non-zero on the first failure.
# Environment: as boot-qemu.sh (ACCEL, MEM, ...); PORT_BASE (default 18000 + PID % 1000 * 4).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FORMAT=${1:-vmdk}
DIR=$("$HERE/build.sh")
W=$(mktemp -d /tmp/check-qemu.XXXXXX)
QPID=
cleanup() { [ -z "$QPID" ] || kill "$QPID" 2>/dev/null || true; exec 3>&- 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
fail() { echo "check-qemu: FAIL $*" >&2; echo "--- console:" >&2; tr -d '\r' <"$W/console.log" | tail -n 40 >&2; exit 1; }
pass() { echo "check-qemu: PASS $*"; }
PB=${PORT_BASE:-$((18000 + $$ % 1000 * 4))}
export HTTP_PORT=$PB TELNET_PORT=$((PB + 1))
MON=$((PB + 2))
clog() { tr -d '\r' <"$W/console.log"; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
wait_for() { # wait_for TEXT TIMEOUT: until the console log contains TEXT (count > $skip)
  local text=$1 end=$((SECONDS + $2))
  until [ "$(grep -acF -- "$text" "$W/console.log" || true)" -gt "${3:-0}" ]; do
    [ $SECONDS -lt $end ] || return 1
    kill -0 "$QPID" 2>/dev/null || return 1
    sleep 0.05
  done
}
mon() { exec 5<>/dev/tcp/127.0.0.1/$MON; printf '%s\n' "$1" >&5; sleep 0.5; exec 5>&-; }

# --- boot 1 -------------------------------------------------------------------------------------------
mkfifo "$W/in"; : >"$W/console.log"
t0=$(now)
"$HERE/boot-qemu.sh" "$FORMAT" -monitor tcp:127.0.0.1:$MON,server,nowait <"$W/in" >"$W/console.log" 2>&1 &
QPID=$!
exec 3>"$W/in"
wait_for "MikroTik Login: " 120 || fail "no login prompt"
t_prompt=$(elapsed "$t0")
pass "prompt 'MikroTik Login: ' after $t_prompt s ($FORMAT, ACCEL=${ACCEL:-tcg})"
grep -aq 'chr-test-guest: virtio-blk ok' "$W/console.log" || fail "virtio-blk not ok"
grep -aq 'chr-test-guest: virtio-net ok' "$W/console.log" || fail "virtio-net not ok"
pass "$(clog | grep -a 'virtio-blk ok'), $(clog | grep -a 'virtio-net ok' | sed 's/chr-test-guest: //')"

printf 'echo check-$((6*7)); grep -m1 "model name" /proc/cpuinfo\n' >&3
wait_for "check-42" 30 || fail "typed command did not run"
pass "command typed on serial runs: $(clog | grep -a '^model name' | head -1)"
wait_for "MikroTik Login: " 10 1 || fail "no prompt after the command"

want=$(cat "$DIR/data.md5")
printf 'md5sum /dev/vda2\n' >&3
wait_for "/dev/vda2" 60 1 && wait_for "MikroTik Login: " 60 2 || fail "md5sum of /dev/vda2 did not finish"
got=$(clog | grep -a '^[0-9a-f]\{32\}  /dev/vda2$' | awk '{print $1}' | tail -1 || true)
[ "$got" = "$want" ] || fail "data partition md5 $got, expected $want"
pass "data partition /dev/vda2 md5 $got"

page=""
for _ in $(seq 1 50); do
  page=$( { exec 6<>/dev/tcp/127.0.0.1/$HTTP_PORT && printf 'GET / HTTP/1.0\r\n\r\n' >&6 && timeout 5 cat <&6; } 2>/dev/null || true)
  case $page in *chr-test-guest*) break ;; esac; sleep 0.2
done
case $page in *chr-test-guest*) pass "HTTP port 80 via hostfwd :$HTTP_PORT: $(echo "$page" | head -1 | tr -d '\r')" ;;
  *) fail "no HTTP answer on :$HTTP_PORT" ;; esac
tel=$( { exec 7<>/dev/tcp/127.0.0.1/$TELNET_PORT && timeout 2 head -c 3 <&7 | od -An -tx1; } 2>/dev/null || true)
case $tel in *ff*) pass "telnet port 23 answers (${tel# })" ;; *) fail "telnetd did not answer on :$TELNET_PORT" ;; esac

t1=$(now)
mon system_powerdown
for _ in $(seq 1 200); do kill -0 "$QPID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$QPID" 2>/dev/null && fail "system_powerdown did not power the guest off"
wait "$QPID" || true; QPID=
grep -aq 'power button: powering off' "$W/console.log" || fail "QEMU ended without the power-button line"
pass "system_powerdown -> acpid -> poweroff -f, QEMU exited after $(elapsed "$t1") s"

# --- boot 2: chr_test=poweroff ------------------------------------------------------------------------
: >"$W/console.log"
t0=$(now)
timeout 120 "$HERE/boot-qemu.sh" poweroff </dev/null >"$W/console.log" 2>&1 || fail "poweroff boot: QEMU failed or timed out"
grep -aq 'chr-test-guest: ready' "$W/console.log" || fail "poweroff boot: no ready line"
pass "chr_test=poweroff: QEMU exited by itself after $(elapsed "$t0") s (full boot + power off)"
