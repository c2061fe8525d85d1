#!/bin/bash
# build.sh - the battery guest: the test guest (images/test-guest/build.sh) with a userland
# battery in its initramfs, on one of Debian's two x86-64 kernels.
#
# Usage: images/battery-guest/build.sh [amd64|cloud-amd64]     (default amd64)
#   Prints two lines on stdout (progress goes to stderr):
#     guest=DIR     the guest, as images/test-guest/build.sh makes it, in $CHR_VMM_CACHE/battery-guest-FLAVOUR
#     overlay=DIR   what was added to its initramfs: battery/battery64, battery/battery32 (the same static
#                   programs the host runs as a tie-breaker), battery/*.xz, bin/battery
#   The overlay is rebuilt only when src/, rootfs/ or this script change; the guest only when the
#   overlay or images/test-guest change. The kernel command line gets print-fatal-signals=1.
# Needs: gcc, gcc-multilib (the i386 build), xz-utils; the rest is images/test-guest/build.sh's.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${CHR_VMM_CACHE:-/var/tmp/chr-vmm}
FLAVOUR=${1:-amd64}
log() { echo "battery-guest: $*" >&2; }
die() { echo "battery-guest: error: $*" >&2; exit 1; }
case $FLAVOUR in amd64|cloud-amd64) ;; *) die "unknown kernel flavour $FLAVOUR (amd64 or cloud-amd64)";; esac
[ "$(uname -m)" = x86_64 ] || die "the battery programs are built with the native gcc: run this on x86_64"

mkdir -p "$CACHE"
OVL=$CACHE/battery-overlay
exec 9>"$CACHE/battery-overlay.lock"
flock 9
stamp=$(cd "$HERE" && find build.sh src rootfs -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1)
if [ ! -f "$OVL/stamp" ] || [ "$(cat "$OVL/stamp")" != "$stamp" ]; then
  apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$CACHE/test-guest-apt.log" 2>&1 \
      || { apt-get update -qq >>"$CACHE/test-guest-apt.log" 2>&1 || true
           DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$CACHE/test-guest-apt.log" 2>&1; } \
      || die "cannot install $* (see $CACHE/test-guest-apt.log)"
  }
  command -v gcc >/dev/null || { log "installing gcc"; apt_install gcc libc6-dev; }
  [ -f /usr/lib32/libc.a ] || [ -f /usr/lib/i386-linux-gnu/libc.a ] || { log "installing gcc-multilib"; apt_install gcc-multilib; }
  command -v xz >/dev/null || { log "installing xz-utils"; apt_install xz-utils; }
  N=$(mktemp -d "$CACHE/battery-overlay.work.XXXXXX")
  trap 'rm -rf "$N"' EXIT
  mkdir -p "$N/battery" "$N/bin"
  log "building the battery programs (x86-64 and i386, static)"
  flags=(-static -O2 -D_GNU_SOURCE -pthread -fno-strict-aliasing)
  gcc "${flags[@]}" -o "$N/battery/battery64" "$HERE"/src/*.c -lm 2>"$N/gcc64.log" \
    || { cat "$N/gcc64.log" >&2; die "gcc failed (x86-64)"; }
  gcc -m32 "${flags[@]}" -o "$N/battery/battery32" "$HERE"/src/*.c -lm 2>"$N/gcc32.log" \
    || { cat "$N/gcc32.log" >&2; die "gcc -m32 failed (i386; is gcc-multilib installed?)"; }
  rm -f "$N"/gcc*.log
  # xz data for the guest's unxz (busybox cannot compress xz): a known text and its checksum
  awk 'BEGIN { for (i = 0; i < 30000; i++) printf "%08d line of the xz round trip %d\n", (i * 7919) % 30011, i * i }' \
    > "$N/xz.txt"
  xz -9e -c "$N/xz.txt" > "$N/battery/text.xz"
  sha256sum < "$N/xz.txt" | cut -d' ' -f1 > "$N/battery/text.sha256"
  rm -f "$N/xz.txt"
  cp -a "$HERE/rootfs/." "$N/"
  echo "$stamp" > "$N/stamp"
  rm -rf "$OVL.old"; [ ! -e "$OVL" ] || mv "$OVL" "$OVL.old"; mv "$N" "$OVL"; rm -rf "$OVL.old"
  trap - EXIT
fi
# (the lock stays held: a concurrent caller must not replace the overlay while it is copied)

guest=$(TEST_GUEST_NAME=battery-guest-$FLAVOUR TEST_GUEST_KERNEL=linux-image-$FLAVOUR TEST_GUEST_OVERLAY=$OVL \
        TEST_GUEST_CMDLINE=print-fatal-signals=1 "$HERE/../test-guest/build.sh")
echo "guest=$guest"
echo "overlay=$OVL"
