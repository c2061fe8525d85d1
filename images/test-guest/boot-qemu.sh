#!/bin/bash
# boot-qemu.sh - boot the test guest in QEMU: the reference that chr-vmm is compared against.
#
# Usage: images/test-guest/boot-qemu.sh [FORMAT] [extra qemu args...]
#   FORMAT: vmdk (default) | img | stream (guest-stream.vmdk) | vdi | vhdx | qcow2
#           | poweroff (guest-poweroff.vmdk: the guest powers off after "chr-test-guest: ready")
#           | kernel (direct kernel boot of vmlinuz + initrd.gz from the build, disk as vmdk;
#             APPEND adds words to the command line, e.g. APPEND=chr_test=poweroff)
#           | a path to a disk image (its format is guessed from the extension)
#   Builds the guest first if needed (build.sh). The serial console is on stdio (-nographic; the
#   QEMU monitor is multiplexed there too, Ctrl-A c) unless the extra args redirect it.
# Environment:
#   ACCEL=tcg|kvm (default tcg)   MEM=256   SMP=1   DISK_IF=virtio (or ide, ...)
#   HTTP_PORT=8080 TELNET_PORT=2323: host ports forwarded (127.0.0.1) to guest 80 and 23
#   NETDEV="..." replaces the -netdev spec (default user,... with the forwards; NETDEV=none: no NIC)
#   The NIC is virtio-net-pci without an option ROM (no iPXE: the guest never boots from the network
#   and chr-vmm has no NIC ROM either, so the two boot the same way).
#   SNAPSHOT=1 (default): guest writes go to a temporary overlay; SNAPSHOT=0 writes the cache image
#   QEMU=qemu-system-x86_64   BIOS=/usr/share/seabios/bios-256k.bin
# QEMU's exit status is ours.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FORMAT=${1:-vmdk}; [ $# -gt 0 ] && shift
apt_install() {
  local log=${CHR_VMM_CACHE:-/var/tmp/chr-vmm}/test-guest-apt.log; mkdir -p "$(dirname "$log")"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$log" 2>&1 && return 0
  apt-get update -qq >>"$log" 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$log" 2>&1 \
    || { echo "boot-qemu: cannot install $* (see $log)" >&2; exit 2; }
}
QEMU=${QEMU:-qemu-system-x86_64}
command -v "$QEMU" >/dev/null 2>&1 || apt_install qemu-system-x86
BIOS=${BIOS:-/usr/share/seabios/bios-256k.bin}
[ -f "$BIOS" ] || apt_install seabios

DIR=$("$HERE/build.sh")
KERNEL=()
case $FORMAT in
  vmdk) DISK=$DIR/guest.vmdk ;;
  img|raw) DISK=$DIR/guest.img ;;
  stream|stream.vmdk|guest-stream.vmdk) DISK=$DIR/guest-stream.vmdk ;;
  vdi|vhdx|qcow2) DISK=$DIR/guest.$FORMAT ;;
  poweroff) DISK=$DIR/guest-poweroff.vmdk ;;
  kernel) DISK=$DIR/guest.vmdk
          KERNEL=(-kernel "$DIR/vmlinuz" -initrd "$DIR/initrd.gz" -append "$(cat "$DIR/cmdline") ${APPEND:-}") ;;
  *) [ -f "$FORMAT" ] || { echo "boot-qemu: unknown format or missing file: $FORMAT" >&2; exit 2; }
     DISK=$FORMAT ;;
esac
case $DISK in
  *.vmdk) FMT=vmdk ;; *.vdi) FMT=vdi ;; *.vhdx) FMT=vhdx ;; *.qcow2) FMT=qcow2 ;; *) FMT=raw ;;
esac
SNAP=on; [ "${SNAPSHOT:-1}" = 0 ] && SNAP=off
NETDEV=${NETDEV:-user,hostfwd=tcp:127.0.0.1:${HTTP_PORT:-8080}-:80,hostfwd=tcp:127.0.0.1:${TELNET_PORT:-2323}-:23}
NET=(-nic none)
[ "$NETDEV" = none ] || NET=(-netdev "$NETDEV,id=net0" -device virtio-net-pci,netdev=net0,romfile=)

exec "$QEMU" -machine pc -accel "${ACCEL:-tcg}" -m "${MEM:-256}" -smp "${SMP:-1}" \
  -bios "$BIOS" -nographic \
  -drive "file=$DISK,format=$FMT,if=${DISK_IF:-virtio},snapshot=$SNAP" \
  "${NET[@]}" "${KERNEL[@]}" "$@"
