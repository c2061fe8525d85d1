#!/usr/bin/env bash
# Builds the chr-vmm container image from this checkout: chr-vmm (release build, or $CHR_VMM_BIN),
# the shared libraries it links (as ldd lists them), SeaBIOS's bios-256k.bin and
# vgabios-stdvga.bin, on an empty base. Works on x86_64 and arm64 hosts alike (the image is the
# host's architecture). Needs docker (or $DOCKER) and the seabios package.
#
# Usage: images/container/build.sh [TAG]      (default chr-vmm:latest); prints the tag.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-chr-vmm:latest}
docker=${DOCKER:-docker}
command -v "$docker" >/dev/null || { echo "build.sh: no $docker command: install docker (scripts/install-deps.sh installs docker.io) or set DOCKER" >&2; exit 1; }
bin=${CHR_VMM_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release -p chr-vmm >&2
  bin=${CARGO_TARGET_DIR:-target}/release/chr-vmm
fi
for f in /usr/share/seabios/bios-256k.bin /usr/share/seabios/vgabios-stdvga.bin; do
  [ -f "$f" ] || { echo "build.sh: $f is missing: install the seabios package (scripts/install-deps.sh)" >&2; exit 1; }
done
ctx=$(mktemp -d /tmp/chr-vmm-image.XXXXXX); trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/bin" "$root/data" "$root/image" "$root/tmp"
chmod 1777 "$root/tmp"
# Debug information is for developers; the image carries the bare program.
strip --strip-debug -o "$root/usr/bin/chr-vmm" "$bin" 2>/dev/null || cp "$bin" "$root/usr/bin/chr-vmm"
chmod 755 "$root/usr/bin/chr-vmm"
# The libraries and the program interpreter, at the paths the binary names them by.
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
mkdir -p "$root/usr/share/seabios"
cp /usr/share/seabios/bios-256k.bin /usr/share/seabios/vgabios-stdvga.bin "$root/usr/share/seabios/"
cp images/container/Dockerfile "$ctx/"
"$docker" build -q -t "$tag" "$ctx" >&2
echo "$tag"
