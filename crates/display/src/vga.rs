//! The VGA core: legacy registers, the four planes behind the 0xA0000 window, and the Bochs VBE
//! (DISPI) interface, all over one VRAM that BAR0 exposes linearly.
//!
//! VRAM layout: plane `p` at plane offset `o` lives at `vram[o * 4 + p]`, so chain-4 (mode 13h)
//! and the VBE linear framebuffer see the same bytes as plain linear memory.

/// VRAM size: 16 MiB, like QEMU's default `vgamem_mb`.
pub const VRAM_SIZE: usize = 16 << 20;

/// Bochs DISPI register indices.
pub mod dispi {
    /// Interface ID (0xB0C0-0xB0C5).
    pub const ID: usize = 0;
    /// Horizontal resolution.
    pub const XRES: usize = 1;
    /// Vertical resolution.
    pub const YRES: usize = 2;
    /// Bits per pixel.
    pub const BPP: usize = 3;
    /// Enable flags.
    pub const ENABLE: usize = 4;
    /// 64 KiB bank in the 0xA0000 window.
    pub const BANK: usize = 5;
    /// Virtual (line) width in pixels.
    pub const VIRT_WIDTH: usize = 6;
    /// Virtual height in lines.
    pub const VIRT_HEIGHT: usize = 7;
    /// Horizontal display offset.
    pub const X_OFFSET: usize = 8;
    /// Vertical display offset.
    pub const Y_OFFSET: usize = 9;
    /// VRAM size in 64 KiB units (read-only).
    pub const VIDEO_MEMORY_64K: usize = 10;
    /// Number of registers.
    pub const COUNT: usize = 11;

    /// ENABLE: display on.
    pub const ENABLED: u16 = 0x01;
    /// ENABLE: XRES/YRES/BPP read back their maximums.
    pub const GETCAPS: u16 = 0x02;
    /// ENABLE: 8-bit DAC.
    pub const DAC_8BIT: u16 = 0x20;
    /// ENABLE: linear framebuffer.
    pub const LFB_ENABLED: u16 = 0x40;
    /// ENABLE: keep VRAM contents on enable.
    pub const NOCLEARMEM: u16 = 0x80;

    /// Highest interface ID we speak.
    pub const ID_LATEST: u16 = 0xb0c5;
    /// Largest horizontal resolution.
    pub const MAX_XRES: u16 = 2560;
    /// Largest vertical resolution.
    pub const MAX_YRES: u16 = 1600;
    /// Largest depth.
    pub const MAX_BPP: u16 = 32;
}

/// Register state and VRAM of the adapter.
pub struct VgaCore {
    pub(crate) vram: Vec<u8>,
    pub(crate) misc: u8,
    pub(crate) seq_index: u8,
    pub(crate) seq: [u8; 8],
    pub(crate) gc_index: u8,
    pub(crate) gc: [u8; 16],
    pub(crate) crtc_index: u8,
    pub(crate) crtc: [u8; 32],
    pub(crate) attr_index: u8,
    pub(crate) attr_flip: bool,
    pub(crate) attr: [u8; 32],
    pub(crate) dac: [u8; 768],
    dac_write_index: u8,
    dac_read_index: u8,
    dac_sub: u8,
    dac_state: u8,
    dac_latch: [u8; 3],
    pub(crate) dac_mask: u8,
    feature: u8,
    retrace: u8,
    latch: [u8; 4],
    pub(crate) vbe_index: u16,
    pub(crate) vbe: [u16; dispi::COUNT],
    /// Bumped on every change that can alter the picture; the renderer skips idle frames.
    pub(crate) generation: u64,
}

impl Default for VgaCore {
    fn default() -> Self {
        Self::new()
    }
}

impl VgaCore {
    /// A powered-on adapter with zeroed VRAM.
    pub fn new() -> Self {
        let mut vbe = [0u16; dispi::COUNT];
        vbe[dispi::ID] = dispi::ID_LATEST;
        vbe[dispi::BPP] = 8;
        vbe[dispi::VIDEO_MEMORY_64K] = (VRAM_SIZE >> 16) as u16;
        Self {
            vram: vec![0; VRAM_SIZE],
            misc: 0x01,
            seq_index: 0,
            seq: [0; 8],
            gc_index: 0,
            gc: [0; 16],
            crtc_index: 0,
            crtc: [0; 32],
            attr_index: 0,
            attr_flip: false,
            attr: [0; 32],
            dac: [0; 768],
            dac_write_index: 0,
            dac_read_index: 0,
            dac_sub: 0,
            dac_state: 0,
            dac_latch: [0; 3],
            dac_mask: 0xff,
            feature: 0,
            retrace: 0,
            latch: [0; 4],
            vbe_index: 0,
            vbe,
            generation: 0,
        }
    }

