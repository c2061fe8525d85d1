#!/usr/bin/env bash
# One command on a fresh machine: install what is needed, build chr-vmm and the test guest,
# and boot the guest with `chr-vmm run` (serial console on this terminal; Ctrl-A x quits).
# Extra arguments go to `chr-vmm run`, e.g. `scripts/demo.sh --cpus 2`.
#
# Where this host has no usable /dev/kvm, the demo boots the guest inside ../shared/tools/nested-kvm (a Linux with a real
# nested KVM under QEMU) instead: non-interactive, the guest powers itself off after its prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -p chr-vmm >&2
guest=$(images/test-guest/build.sh)
vmm=target/release/chr-vmm
# The interpreter runs SeaBIOS and SYSLINUX but does not boot Linux to the prompt yet (issue 4),
# so only KVM is used directly for now.
if [ "$($vmm accel 2>/dev/null)" = kvm ]; then
  exec $vmm run "$@" "$guest/guest.img"
fi
nested=../shared/tools/nested-kvm/run-nested.sh
[ -f "$nested" ] || { echo "demo: no usable accelerator here and no $nested" >&2; exit 1; }
echo "demo: no accelerator usable on this host; booting inside the nested-KVM harness" >&2
payload=$(mktemp -d /tmp/chr-vmm-demo.XXXXXX); trap 'rm -rf "$payload"' EXIT
cp $vmm /usr/share/seabios/bios-256k.bin "$guest/guest-poweroff.img" "$payload/"
printf '#!/bin/sh\n/payload/chr-vmm run --accel kvm --firmware /payload/bios-256k.bin %s /payload/guest-poweroff.img </dev/null\necho "chr-vmm exit status: $?"\n' "$*" > "$payload/run"
chmod +x "$payload/run"
bash "$nested" -t 300 -L "$payload/chr-vmm" "$payload" | sed -n '/L1-KVM-OK/,/chr-vmm exit status/p'
