#!/usr/bin/env bash
# One command on a fresh machine: install what is needed, build chr-vmm and the test guest,
# and boot the guest with `chr-vmm run` (serial console on this terminal; Ctrl-A x quits).
# Extra arguments go to `chr-vmm run`, e.g. `scripts/demo.sh --cpus 2`.
#
# Where this host has no usable /dev/kvm, chr-vmm runs the guest on its own x86 interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -p chr-vmm >&2
guest=$(images/test-guest/build.sh)
vmm="${CARGO_TARGET_DIR:-target}/release/chr-vmm"
# `--accel auto` picks KVM where it can run the guest and the x86 interpreter elsewhere; the
# interpreter boots the same guest, only slower. --snapshot keeps the cached test guest pristine.
if [ "$($vmm accel 2>/dev/null)" != kvm ]; then
  echo "demo: no usable KVM on this host, so the guest runs on chr-vmm's x86 interpreter:" \
       "Linux reaches its prompt in about 15 s on a desktop-class x86 host (README, Figures)" >&2
fi
exec $vmm run --snapshot "$@" "$guest/guest.img"
