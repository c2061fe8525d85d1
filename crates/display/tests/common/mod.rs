//! Shared by the integration tests: an adapter on its own buses, programmed like the VGA BIOS.

#![allow(dead_code, clippy::unwrap_used)]

use display::{StdVga, VBE_PORT_BASE, VGA_PORT_BASE, VGA_WINDOW_BASE};
use machine::bus::Bus;

pub const GLYPH: [u8; 16] =
    [0, 0, 0xff, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0x81, 0xff, 0, 0];

/// An adapter on its own buses, with helpers that program it the way the VGA BIOS does.
pub struct Rig {
    pub vga: StdVga,
    pub pio: Bus,
    pub mmio: Bus,
}

impl Rig {
    pub fn new() -> Self {
        let vga = StdVga::new();
        let (pio, mmio) = (Bus::new(), Bus::new());
        pio.insert(VGA_PORT_BASE, display::VGA_PORT_LEN, vga.vga_ports()).unwrap();
        pio.insert(VBE_PORT_BASE, display::VBE_PORT_LEN, vga.vbe_ports()).unwrap();
        mmio.insert(VGA_WINDOW_BASE, display::VGA_WINDOW_LEN, vga.vga_window()).unwrap();
        Self { vga, pio, mmio }
    }

    pub fn out(&self, port: u64, idx: u8, val: u8) {
        self.pio.write(port, &[idx, val]);
    }

    pub fn attr(&self, idx: u8, val: u8) {
        let mut b = [0u8];
        self.pio.read(0x3da, &mut b);
        self.pio.write(0x3c0, &[idx]);
        self.pio.write(0x3c0, &[val]);
    }

    /// 80x25 text, 9x16 cells, cursor off, no blink; glyph 'A' in font 0; DAC 1 blue, 15 white.
    pub fn text_mode(&self) {
        self.pio.write(0x3c2, &[0x67]);
        for (i, v) in [(1u8, 0x00u8), (3, 0x00)] {
            self.out(0x3c4, i, v);
        }
        for (i, v) in
            [(1u8, 79u8), (7, 0x1f), (9, 0x4f), (0x0a, 0x20), (0x0c, 0), (0x0d, 0), (0x12, 0x8f), (0x13, 40)]
        {
            self.out(0x3d4, i, v);
        }
        for i in 0..16 {
            self.attr(i, i);
        }
        self.attr(0x10, 0x04);
        self.attr(0x14, 0x00);
        self.pio.write(0x3c0, &[0x20]);
        for (index, rgb) in [(1u8, [0u8, 0, 42]), (15, [63, 63, 63])] {
            self.pio.write(0x3c8, &[index]);
            for c in rgb {
                self.pio.write(0x3c9, &[c]);
            }
        }
        // Load the glyph into plane 2 as the BIOS does: planar, sequential, map A0000.
        self.out(0x3c4, 2, 0x04);
        self.out(0x3c4, 4, 0x06);
        self.out(0x3ce, 5, 0x00);
        self.out(0x3ce, 6, 0x04);
        self.out(0x3ce, 8, 0xff);
        for (line, &bits) in GLYPH.iter().enumerate() {
            self.mmio.write(VGA_WINDOW_BASE + u64::from(b'A') * 32 + line as u64, &[bits]);
        }
        // Back to odd/even text at B8000.
        self.out(0x3c4, 2, 0x03);
        self.out(0x3c4, 4, 0x02);
        self.out(0x3ce, 4, 0x00);
        self.out(0x3ce, 5, 0x10);
        self.out(0x3ce, 6, 0x0e);
    }

    pub fn put_char(&self, row: u64, col: u64, ch: u8, attr: u8) {
        self.mmio.write(0xb8000 + (row * 80 + col) * 2, &[ch, attr]);
    }

    pub fn vbe(&self, index: u16, value: u16) {
        self.pio.write(0x1ce, &index.to_le_bytes());
        self.pio.write(0x1cf, &value.to_le_bytes());
    }
}

/// Whether the server closed `s`: end of file, or an error other than the read timeout running
/// out (reads until one of those).
#[allow(dead_code)] // not every test file that includes this module uses it
pub fn is_closed(s: &mut std::net::TcpStream) -> bool {
    use std::io::{ErrorKind, Read};
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() != ErrorKind::WouldBlock && e.kind() != ErrorKind::TimedOut,
        }
    }
}
