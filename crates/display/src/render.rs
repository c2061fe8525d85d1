//! Turns the adapter's state into RGB pixels: a short snapshot taken under the device lock,
//! then the drawing outside it.

use crate::vga::{bytes_per_pixel, dispi, VgaCore};

/// Largest picture we render, in either direction.
const MAX_DIM: usize = 4096;
/// How much planar memory text and 16/256-colour modes can address: 64 KiB per plane.
const PLANAR_SPAN: usize = 0x10000 * 4;

/// An RGB picture, one `0x00RRGGBB` word per pixel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major pixels.
    pub pixels: Vec<u32>,
}

impl Frame {
    /// Writes the picture as a binary PPM (P6), e.g. for a screenshot command.
    pub fn write_ppm(&self, mut out: impl std::io::Write) -> std::io::Result<()> {
        write!(out, "P6\n{} {}\n255\n", self.width, self.height)?;
        let mut rgb = Vec::with_capacity(self.pixels.len() * 3);
        for p in &self.pixels {
            rgb.extend_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, *p as u8]);
        }
        out.write_all(&rgb)
    }

    fn reset(&mut self, width: usize, height: usize) {
        self.width = width;
        self.height = height;
        self.pixels.clear();
        self.pixels.resize(width * height, 0);
    }
}

#[derive(Clone, Debug)]
struct TextView {
    cols: usize,
    rows: usize,
    cell_w: usize,
    cell_h: usize,
    stride: usize,
    start: usize,
    cursor: Option<(usize, usize, usize)>,
    font_a: usize,
    font_b: usize,
    blink_attr: bool,
    line_graphics: bool,
    palette: [u32; 16],
}

/// What to draw, with the register values it needs.
#[derive(Clone, Debug)]
enum View {
    Blank { width: usize, height: usize },
    Text(TextView),
    Planar16 { width: usize, height: usize, stride: usize, start: usize, palette: [u32; 16] },
    Chain256 { width: usize, height: usize, stride: usize, start: usize, palette: Box<[u32; 256]> },
    Vbe { width: usize, height: usize, bpp: u16, stride: usize, palette: Box<[u32; 256]> },
}

/// A consistent copy of what the renderer needs: the view and the VRAM bytes it reads.
pub(crate) struct Snapshot {
    view: View,
    mem: Vec<u8>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self { view: View::Blank { width: 640, height: 480 }, mem: Vec::new() }
    }
}

fn dac6(c: &[u8]) -> u32 {
    let s = |v: u8| u32::from(v & 0x3f) * 255 / 63;
    (s(c[0]) << 16) | (s(c[1]) << 8) | s(c[2])
}

fn dac8(c: &[u8]) -> u32 {
    (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2])
}

fn dac_palette(core: &VgaCore, eight_bit: bool) -> Box<[u32; 256]> {
    let mut p = Box::new([0u32; 256]);
    for (i, e) in p.iter_mut().enumerate() {
        let c = &core.dac[i * 3..i * 3 + 3];
        *e = if eight_bit { dac8(c) } else { dac6(c) };
    }
    p
}

/// The 16 colours of the attribute controller's palette, through the DAC.
fn attr_palette(core: &VgaCore) -> [u32; 16] {
    let mode = core.attr[0x10];
    let select = core.attr[0x14];
    let mut out = [0u32; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let mut idx = core.attr[i] & 0x3f;
        if mode & 0x80 != 0 {
            idx = (idx & 0x0f) | ((select & 0x03) << 4);
        }
        idx |= (select & 0x0c) << 4;
        let idx = usize::from(idx & core.dac_mask);
        *o = dac6(&core.dac[idx * 3..idx * 3 + 3]);
    }
    out
}

/// Which font map (offset in plane 2) a character map select value picks.
fn font_offset(sel: u8) -> usize {
    usize::from(sel & 3) * 0x4000 + usize::from((sel >> 2) & 1) * 0x2000
}