    fn touch(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// Whether the VBE (DISPI) display is on.
    pub fn vbe_enabled(&self) -> bool {
        self.vbe[dispi::ENABLE] & dispi::ENABLED != 0
    }

    // ---- legacy I/O ports (absolute port numbers) ----

    fn crtc_port_ok(&self, port: u16) -> bool {
        // CRTC and input status 1 answer at 0x3Dx in colour mode, 0x3Bx in mono mode.
        let colour = self.misc & 1 != 0;
        (port & 0xfff0 == 0x3d0) == colour
    }

    /// A byte read from a legacy VGA port (0x3B0-0x3DF).
    pub fn port_read(&mut self, port: u16) -> u8 {
        match port {
            0x3b4 | 0x3d4 if self.crtc_port_ok(port) => self.crtc_index,
            0x3b5 | 0x3d5 if self.crtc_port_ok(port) => {
                self.crtc.get(usize::from(self.crtc_index)).copied().unwrap_or(0xff)
            }
            0x3ba | 0x3da if self.crtc_port_ok(port) => {
                // Reading input status 1 resets the attribute flip-flop; the retrace and
                // display-enable bits toggle so that polling loops always finish.
                self.attr_flip = false;
                self.retrace ^= 0x09;
                self.retrace
            }
            0x3c0 => self.attr_index,
            0x3c1 => self.attr.get(usize::from(self.attr_index & 0x1f)).copied().unwrap_or(0),
            0x3c2 => 0,
            0x3c4 => self.seq_index,
            0x3c5 => self.seq.get(usize::from(self.seq_index)).copied().unwrap_or(0xff),
            0x3c6 => self.dac_mask,
            0x3c7 => self.dac_state,
            0x3c8 => self.dac_write_index,
            0x3c9 => {
                let v = self.dac[usize::from(self.dac_read_index) * 3 + usize::from(self.dac_sub)];
                self.dac_sub += 1;
                if self.dac_sub == 3 {
                    self.dac_sub = 0;
                    self.dac_read_index = self.dac_read_index.wrapping_add(1);
                }
                v
            }
            0x3ca => self.feature,
            0x3cc => self.misc,
            0x3ce => self.gc_index,
            0x3cf => self.gc.get(usize::from(self.gc_index)).copied().unwrap_or(0xff),
            _ => 0xff,
        }
    }

    /// A byte written to a legacy VGA port (0x3B0-0x3DF).
    pub fn port_write(&mut self, port: u16, v: u8) {
        self.touch();
        match port {
            0x3b4 | 0x3d4 if self.crtc_port_ok(port) => self.crtc_index = v & 0x1f,
            0x3b5 | 0x3d5 if self.crtc_port_ok(port) => {
                let i = usize::from(self.crtc_index);
                // CR11 bit 7 write-protects CR0-CR7, except the line-compare bit of CR7.
                if self.crtc[0x11] & 0x80 != 0 && i <= 7 {
                    if i == 7 {
                        self.crtc[7] = (self.crtc[7] & !0x10) | (v & 0x10);
                    }
                    return;
                }
                self.crtc[i] = v;
            }
            0x3ba | 0x3da if self.crtc_port_ok(port) => self.feature = v,
            0x3c0 => {
                if self.attr_flip {
                    let i = usize::from(self.attr_index & 0x1f);
                    if i < 0x15 {
                        self.attr[i] = v;
                    }
                } else {
                    self.attr_index = v & 0x3f;
                }
                self.attr_flip = !self.attr_flip;
            }
            0x3c2 => self.misc = v,
            0x3c4 => self.seq_index = v & 0x7,
            0x3c5 => self.seq[usize::from(self.seq_index & 7)] = v,
            0x3c6 => self.dac_mask = v,
            0x3c7 => {
                self.dac_read_index = v;
                self.dac_sub = 0;
                self.dac_state = 3;
            }
            0x3c8 => {
                self.dac_write_index = v;
                self.dac_sub = 0;
                self.dac_state = 0;
            }
            0x3c9 => {
                self.dac_latch[usize::from(self.dac_sub)] = v;
                self.dac_sub += 1;
                if self.dac_sub == 3 {
                    let at = usize::from(self.dac_write_index) * 3;
                    self.dac[at..at + 3].copy_from_slice(&self.dac_latch);
                    self.dac_sub = 0;
                    self.dac_write_index = self.dac_write_index.wrapping_add(1);
                }
            }
            0x3ce => self.gc_index = v & 0xf,
            0x3cf => self.gc[usize::from(self.gc_index & 0xf)] = v,
            _ => {}
        }
    }

    // ---- Bochs VBE (DISPI) ----

    /// Reads the DISPI register selected by the index port.
    pub fn vbe_read(&self) -> u16 {
        let i = usize::from(self.vbe_index);
        if self.vbe[dispi::ENABLE] & dispi::GETCAPS != 0 {
            match i {
                dispi::XRES => return dispi::MAX_XRES,
                dispi::YRES => return dispi::MAX_YRES,
                dispi::BPP => return dispi::MAX_BPP,
                _ => {}
            }
        }
        self.vbe.get(i).copied().unwrap_or(0)
    }

    /// Writes the DISPI register selected by the index port.
    pub fn vbe_write(&mut self, v: u16) {
        self.touch();
        let i = usize::from(self.vbe_index);
        match i {
            dispi::ID if (0xb0c0..=dispi::ID_LATEST).contains(&v) => self.vbe[i] = v,
            dispi::XRES | dispi::YRES | dispi::BPP => {
                let ok = match i {
                    dispi::XRES => v <= dispi::MAX_XRES && v.is_multiple_of(8),
                    dispi::YRES => v <= dispi::MAX_YRES,
                    _ => matches!(v, 4 | 8 | 15 | 16 | 24 | 32),
                };
                if ok && !self.vbe_enabled() {
                    self.vbe[i] = v;
                }
            }
            dispi::BANK => {
                let banks = (VRAM_SIZE >> 16) as u16;
                self.vbe[i] = v.min(banks - 1);
            }
            dispi::ENABLE => self.vbe_enable(v),
            dispi::VIRT_WIDTH => {
                let bpp = bytes_per_pixel(self.vbe[dispi::BPP]);
                if v >= self.vbe[dispi::XRES] && usize::from(v) * bpp <= VRAM_SIZE {
                    self.vbe[i] = v;
                    self.update_virt_height();
                }
            }
            dispi::X_OFFSET | dispi::Y_OFFSET => self.vbe[i] = v,
            _ => {}
        }
    }

    fn update_virt_height(&mut self) {
        let stride = usize::from(self.vbe[dispi::VIRT_WIDTH]) * bytes_per_pixel(self.vbe[dispi::BPP]);
        if let Some(lines) = VRAM_SIZE.checked_div(stride) {
            self.vbe[dispi::VIRT_HEIGHT] = lines.min(0xffff) as u16;
        }
    }

    fn vbe_enable(&mut self, v: u16) {
        let was = self.vbe_enabled();
        if v & dispi::ENABLED != 0 && !was {
            let (xres, yres) = (self.vbe[dispi::XRES], self.vbe[dispi::YRES]);
            let bpp = bytes_per_pixel(self.vbe[dispi::BPP]);
            if xres == 0 || yres == 0 || usize::from(xres) * usize::from(yres) * bpp > VRAM_SIZE {
                // An impossible mode stays off.
                self.vbe[dispi::ENABLE] = v & !dispi::ENABLED;
                return;
            }
            self.vbe[dispi::VIRT_WIDTH] = xres;
            self.vbe[dispi::X_OFFSET] = 0;
            self.vbe[dispi::Y_OFFSET] = 0;
            self.vbe[dispi::BANK] = 0;
            self.update_virt_height();
            if v & dispi::NOCLEARMEM == 0 {
                let used = usize::from(xres) * usize::from(yres) * bpp;
                self.vram[..used].fill(0);
            }
            // Graphics, chain-4 through the window, like a real BIOS mode set would leave it.
            self.gc[6] = (self.gc[6] & !0x0c) | 0x05;
            self.seq[4] |= 0x08;
        }
        self.vbe[dispi::ENABLE] = v;
    }

    // ---- the 0xA0000-0xBFFFF window ----

    /// Maps a window offset (from 0xA0000) to an offset inside the memory map the graphics
    /// controller selects, or None when the map does not decode that address.
    fn window_offset(&self, addr: u64) -> Option<usize> {
        let (base, len) = match (self.gc[6] >> 2) & 3 {
            0 => (0, 0x20000),
            1 => (0, 0x10000),
            2 => (0x10000, 0x8000),
            _ => (0x18000, 0x8000),
        };
        let a = usize::try_from(addr).ok()?.checked_sub(base)?;
        (a < len).then_some(a)
    }

    fn bank_offset(&self) -> usize {
        if self.vbe_enabled() {
            usize::from(self.vbe[dispi::BANK]) << 16
        } else {
            0
        }
    }

    /// A byte read through the legacy window.
    pub fn window_read(&mut self, addr: u64) -> u8 {
        let Some(a) = self.window_offset(addr) else {
            return 0xff;
        };
        if self.seq[4] & 0x08 != 0 {
            // Chain-4: linear bytes.
            return self.vram.get(self.bank_offset() + a).copied().unwrap_or(0xff);
        }
        if self.gc[5] & 0x10 != 0 {
            // Odd/even: the low address bit picks plane 0/1 (2/3 with the read map's bit 1).
            let plane = usize::from(self.gc[4] & 2) | (a & 1);
            return self.vram.get((a >> 1) * 4 + plane).copied().unwrap_or(0xff);
        }
        let Some(cell) = self.vram.get(a * 4..a * 4 + 4) else {
            return 0xff;
        };
        self.latch.copy_from_slice(cell);
        if self.gc[5] & 0x08 == 0 {
            // Read mode 0: the plane the read map selects.
            self.latch[usize::from(self.gc[4] & 3)]
        } else {
            // Read mode 1: colour compare over the planes that "colour don't care" keeps.
            let mut result = 0xffu8;
            for p in 0..4 {
                if self.gc[7] & (1 << p) != 0 {
                    let want = if self.gc[2] & (1 << p) != 0 { 0xff } else { 0 };
                    result &= !(self.latch[p] ^ want);
                }
            }
            result
        }
    }

    /// A byte written through the legacy window.
    pub fn window_write(&mut self, addr: u64, v: u8) {
        let Some(a) = self.window_offset(addr) else {
            return;
        };
        self.touch();
        let map_mask = self.seq[2] & 0xf;
        if self.seq[4] & 0x08 != 0 {
            let i = self.bank_offset() + a;
            if map_mask & (1 << (i & 3)) != 0 {
                if let Some(b) = self.vram.get_mut(i) {
                    *b = v;
                }
            }
            return;
        }
        if self.gc[5] & 0x10 != 0 {
            let plane = usize::from(self.gc[4] & 2) | (a & 1);
            if map_mask & (1 << plane) != 0 {
                if let Some(b) = self.vram.get_mut((a >> 1) * 4 + plane) {
                    *b = v;
                }
            }
            return;
        }
        let planes = self.planar_write_value(v);
        let Some(cell) = self.vram.get_mut(a * 4..a * 4 + 4) else {
            return;
        };
        for (p, b) in cell.iter_mut().enumerate() {
            if map_mask & (1 << p) != 0 {
                *b = planes[p];
            }
        }
    }

    /// The four plane bytes a planar write produces (write modes 0-3 with set/reset, rotate,
    /// logical function and bit mask, against the latches).
    fn planar_write_value(&self, v: u8) -> [u8; 4] {
        let mode = self.gc[5] & 3;
        let rotate = u32::from(self.gc[3] & 7);
        let func = (self.gc[3] >> 3) & 3;
        let mut mask = self.gc[8];
        let set_reset = self.gc[0];
        let enable_sr = self.gc[1];
        let mut out = [0u8; 4];
        if mode == 1 {
            return self.latch;
        }
        for (p, o) in out.iter_mut().enumerate() {
            let bit = 1u8 << p;
            let sr_byte = if set_reset & bit != 0 { 0xff } else { 0 };
            let mut d = match mode {
                0 => {
                    if enable_sr & bit != 0 {
                        sr_byte
                    } else {
                        v.rotate_right(rotate)
                    }
                }
                2 => {
                    if v & bit != 0 {
                        0xff
                    } else {
                        0
                    }
                }
                _ => sr_byte,
            };
            if mode == 3 {
                mask = self.gc[8] & v.rotate_right(rotate);
            }
            if mode != 3 {
                let l = self.latch[p];
                d = match func {
                    0 => d,
                    1 => d & l,
                    2 => d | l,
                    _ => d ^ l,
                };
            }
            *o = (d & mask) | (self.latch[p] & !mask);
        }
        out
    }

    // ---- BAR0: the linear framebuffer ----

    /// Reads VRAM linearly (BAR0).
    pub fn lfb_read(&self, offset: u64, data: &mut [u8]) {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, b) in data.iter_mut().enumerate() {
            *b = start.checked_add(i).and_then(|x| self.vram.get(x)).copied().unwrap_or(0xff);
        }
    }

