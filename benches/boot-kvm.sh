#!/usr/bin/env bash
# Boot-time benchmark on KVM: chr-vmm beside qemu-system-x86_64 -accel kvm, booting the same
# test-guest disk in the same run, N times each, via `chr-vmm bench boot`.
#
# This workplace's own /dev/kvm (kvm-pvm) cannot run Linux, so by default the benchmark runs
# inside scripts/nested-kvm.sh (an L1 Linux under QEMU TCG whose nested SVM
# gives a real /dev/kvm); absolute times there are ~3-4x slower than bare metal, but both VMMs
# pay the same. On a host with real KVM, pass --host to run it directly.
#
# Usage: benches/boot-kvm.sh [--host] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
host=0; [ "${1:-}" = "--host" ] && { host=1; shift; }
runs=${1:-3}
scripts/install-deps.sh
cargo build --release -p chr-vmm >&2
guest=$(images/test-guest/build.sh)
if [ $host = 1 ]; then
  exec "${CARGO_TARGET_DIR:-target}"/release/chr-vmm bench boot --runs "$runs" --qemu "$(command -v qemu-system-x86_64)" "$guest/guest.img"
fi
payload=$(mktemp -d /tmp/chr-vmm-bench.XXXXXX); trap 'rm -rf "$payload"' EXIT
cp "${CARGO_TARGET_DIR:-target}"/release/chr-vmm "$guest/guest.img" "$payload/"
mkdir -p "$payload/qemu-data"
cp /usr/share/seabios/bios-256k.bin "$payload/"
cp /usr/share/seabios/bios-256k.bin /usr/share/qemu/kvmvapic.bin /usr/share/qemu/linuxboot_dma.bin "$payload/qemu-data/"
cat > "$payload/run" <<RUN
#!/bin/sh
mkdir -p /var/tmp
/payload/chr-vmm bench boot --runs $runs --firmware /payload/bios-256k.bin \
  --qemu $(command -v qemu-system-x86_64) --qemu-data /payload/qemu-data /payload/guest.img
RUN
chmod +x "$payload/run"
scripts/nested-kvm.sh -t 900 -L "$payload/chr-vmm" -L "$(command -v qemu-system-x86_64)" "$payload" \
  | sed -n '/^vmm /,/^NESTED-KVM: status/p'