impl Snapshot {
    /// Copies the registers and the VRAM the current mode shows. Cheap enough to hold the
    /// device lock for: at most one screen's worth of VRAM is copied.
    pub(crate) fn take(&mut self, core: &VgaCore) {
        self.mem.clear();
        if core.vbe_enabled() {
            let width = usize::from(core.vbe[dispi::XRES]).min(MAX_DIM);
            let height = usize::from(core.vbe[dispi::YRES]).min(MAX_DIM);
            let bpp = core.vbe[dispi::BPP];
            let bytes = bytes_per_pixel(bpp);
            let stride = usize::from(core.vbe[dispi::VIRT_WIDTH]) * bytes;
            let start = usize::from(core.vbe[dispi::Y_OFFSET]) * stride
                + usize::from(core.vbe[dispi::X_OFFSET]) * bytes;
            let len = stride * height.saturating_sub(1) + width * bytes;
            let end = (start + len).min(core.vram.len());
            if let Some(src) = core.vram.get(start..end) {
                self.mem.extend_from_slice(src);
            }
            let eight = core.vbe[dispi::ENABLE] & dispi::DAC_8BIT != 0;
            self.view = View::Vbe { width, height, bpp, stride, palette: dac_palette(core, eight) };
            return;
        }
        let c = &core.crtc;
        let char_clocks = usize::from(c[1]) + 1;
        let lines =
            (usize::from(c[0x12]) | (usize::from(c[7] & 0x02) << 7) | (usize::from(c[7] & 0x40) << 3)) + 1;
        let start = (usize::from(c[0x0c]) << 8) | usize::from(c[0x0d]);
        let blanked = core.attr_index & 0x20 == 0 || core.seq[1] & 0x20 != 0;
        if char_clocks < 20 || lines < 100 || blanked {
            let (width, height) = match &self.view {
                View::Blank { width, height } => (*width, *height),
                _ => (640, 480),
            };
            let (width, height) =
                if char_clocks >= 20 && lines >= 100 { (char_clocks * 8, lines) } else { (width, height) };
            self.view = View::Blank { width: width.min(MAX_DIM), height: height.min(MAX_DIM) };
            return;
        }
        self.mem.extend_from_slice(&core.vram[..PLANAR_SPAN]);
        let max_scan = usize::from(c[9] & 0x1f) + 1;
        if core.gc[6] & 1 == 0 {
            let cell_h = max_scan;
            let cell_w = if core.seq[1] & 1 != 0 { 8 } else { 9 };
            let cursor_start = usize::from(c[0x0a] & 0x1f);
            let cursor_end = usize::from(c[0x0b] & 0x1f);
            let cursor_pos = (usize::from(c[0x0e]) << 8) | usize::from(c[0x0f]);
            let cursor = (c[0x0a] & 0x20 == 0 && cursor_start <= cursor_end && cursor_start < cell_h)
                .then_some((cursor_pos, cursor_start, cursor_end.min(cell_h - 1)));
            let sel = core.seq[3];
            self.view = View::Text(TextView {
                cols: char_clocks.min(MAX_DIM / 9),
                rows: (lines / cell_h).min(MAX_DIM / cell_h),
                cell_w,
                cell_h,
                stride: usize::from(c[0x13]) * 2,
                start,
                cursor,
                font_a: font_offset(((sel >> 2) & 3) | ((sel >> 3) & 4)),
                font_b: font_offset((sel & 3) | ((sel >> 2) & 4)),
                blink_attr: core.attr[0x10] & 0x08 != 0,
                line_graphics: core.attr[0x10] & 0x04 != 0,
                palette: attr_palette(core),
            });
            return;
        }
        let double = if c[9] & 0x80 != 0 { 2 } else { 1 };
        let height = (lines / (max_scan * double)).min(MAX_DIM);
        if core.gc[5] & 0x40 != 0 {
            self.view = View::Chain256 {
                width: (char_clocks * 4).min(MAX_DIM),
                height,
                stride: usize::from(c[0x13]) * 8,
                start: start * 4,
                palette: dac_palette(core, false),
            };
        } else {
            self.view = View::Planar16 {
                width: (char_clocks * 8).min(MAX_DIM),
                height,
                stride: usize::from(c[0x13]) * 2,
                start,
                palette: attr_palette(core),
            };
        }
    }

    /// Whether the picture depends on the blink phase (text mode).
    pub(crate) fn blinks(&self) -> bool {
        matches!(self.view, View::Text(_))
    }

