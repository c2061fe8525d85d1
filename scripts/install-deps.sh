#!/usr/bin/env bash
# Installs the Debian packages chr-vmm needs to build, to boot its test guest and to run its
# tests. Idempotent; needs root (or sudo). Progress goes to stderr, apt's chatter to a log.
set -euo pipefail
PKGS=(
  seabios                 # bios-256k.bin: the firmware chr-vmm boots
  qemu-utils              # qemu-img: the reference for disk formats
  qemu-system-x86         # QEMU: the nested-KVM harness and the benchmark baseline
  syslinux syslinux-common mtools fdisk dosfstools busybox-static cpio  # the test guest
  gcc libc6-dev xz-utils  # the battery guest's static C programs and its xz data
  nasm                    # the MBR test program
  acpica-tools            # iasl: checks our DSDT
  pkg-config libslirp-dev libglib2.0-dev  # user-mode networking
  vncsnapshot             # the VNC tests' screenshot client
  tesseract-ocr tesseract-ocr-eng  # reads the guest's screen back as text
  python3 python3-pil python3-venv  # pixel checks; the venv that holds vncdotool
  docker.io               # the container image's build and test
)
# the battery guest's i386 program (gcc -m32); x86-64 hosts only
[ "$(uname -m)" != x86_64 ] || PKGS+=(gcc-multilib)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  log=${TMPDIR:-/tmp}/chr-vmm-apt.log
  echo "[install-deps] installing: ${missing[*]} (log: $log)" >&2
  if ! $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$log" 2>&1; then
    $SUDO apt-get update -qq >>"$log" 2>&1
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >>"$log" 2>&1 \
      || { echo "[install-deps] apt-get install failed; see $log" >&2; exit 1; }
  fi
fi
# vncdotool (the VNC tests' typing client) is on PyPI only. Debian's pip refuses to install into
# the system Python, so it goes into a venv of its own; tests look for vncdo there and on PATH.
VENV=${CHR_VMM_CACHE:-/var/tmp/chr-vmm}/venv
vncdo_works() { "$1" --version >/dev/null 2>&1; }
if ! vncdo_works vncdo && ! vncdo_works "$VENV/bin/vncdo"; then
  log=${TMPDIR:-/tmp}/chr-vmm-pip.log
  echo "[install-deps] installing vncdotool into $VENV (log: $log)" >&2
  { mkdir -p "$(dirname "$VENV")" && /usr/bin/python3 -m venv "$VENV" \
      && "$VENV/bin/pip" install -q --disable-pip-version-check vncdotool; } >"$log" 2>&1 \
    || { echo "[install-deps] pip install vncdotool failed; see $log" >&2; exit 1; }
fi
# Make the venv's vncdo visible to every test that looks on PATH.
if ! vncdo_works vncdo && vncdo_works "$VENV/bin/vncdo" && [ -w /usr/local/bin ]; then
  ln -sf "$VENV/bin/vncdo" /usr/local/bin/vncdo
fi
# The battery guest boots both Debian kernels; fetch their .debs now (images/test-guest/build.sh
# keeps them in $CHR_VMM_CACHE/debian-kernel), so that the tests need no network later.
if [ "$(uname -m)" = x86_64 ]; then
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  for flavour in amd64 cloud-amd64; do
    "$here/images/battery-guest/build.sh" "$flavour" >/dev/null \
      || echo "[install-deps] the battery guest ($flavour) could not be built; its test will skip" >&2
  done
fi
command -v cargo >/dev/null || { echo "[install-deps] cargo not found: install Rust (rustup or Debian's cargo)" >&2; exit 1; }