    /// Writes VRAM linearly (BAR0).
    pub fn lfb_write(&mut self, offset: u64, data: &[u8]) {
        self.touch();
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        let Some(end) = start.checked_add(data.len()).filter(|&e| e <= self.vram.len()) else {
            return;
        };
        self.vram[start..end].copy_from_slice(data);
    }
}

/// Bytes per pixel of a DISPI depth (15 bpp is stored in two bytes).
pub fn bytes_per_pixel(bpp: u16) -> usize {
    match bpp {
        15 | 16 => 2,
        24 => 3,
        32 => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(v: &mut VgaCore, port: u16, idx: u8, val: u8) {
        v.port_write(port, idx);
        v.port_write(port + 1, val);
    }

    #[test]
    fn planar_write_and_read_modes() {
        let mut v = VgaCore::new();
        v.gc[6] = 0x05; // A0000, 64K, graphics
        w(&mut v, 0x3c4, 4, 0x06); // sequential, no chain-4
        w(&mut v, 0x3c4, 2, 0x0f);
        w(&mut v, 0x3ce, 8, 0xff);
        // Write mode 0 with set/reset on planes 0 and 2.
        w(&mut v, 0x3ce, 0, 0x05);
        w(&mut v, 0x3ce, 1, 0x0f);
        v.window_write(0x10, 0x00);
        assert_eq!(&v.vram[0x40..0x44], &[0xff, 0, 0xff, 0]);
        // Read mode 0 picks a plane; the read loads the latches.
        w(&mut v, 0x3ce, 4, 2);
        assert_eq!(v.window_read(0x10), 0xff);
        w(&mut v, 0x3ce, 4, 1);
        assert_eq!(v.window_read(0x10), 0);
        // Write mode 1 copies the latches elsewhere.
        w(&mut v, 0x3ce, 5, 0x01);
        v.window_write(0x20, 0x12);
        assert_eq!(&v.vram[0x80..0x84], &[0xff, 0, 0xff, 0]);
        // Read mode 1: colour compare against colour 5 (planes 0 and 2).
        w(&mut v, 0x3ce, 5, 0x08);
        w(&mut v, 0x3ce, 2, 0x05);
        w(&mut v, 0x3ce, 7, 0x0f);
        assert_eq!(v.window_read(0x10), 0xff);
        w(&mut v, 0x3ce, 2, 0x01);
        assert_eq!(v.window_read(0x10), 0x00);
        // Write mode 2 with a bit mask keeps the latched bits outside the mask.
        w(&mut v, 0x3ce, 5, 0x02);
        w(&mut v, 0x3ce, 8, 0x0f);
        v.window_read(0x10);
        v.window_write(0x10, 0x0a); // colour 1010b: planes 1 and 3
        assert_eq!(&v.vram[0x40..0x44], &[0xf0, 0x0f, 0xf0, 0x0f]);
    }

    #[test]
    fn odd_even_and_chain4_addressing() {
        let mut v = VgaCore::new();
        // Text mode: B8000, odd/even.
        v.gc[6] = 0x0e;
        v.gc[5] = 0x10;
        v.seq[4] = 0x02;
        v.seq[2] = 0x03;
        v.window_write(0x18000, b'A');
        v.window_write(0x18001, 0x1f);
        v.window_write(0x18002, b'B');
        assert_eq!(&v.vram[0..2], &[b'A', 0x1f]);
        assert_eq!(v.vram[4], b'B');
        assert_eq!(v.window_read(0x18001), 0x1f);
        // A0000 is not decoded with memory map 3.
        v.window_write(0x0, 0x55);
        assert_eq!(v.window_read(0x0), 0xff);
        // Mode 13h: chain-4 sees linear bytes.
        v.gc[6] = 0x05;
        v.gc[5] = 0x40;
        v.seq[4] = 0x0e;
        v.seq[2] = 0x0f;
        for i in 0..8u8 {
            v.window_write(u64::from(i), i + 1);
        }
        assert_eq!(&v.vram[0..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(v.window_read(5), 6);
    }

    #[test]
    fn dac_autoincrements() {
        let mut v = VgaCore::new();
        v.port_write(0x3c8, 254);
        for b in [1, 2, 3, 4, 5, 6] {
            v.port_write(0x3c9, b);
        }
        assert_eq!(&v.dac[254 * 3..256 * 3], &[1, 2, 3, 4, 5, 6]);
        v.port_write(0x3c7, 255);
        assert_eq!([v.port_read(0x3c9), v.port_read(0x3c9), v.port_read(0x3c9)], [4, 5, 6]);
        assert_eq!(v.port_read(0x3c9), 0, "wrapped to entry 0");
    }

    #[test]
    fn attribute_flip_flop_and_retrace() {
        let mut v = VgaCore::new();
        v.port_read(0x3da);
        v.port_write(0x3c0, 0x01);
        v.port_write(0x3c0, 0x3f);
        assert_eq!(v.attr[1], 0x3f);
        v.port_write(0x3c0, 0x20);
        assert_eq!(v.attr_index, 0x20);
        let a = v.port_read(0x3da) & 0x08;
        let b = v.port_read(0x3da) & 0x08;
        assert_ne!(a, b, "the retrace bit toggles");
        // In colour mode the mono ports are dead.
        assert_eq!(v.port_read(0x3b5), 0xff);
    }

    #[test]
    fn vbe_mode_set_and_lfb() {
        let mut v = VgaCore::new();
        v.vbe_index = dispi::ID as u16;
        assert_eq!(v.vbe_read(), dispi::ID_LATEST);
        v.vbe_write(0xb0c0);
        assert_eq!(v.vbe_read(), 0xb0c0);
        v.vbe_index = dispi::VIDEO_MEMORY_64K as u16;
        assert_eq!(v.vbe_read(), 256);
        v.lfb_write(0, &[0xaa; 16]);
        for (i, val) in [(dispi::XRES, 1024), (dispi::YRES, 768), (dispi::BPP, 32)] {
            v.vbe_index = i as u16;
            v.vbe_write(val);
        }
        v.vbe_index = dispi::ENABLE as u16;
        v.vbe_write(dispi::ENABLED | dispi::LFB_ENABLED);
        assert!(v.vbe_enabled());
        assert_eq!(v.vram[0], 0, "enable clears VRAM");
        assert_eq!(v.vbe[dispi::VIRT_WIDTH], 1024);
        assert_eq!(usize::from(v.vbe[dispi::VIRT_HEIGHT]), VRAM_SIZE / 4096);
        v.lfb_write(4 * 1025, &[1, 2, 3, 0]);
        let mut b = [0u8; 4];
        v.lfb_read(4 * 1025, &mut b);
        assert_eq!(b, [1, 2, 3, 0]);
        // Out of range accesses do nothing.
        v.lfb_write(VRAM_SIZE as u64 - 2, &[1, 2, 3, 4]);
        v.lfb_read(VRAM_SIZE as u64 - 2, &mut b);
        assert_eq!(b, [0, 0, 0xff, 0xff]);
        // GETCAPS.
        v.vbe_write(dispi::ENABLED | dispi::GETCAPS);
        v.vbe_index = dispi::XRES as u16;
        assert_eq!(v.vbe_read(), dispi::MAX_XRES);
        // Banked access through the window in chain-4 (the BIOS enables all planes).
        v.seq[2] = 0x0f;
        v.vbe_index = dispi::BANK as u16;
        v.vbe_write(2);
        v.window_write(0x10, 0x77);
        assert_eq!(v.vram[0x20010], 0x77);
    }
}
