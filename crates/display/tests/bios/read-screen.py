#!/usr/bin/env python3
"""Reads the text off a VGA text-mode screenshot (9x16 or 8x16 cells) by matching each cell
against the 8x16 font inside a VGA BIOS image: an independent check of what a VNC client
shows, without OCR.

usage: read-screen.py SCREENSHOT.png [VGABIOS.bin]   (prints the screen's text)
"""
import sys

from PIL import Image

# The 8x16 glyph of 'A' in the IBM VGA font, used to locate the font table in the ROM.
GLYPH_A = bytes([0x00, 0x00, 0x10, 0x38, 0x6C, 0xC6, 0xC6, 0xFE, 0xC6, 0xC6, 0xC6, 0xC6, 0x00, 0x00, 0x00, 0x00])


def load_font(rom_path):
    rom = open(rom_path, "rb").read()
    at = rom.find(GLYPH_A)
    if at < 0x41 * 16:
        sys.exit(f"no 8x16 font found in {rom_path}")
    base = at - 0x41 * 16
    return {rom[base + c * 16 : base + c * 16 + 16]: c for c in range(256)}


def read_screen(png, rom):
    font = load_font(rom)
    im = Image.open(png).convert("RGB")
    w, h = im.size
    cell_w = 9 if w % 9 == 0 and w // 9 in (40, 80, 132) else 8
    px = im.load()
    lines = []
    for row in range(h // 16):
        text = []
        for col in range(w // cell_w):
            x0, y0 = col * cell_w, row * 16
            # The background is the colour of the cell's top-left pixel row majority.
            counts = {}
            for y in range(16):
                for x in range(8):
                    p = px[x0 + x, y0 + y]
                    counts[p] = counts.get(p, 0) + 1
            bg = max(counts, key=counts.get)
            glyph = bytes(
                sum(0x80 >> x for x in range(8) if px[x0 + x, y0 + y] != bg) for y in range(16)
            )
            c = font.get(glyph)
            text.append(chr(c) if c is not None and 0x20 <= c < 0x7F else ("?" if c is None else " "))
        lines.append("".join(text).rstrip())
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rom = sys.argv[2] if len(sys.argv) > 2 else "/usr/share/seabios/vgabios-stdvga.bin"
    print(read_screen(sys.argv[1], rom))
