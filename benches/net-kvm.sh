#!/usr/bin/env bash
# Network benchmark on KVM: chr-vmm beside qemu-system-x86_64 -accel kvm (-netdev user/tap with
# virtio-net-pci) on the same test-guest disk in the same run, via `chr-vmm bench net`: TCP
# throughput host->guest and guest->host through a user-mode port forward and through a tap, and
# the latency of small requests.
#
# This workplace's own /dev/kvm (kvm-pvm) cannot run Linux, so by default the benchmark runs
# inside scripts/nested-kvm.sh (an L1 Linux under QEMU TCG whose nested SVM gives a real
# /dev/kvm); absolute figures there are far below bare metal, but both VMMs pay the same. L1
# loads its kernel's tun module (-M tun) so that the tap rows run too. On a host with real KVM,
# pass --host to run it directly (tap rows only as root with /dev/net/tun).
#
# Usage: benches/net-kvm.sh [--host] [--backend user,tap] [MIB [REPEAT [REQUESTS]]]
# (defaults: both backends, 32 MiB, 3, 200)
# The whole L1 console goes to ${NET_KVM_LOG:-/tmp/chr-vmm-net-kvm.log}.
set -euo pipefail
cd "$(dirname "$0")/.."
host=0; [ "${1:-}" = "--host" ] && { host=1; shift; }
backend=(); [ "${1:-}" = "--backend" ] && { backend=(--backend "$2"); shift 2; }
mib=${1:-32} repeat=${2:-3} requests=${3:-200}
scripts/install-deps.sh
cargo build --release -p chr-vmm >&2
guest=$(images/test-guest/build.sh)
qemu=$(command -v qemu-system-x86_64)
if [ $host = 1 ]; then
  exec "${CARGO_TARGET_DIR:-target}"/release/chr-vmm bench net "${backend[@]}" --mib "$mib" --repeat "$repeat" --requests "$requests" \
    --qemu "$qemu" "$guest/guest.img"
fi
payload=$(mktemp -d /tmp/chr-vmm-bench.XXXXXX); trap 'rm -rf "$payload"' EXIT
cp "${CARGO_TARGET_DIR:-target}"/release/chr-vmm "$guest/guest.img" /usr/share/seabios/bios-256k.bin "$payload/"
mkdir -p "$payload/qemu-data"
cp /usr/share/seabios/bios-256k.bin /usr/share/qemu/kvmvapic.bin /usr/share/qemu/linuxboot_dma.bin "$payload/qemu-data/"
cat > "$payload/run" <<RUN
#!/bin/sh
mkdir -p /var/tmp
ip link set lo up
/payload/chr-vmm bench net ${backend[*]} --mib $mib --repeat $repeat --requests $requests --firmware /payload/bios-256k.bin \
  --qemu $qemu --qemu-data /payload/qemu-data /payload/guest.img
RUN
chmod +x "$payload/run"
log=${NET_KVM_LOG:-/tmp/chr-vmm-net-kvm.log}
scripts/nested-kvm.sh -t 2400 -M tun -L "$payload/chr-vmm" -L "$qemu" "$payload" | tee "$log" \
  | sed -n -e '/^bench net:/p' -e '/^chr-vmm .* vs /,/^NESTED-KVM: status/p'
