#!/bin/bash
# check-qemu.sh - check mbr-checksum end to end under QEMU + SeaBIOS (the reference).
#
# Usage: firmware/mbr-checksum/check-qemu.sh [SECTORS...]     (default: 0 1 100 1000 5000)
# For each SECTORS and each disk interface (virtio, ide): builds a disk with make-disk.sh, boots it
# with qemu-system-x86_64 -accel tcg -bios bios-256k.bin, waits (up to TIMEOUT=60 s) for the
# program's result line on the serial console and compares it with the expected one. Then checks
# that a sector count larger than the disk is reported as "MBR-CHECKSUM error=..".
# Prints one PASS/FAIL line per boot; exit status 1 if any failed.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIOS=${BIOS:-/usr/share/seabios/bios-256k.bin}
command -v qemu-system-x86_64 >/dev/null 2>&1 && [ -f "$BIOS" ] || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 seabios >>/tmp/mbr-checksum-apt.log 2>&1 ||
  { apt-get update -qq >>/tmp/mbr-checksum-apt.log 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 seabios >>/tmp/mbr-checksum-apt.log 2>&1; } ||
  { echo "check-qemu: cannot install qemu-system-x86 seabios" >&2; exit 2; }; }
W=$(mktemp -d /tmp/mbr-check.XXXXXX); trap 'rm -rf "$W"' EXIT
rc=0

boot() { # boot IMAGE IF -> the result line (or nothing); seconds taken in $W/took
  local log=$W/console.log start=$EPOCHREALTIME line=""
  : >"$log"
  qemu-system-x86_64 -accel tcg -nographic -drive "file=$1,format=raw,if=$2" -bios "$BIOS" \
    </dev/null >"$log" 2>&1 &
  local q=$! end=$((SECONDS + ${TIMEOUT:-60}))
  while [ $SECONDS -lt $end ] && kill -0 $q 2>/dev/null; do
    line=$(tr -d '\r' <"$log" | grep -aE '^MBR-CHECKSUM (sectors|error)=' | head -1)
    [ -n "$line" ] && break
    sleep 0.1
  done
  kill $q 2>/dev/null; wait $q 2>/dev/null
  awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }' >"$W/took"
  echo "$line"
}

for n in "${@:-0 1 100 1000 5000}"; do
  for n1 in $n; do
    want=$("$HERE/make-disk.sh" "$W/disk.img" "$n1") || { echo "check-qemu: FAIL make-disk $n1"; rc=1; continue; }
    for ifc in virtio ide; do
      got=$(boot "$W/disk.img" $ifc)
      if [ "$got" = "$want" ]; then echo "check-qemu: PASS if=$ifc $got ($(cat "$W/took") s)"
      else echo "check-qemu: FAIL if=$ifc expected '$want', got '$got'"; rc=1; fi
    done
  done
done

# a sector count beyond the end of the disk must come back as an INT 13h error
"$HERE/make-disk.sh" "$W/disk.img" 100 >/dev/null
printf '\x88\x13\x00\x00' | dd of="$W/disk.img" bs=1 seek=$((0x1B0)) conv=notrunc status=none # N = 5000
for ifc in virtio ide; do
  got=$(boot "$W/disk.img" $ifc)
  case $got in "MBR-CHECKSUM error="*) echo "check-qemu: PASS if=$ifc read past the end: $got" ;;
    *) echo "check-qemu: FAIL if=$ifc read past the end: got '$got'"; rc=1 ;; esac
done
exit $rc