    /// Draws the snapshot into `out`; `cursor_on` and `blink_on` are the two blink phases.
    pub(crate) fn render(&self, out: &mut Frame, cursor_on: bool, blink_on: bool) {
        match &self.view {
            View::Blank { width, height } => out.reset(*width, *height),
            View::Text(t) => self.render_text(t, out, cursor_on, blink_on),
            View::Planar16 { width, height, stride, start, palette } => {
                out.reset(*width, *height);
                for y in 0..*height {
                    for x in 0..*width {
                        let off = ((start + y * stride + x / 8) & 0xffff) * 4;
                        let bit = 7 - (x % 8);
                        let mut colour = 0;
                        for p in 0..4 {
                            colour |= usize::from((self.mem[off + p] >> bit) & 1) << p;
                        }
                        out.pixels[y * width + x] = palette[colour];
                    }
                }
            }
            View::Chain256 { width, height, stride, start, palette } => {
                out.reset(*width, *height);
                for y in 0..*height {
                    for x in 0..*width {
                        let off = (start + y * stride + x) % PLANAR_SPAN;
                        out.pixels[y * width + x] = palette[usize::from(self.mem[off])];
                    }
                }
            }
            View::Vbe { width, height, bpp, stride, palette } => {
                out.reset(*width, *height);
                let bytes = bytes_per_pixel(*bpp);
                for y in 0..*height {
                    let row = &mut out.pixels[y * width..(y + 1) * width];
                    for (x, px) in row.iter_mut().enumerate() {
                        let off = y * stride + x * bytes;
                        let Some(b) = self.mem.get(off..off + bytes) else {
                            break;
                        };
                        *px = match bpp {
                            8 => palette[usize::from(b[0])],
                            15 => {
                                let v = u32::from(u16::from_le_bytes([b[0], b[1]]));
                                let (r, g, bl) = ((v >> 10) & 31, (v >> 5) & 31, v & 31);
                                ((r * 255 / 31) << 16) | ((g * 255 / 31) << 8) | (bl * 255 / 31)
                            }
                            16 => {
                                let v = u32::from(u16::from_le_bytes([b[0], b[1]]));
                                let (r, g, bl) = ((v >> 11) & 31, (v >> 5) & 63, v & 31);
                                ((r * 255 / 31) << 16) | ((g * 255 / 63) << 8) | (bl * 255 / 31)
                            }
                            24 | 32 => (u32::from(b[2]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[0]),
                            _ => 0,
                        };
                    }
                }
            }
        }
    }

    fn render_text(&self, t: &TextView, out: &mut Frame, cursor_on: bool, blink_on: bool) {
        let width = t.cols * t.cell_w;
        let height = t.rows * t.cell_h;
        out.reset(width, height);
        let plane = |p: usize, off: usize| self.mem[(off & 0xffff) * 4 + p];
        for row in 0..t.rows {
            for col in 0..t.cols {
                let cell = row * t.stride + col;
                let off = t.start + cell;
                let ch = plane(0, off);
                let attr = plane(1, off);
                let mut fg = usize::from(attr & 0x0f);
                let mut bg = usize::from(attr >> 4);
                if t.blink_attr {
                    bg &= 7;
                    if attr & 0x80 != 0 && !blink_on {
                        fg = bg;
                    }
                }
                let font = if attr & 0x08 != 0 { t.font_a } else { t.font_b };
                let glyph = font + usize::from(ch) * 32;
                let (fg, bg) = (t.palette[fg], t.palette[bg]);
                let cursor_here = cursor_on
                    && t.cursor.is_some_and(|(pos, _, _)| pos.wrapping_sub(t.start) & 0xffff == cell);
                let extend = t.line_graphics && (0xc0..=0xdf).contains(&ch);
                for line in 0..t.cell_h {
                    let bits = plane(2, glyph + line);
                    let y = row * t.cell_h + line;
                    let base = y * width + col * t.cell_w;
                    let in_cursor = cursor_here && t.cursor.is_some_and(|(_, s, e)| (s..=e).contains(&line));
                    for x in 0..t.cell_w {
                        let on = if x < 8 { bits & (0x80 >> x) != 0 } else { extend && bits & 1 != 0 };
                        out.pixels[base + x] = if on || in_cursor { fg } else { bg };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An 80x25 text mode with 9x16 cells as the VGA BIOS programs it (the registers that
    /// matter to the renderer), a grey-on-blue palette entry and a synthetic glyph for 'A'.
    pub(crate) fn text_mode_core() -> VgaCore {
        let mut v = VgaCore::new();
        v.misc = 0x67;
        v.seq[1] = 0x00;
        v.seq[3] = 0x00;
        v.crtc[1] = 79;
        v.crtc[7] = 0x1f;
        v.crtc[9] = 0x4f;
        v.crtc[0x0a] = 0x0d;
        v.crtc[0x0b] = 0x0e;
        v.crtc[0x12] = 0x8f;
        v.crtc[0x13] = 40;
        for i in 0..16u8 {
            v.attr[usize::from(i)] = i;
        }
        v.attr[0x10] = 0x0c;
        v.attr_index = 0x20;
        v.dac[3..6].copy_from_slice(&[0, 0, 42]); // 1: blue
        v.dac[7 * 3..8 * 3].copy_from_slice(&[42, 42, 42]); // 7: grey
        v.dac[15 * 3..16 * 3].copy_from_slice(&[63, 63, 63]); // 15: white
                                                              // Glyph 'A' in font 0 of plane 2: a box outline on lines 2..=13.
        for line in 0..16 {
            let bits = match line {
                2 | 13 => 0xff,
                3..=12 => 0x81,
                _ => 0,
            };
            v.vram[(usize::from(b'A') * 32 + line) * 4 + 2] = bits;
        }
        v
    }

    #[test]
    fn text_cell_uses_font_from_plane_2_and_dac_colours() {
        let mut v = text_mode_core();
        // Cell (row 1, col 2): 'A', white on blue.
        let off = 80 + 2;
        v.vram[off * 4] = b'A';
        v.vram[off * 4 + 1] = 0x1f;
        let mut s = Snapshot::default();
        s.take(&v);
        let mut f = Frame::default();
        s.render(&mut f, false, true);
        assert_eq!((f.width, f.height), (720, 400));
        let px = |x: usize, y: usize| f.pixels[y * f.width + x];
        let (x0, y0) = (2 * 9, 16);
        let white = 0xffffff;
        let blue = 42 * 255 / 63;
        for line in 0..16 {
            for x in 0..9 {
                let bits: u8 = match line {
                    2 | 13 => 0xff,
                    3..=12 => 0x81,
                    _ => 0,
                };
                let on = x < 8 && bits & (0x80 >> x) != 0;
                assert_eq!(px(x0 + x, y0 + line), if on { white } else { blue }, "x {x} line {line}");
            }
        }
        // The cursor at cell 0 draws lines 13-14 in the foreground colour when on.
        v.crtc[0x0e] = 0;
        v.crtc[0x0f] = 82;
        s.take(&v);
        s.render(&mut f, true, true);
        assert_eq!(f.pixels[(16 + 14) * 720 + 18 + 4], white);
        s.render(&mut f, false, true);
        assert_eq!(f.pixels[(16 + 14) * 720 + 18 + 4], blue);
        // 8-dot cells.
        v.seq[1] = 0x01;
        s.take(&v);
        s.render(&mut f, false, true);
        assert_eq!(f.width, 640);
    }

    #[test]
    fn cursor_as_the_vga_bios_leaves_it() {
        // Registers read back from SeaVGABIOS after "No bootable device": cursor lines 13-14
        // at cell 0x280 (row 8, column 0), a blank with attribute 7 there.
        let mut v = text_mode_core();
        v.dac[7 * 3..8 * 3].copy_from_slice(&[42, 42, 42]);
        v.crtc[0x0e] = 0x02;
        v.crtc[0x0f] = 0x80;
        v.vram[0x280 * 4] = b' ';
        v.vram[0x280 * 4 + 1] = 0x07;
        let mut s = Snapshot::default();
        s.take(&v);
        let mut f = Frame::default();
        s.render(&mut f, true, true);
        let grey = 0xaaaaaa;
        for line in 13..=14 {
            assert_eq!(f.pixels[(8 * 16 + line) * 720 + 2], grey, "line {line}");
        }
        assert_eq!(f.pixels[(8 * 16 + 12) * 720 + 2], 0);
    }

    #[test]
    fn blinking_attribute_hides_the_glyph_in_the_off_phase() {
        let mut v = text_mode_core();
        v.vram[0] = b'A';
        v.vram[1] = 0x8f; // blink, white on black
        let mut s = Snapshot::default();
        s.take(&v);
        let mut f = Frame::default();
        s.render(&mut f, false, true);
        assert_eq!(f.pixels[2 * 720], 0xffffff);
        s.render(&mut f, false, false);
        assert_eq!(f.pixels[2 * 720], 0);
    }

    #[test]
    fn vbe_depths_render() {
        let mut v = VgaCore::new();
        for (bpp, bytes, expect) in [
            (32u16, vec![0x30, 0x20, 0x10, 0], 0x102030u32),
            (24, vec![0x30, 0x20, 0x10], 0x102030),
            (16, 0xf800u16.to_le_bytes().to_vec(), 0xff0000),
            (15, 0x001fu16.to_le_bytes().to_vec(), 0x0000ff),
            (8, vec![5], 0x00ff00),
        ] {
            v.vbe[dispi::ENABLE] = 0;
            v.vbe[dispi::XRES] = 64;
            v.vbe[dispi::YRES] = 8;
            v.vbe[dispi::BPP] = bpp;
            v.vbe_index = dispi::ENABLE as u16;
            v.vbe_write(dispi::ENABLED | dispi::LFB_ENABLED | dispi::DAC_8BIT);
            v.dac[15..18].copy_from_slice(&[0, 255, 0]);
            let stride = 64 * bytes.len();
            v.lfb_write((stride + bytes.len()) as u64, &bytes);
            let mut s = Snapshot::default();
            s.take(&v);
            let mut f = Frame::default();
            s.render(&mut f, false, false);
            assert_eq!((f.width, f.height), (64, 8));
            assert_eq!(f.pixels[64 + 1], expect, "bpp {bpp}");
            assert_eq!(f.pixels[0], 0);
        }
    }

    #[test]
    fn mode_12h_planar_pixels() {
        let mut v = VgaCore::new();
        v.crtc[1] = 79;
        v.crtc[7] = 0x3e;
        v.crtc[0x12] = 0xdf;
        v.crtc[0x13] = 40;
        v.gc[6] = 0x05;
        v.seq[2] = 0x0f;
        v.seq[4] = 0x06;
        v.gc[8] = 0x80;
        v.gc[5] = 0x02; // write mode 2: the byte is a colour, the bit mask picks the pixel
        v.attr_index = 0x20;
        for i in 0..16u8 {
            v.attr[usize::from(i)] = i;
        }
        v.dac[12 * 3..13 * 3].copy_from_slice(&[63, 21, 21]);
        v.window_read(80 * 10 + 2); // load the latches
        v.window_write(80 * 10 + 2, 12); // pixel (16, 10)
        let mut s = Snapshot::default();
        s.take(&v);
        let mut f = Frame::default();
        s.render(&mut f, false, false);
        assert_eq!((f.width, f.height), (640, 480));
        assert_eq!(f.pixels[10 * 640 + 16], 0xff5555);
        assert_eq!(f.pixels[10 * 640 + 17], 0);
        let mut ppm = Vec::new();
        f.write_ppm(&mut ppm).unwrap();
        assert!(ppm.starts_with(b"P6\n640 480\n255\n"));
        assert_eq!(ppm.len(), 15 + 640 * 480 * 3);
    }

    #[test]
    fn mode_13h_renders_through_the_dac() {
        let mut v = VgaCore::new();
        v.crtc[1] = 79;
        v.crtc[7] = 0x1f;
        v.crtc[9] = 0x41;
        v.crtc[0x12] = 0x8f;
        v.crtc[0x13] = 40;
        v.gc[5] = 0x40;
        v.gc[6] = 0x05;
        v.seq[4] = 0x0e;
        v.seq[2] = 0x0f;
        v.attr_index = 0x20;
        v.dac[9 * 3..10 * 3].copy_from_slice(&[63, 0, 0]);
        v.window_write(320 * 3 + 7, 9);
        let mut s = Snapshot::default();
        s.take(&v);
        let mut f = Frame::default();
        s.render(&mut f, false, false);
        assert_eq!((f.width, f.height), (320, 200));
        assert_eq!(f.pixels[320 * 3 + 7], 0xff0000);
    }
}
