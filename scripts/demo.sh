#!/usr/bin/env bash
# One command on a fresh machine: install what is needed, build chr-vmm and the test guest,
# and boot the guest with `chr-vmm run` (serial console on this terminal; Ctrl-A x quits).
# Extra arguments go to `chr-vmm run`, e.g. `scripts/demo.sh --accel kvm --cpus 2`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build --release -p chr-vmm >&2
guest=$(images/test-guest/build.sh)
exec target/release/chr-vmm run "$@" "$guest/guest.vmdk"
