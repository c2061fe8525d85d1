#!/bin/bash
# make-disk.sh - build a raw disk image that boots the mbr-checksum program, and print the line
# the program must print for it.
#
# Usage: firmware/mbr-checksum/make-disk.sh OUT_IMAGE SECTORS
#   OUT_IMAGE  raw disk image to write (overwritten)
#   SECTORS    N, the number of data sectors after the MBR (0 <= N < 2^32, practical: a few 10k)
# The image is: LBA 0 = mbr-checksum.asm assembled by nasm, with N in its dword at offset 0x1B0;
# LBA 1..N = deterministic pseudo-random data; zero padding up to a whole MiB.
# Data: the 32-byte block k (k = 0, 1, ... from the start of LBA 1) is
#   SHA-256 of the ASCII text "mbr-checksum block <k in decimal>".
# stdout: exactly the expected result line, e.g. "MBR-CHECKSUM sectors=100 sum=1a2b3c4d"
# (32-bit FNV-1a over the bytes of LBA 1..N; see mbr-checksum.asm). Progress/errors on stderr.
# Needs nasm and python3 (installed with apt-get when missing).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -eq 2 ] || { echo "usage: $0 OUT_IMAGE SECTORS" >&2; exit 2; }
OUT=$1 N=$2
[[ $N =~ ^[0-9]+$ ]] && [ "$N" -lt 4294967296 ] || { echo "make-disk: SECTORS must be 0..2^32-1" >&2; exit 2; }

APTLOG=${TMPDIR:-/tmp}/mbr-checksum-apt.log
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$APTLOG" 2>&1 && return 0
  apt-get update -qq >>"$APTLOG" 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >>"$APTLOG" 2>&1 \
    || { echo "make-disk: cannot install $* (see $APTLOG)" >&2; exit 2; }
}
command -v nasm >/dev/null 2>&1 || apt_install nasm
command -v python3 >/dev/null 2>&1 || apt_install python3

BIN=$(mktemp "${TMPDIR:-/tmp}/mbr-checksum.XXXXXX.bin")
trap 'rm -f "$BIN"' EXIT
nasm -f bin -o "$BIN" "$HERE/mbr-checksum.asm"
[ "$(stat -c %s "$BIN")" = 512 ] || { echo "make-disk: the MBR program is not 512 bytes" >&2; exit 1; }

python3 - "$BIN" "$OUT" "$N" <<'EOF'
import hashlib, struct, sys
bin_path, out_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
mbr = bytearray(open(bin_path, "rb").read())
mbr[0x1B0:0x1B4] = struct.pack("<I", n)
MIB = 1 << 20
total = -(-(512 * (1 + n)) // MIB) * MIB
h = 0x811C9DC5
with open(out_path, "wb") as f:
    f.write(mbr)
    k = 0
    left = 512 * n
    while left:
        chunk = bytearray()
        while len(chunk) < 65536 and left - len(chunk) > 0:
            chunk += hashlib.sha256(b"mbr-checksum block %d" % k).digest()
            k += 1
        chunk = bytes(chunk[:left])
        for b in chunk:
            h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
        f.write(chunk)
        left -= len(chunk)
    f.truncate(total)
print("MBR-CHECKSUM sectors=%d sum=%08x" % (n, h))
EOF
