#!/bin/sh
# End to end with the real firmware: SeaBIOS + SeaVGABIOS on chr-vmm's std-vga, read back over
# VNC by Debian/PyPI clients (vncdotool, Pillow) and checked without trusting our renderer:
#  1. a disk that does not boot: SeaBIOS's text screen is read cell by cell against the font
#     in the VGA BIOS image (read-screen.py) and must say "No bootable device";
#  2. vga-modes.asm: mode 13h colour bars (checked against the BIOS's default palette), then a
#     key typed through VNC reaches INT 16h, and VBE mode 0x101 (640x480x8) arrives as a
#     DesktopSize change with the key's code painted in bank 0.
# usage: check-bios.sh CHR_VMM_BINARY        (ACCEL=kvm|interp, PORT=5959)
# Needs nasm, vncdo (pip install vncdotool), python3 with Pillow.
set -eu
chr_vmm=${1:?usage: check-bios.sh CHR_VMM_BINARY}
accel=${ACCEL:-kvm}
port=${PORT:-5959}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

for tool in nasm vncdo python3; do
    command -v $tool >/dev/null || { echo "skipped: $tool is not installed"; exit 0; }
done

boot() {
    "$chr_vmm" run --accel "$accel" --serial none --vnc "127.0.0.1:$port" "$1" >"$dir/run.log" 2>&1 &
    pid=$!
    sleep "${BOOT_WAIT:-8}"
}
stop() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=; }

truncate -s 1M "$dir/blank.img"
boot "$dir/blank.img"
vncdo -s "127.0.0.1::$port" capture "$dir/bios.png"
stop
python3 "$here/read-screen.py" "$dir/bios.png" >"$dir/bios.txt"
cat "$dir/bios.txt"
grep -q "^SeaBIOS (version" "$dir/bios.txt"
grep -q "No bootable device" "$dir/bios.txt"

nasm -f bin -o "$dir/mbr.bin" "$here/vga-modes.asm"
truncate -s 1M "$dir/modes.img"
dd if="$dir/mbr.bin" of="$dir/modes.img" conv=notrunc 2>/dev/null
boot "$dir/modes.img"
vncdo -s "127.0.0.1::$port" capture "$dir/m13.png" key a
sleep 2
vncdo -s "127.0.0.1::$port" capture "$dir/vbe.png"
stop
python3 - "$dir/m13.png" "$dir/vbe.png" <<'PY'
import sys
from PIL import Image
m13 = Image.open(sys.argv[1]).convert("RGB")
assert m13.size == (320, 200), m13.size
# Bars of 20 pixels: colour = x / 20 in the default palette (0 black, 1 blue, 4 red, 15 white).
for x, want in ((10, (0, 0, 0)), (30, (0, 0, 170)), (90, (170, 0, 0)), (310, (255, 255, 255))):
    assert m13.getpixel((x, 100)) == want, (x, m13.getpixel((x, 100)))
vbe = Image.open(sys.argv[2]).convert("RGB")
assert vbe.size == (640, 480), vbe.size
# Bank 0 (64 KiB = 102.4 lines) holds 'a' (0x61); below it the mode set cleared VRAM.
assert vbe.getpixel((5, 50)) == vbe.getpixel((600, 100)) != (0, 0, 0), vbe.getpixel((5, 50))
assert vbe.getpixel((5, 200)) == (0, 0, 0)
print("mode 13h and VBE 0x101: ok")
PY
echo "check-bios: ok"
