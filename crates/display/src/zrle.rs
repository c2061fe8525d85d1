//! ZRLE (RFB encoding 16): 64x64 tiles, each solid, packed-palette or raw, through one zlib
//! stream per connection.

use flate2::{Compress, Compression, FlushCompress};

use crate::rfb::PixelFormat;

const TILE: usize = 64;

/// One connection's ZRLE encoder (the zlib stream lives as long as the connection).
pub(crate) struct Zrle {
    z: Compress,
    raw: Vec<u8>,
}

impl Zrle {
    pub(crate) fn new() -> Self {
        Self { z: Compress::new(Compression::fast(), true), raw: Vec::new() }
    }

    /// Encodes `pixels` (`w` x `h`, row-major RGB) and appends the length-prefixed zlib data
    /// that follows the rectangle header.
    pub(crate) fn encode(&mut self, pf: &PixelFormat, w: usize, h: usize, pixels: &[u32], out: &mut Vec<u8>) {
        self.raw.clear();
        for ty in (0..h).step_by(TILE) {
            for tx in (0..w).step_by(TILE) {
                let tw = TILE.min(w - tx);
                let th = TILE.min(h - ty);
                encode_tile(pf, tx, ty, tw, th, w, pixels, &mut self.raw);
            }
        }
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let start = out.len();
        out.reserve(self.raw.len() + self.raw.len() / 100 + 64);
        let mut input = &self.raw[..];
        loop {
            let before_in = self.z.total_in();
            if out.capacity() - out.len() < 64 {
                out.reserve(4096);
            }
            // A zlib error on our own buffer would be a bug; send what we have.
            if self.z.compress_vec(input, out, FlushCompress::Sync).is_err() {
                break;
            }
            let used = (self.z.total_in() - before_in) as usize;
            input = &input[used..];
            // Sync flush is complete when the input is used up and zlib left room unused.
            if input.is_empty() && out.capacity() > out.len() {
                break;
            }
        }
        let n = (out.len() - start) as u32;
        out[len_at..len_at + 4].copy_from_slice(&n.to_be_bytes());
    }
}

#[allow(clippy::too_many_arguments)]
fn encode_tile(
    pf: &PixelFormat,
    x0: usize,
    y0: usize,
    tw: usize,
    th: usize,
    stride: usize,
    px: &[u32],
    out: &mut Vec<u8>,
) {
    let at = |x: usize, y: usize| px[(y0 + y) * stride + x0 + x];
    let mut palette: Vec<u32> = Vec::with_capacity(16);
    'scan: for y in 0..th {
        for x in 0..tw {
            let p = at(x, y);
            if !palette.contains(&p) {
                if palette.len() == 16 {
                    palette.clear();
                    break 'scan;
                }
                palette.push(p);
            }
        }
    }
    match palette.len() {
        1 => {
            out.push(1);
            pf.put_cpixel(palette[0], out);
        }
        2..=16 => {
            out.push(palette.len() as u8);
            for &p in &palette {
                pf.put_cpixel(p, out);
            }
            let bits = match palette.len() {
                2 => 1,
                3 | 4 => 2,
                _ => 4,
            };
            for y in 0..th {
                let mut acc = 0u8;
                let mut filled = 0;
                for x in 0..tw {
                    let idx = palette.iter().position(|&c| c == at(x, y)).unwrap_or(0) as u8;
                    acc = (acc << bits) | idx;
                    filled += bits;
                    if filled == 8 {
                        out.push(acc);
                        acc = 0;
                        filled = 0;
                    }
                }
                if filled > 0 {
                    out.push(acc << (8 - filled));
                }
            }
        }
        _ => {
            out.push(0);
            for y in 0..th {
                for x in 0..tw {
                    pf.put_cpixel(at(x, y), out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn tiles_decode_back() {
        let pf = PixelFormat::default();
        let (w, h) = (70, 3);
        let mut px = vec![0x112233u32; w * h];
        px[1] = 0xffffff; // tile 0: two colours
        let mut out = Vec::new();
        let mut z = Zrle::new();
        z.encode(&pf, w, h, &px, &mut out);
        let n = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(n, out.len() - 4);
        let mut raw = Vec::new();
        let mut d = flate2::read::ZlibDecoder::new(&out[4..]);
        let _ = d.read_to_end(&mut raw);
        // Tile 0 (64x3): palette of 2 CPIXELs, then 3 rows of 8 bytes, 1 bit per pixel.
        assert_eq!(raw[0], 2);
        assert_eq!(&raw[1..7], &[0x33, 0x22, 0x11, 0xff, 0xff, 0xff]);
        assert_eq!(raw[7], 0b0100_0000);
        assert_eq!(raw[8..31], [0u8; 23]);
        // Tile 1 (6x3): solid.
        assert_eq!(&raw[31..], &[1, 0x33, 0x22, 0x11]);
    }
}
