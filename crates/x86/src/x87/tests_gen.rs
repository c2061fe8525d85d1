//! Random inputs for the x87 differential test: 80-bit values, single, double, integer
//! and BCD operands drawn heavily from special values, and FXSAVE images.

use super::tests_diff::Mem;

/// The differential harness's generator, with the draws of this test.
pub(super) use crate::difftest::Rng;

impl Rng {
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[(self.next() % v.len() as u64) as usize]
    }
    /// An 80-bit value, mostly special.
    pub(super) fn ext(&mut self) -> u128 {
        let s = (self.next() & 1) as u128;
        let r = self.next();
        let (e, m): (u128, u64) = match r % 21 {
            // Pseudo-infinity and pseudo-NaNs.
            14 => (0x7fff, self.next() >> (1 + r % 63)),
            0 => (0, 0),
            1 => (0, self.next() >> (1 + r % 63)),
            2 => (0x7fff, 1 << 63),
            3 => (0x7fff, (3 << 62) | (self.next() >> (2 + r % 62))),
            4 => (0x7fff, (1 << 63) | (self.next() >> (2 + r % 60)) | 1),
            5 => (self.pick(&[1, 2, 0x7ffe, 0x7ffd, 0x3fff]), !0),
            6 => (1 + (self.next() % 0x7ffe) as u128, self.next() >> 1),
            7 => (0, (1 << 63) | self.next() >> 20),
            8 => {
                // An integer or a half-integer.
                let k = self.next() >> (r % 64);
                let half = r & 64 != 0;
                if k == 0 {
                    (16382, 1 << 63)
                } else {
                    let lz = k.leading_zeros();
                    let e = 16383 + 63 - lz as u128;
                    let m = k << lz;
                    if half && lz > 0 {
                        (e, m | (1 << (lz - 1)))
                    } else {
                        (e, m)
                    }
                }
            }
            9 => (16383 + (self.next() % 130) as u128 - 65, (1 << 63) | (self.next() >> 1)),
            10 => (
                self.pick(&[16383, 16384, 16382, 16385]),
                (1 << 63) | self.pick(&[0, 1, 0x7fff_ffff_ffff_ffff, 0x4000_0000_0000_0000, 0xff]),
            ),
            11 => (16383 + (self.next() % 20) as u128, (1 << 63) | (self.next() >> 1) & !0xff_ffff_ffff),
            12 => (
                self.pick(&[1u128, 2, 3, 0x7ffe, 0x7ffd, 0x3c01, 0x43fe, 0x3f81, 0x407e, 0x3bcc, 0x3f6a]),
                (1 << 63) | (self.next() >> 1),
            ),
            _ => (16383 + (self.next() % 16) as u128 - 8, (1 << 63) | (self.next() >> 1)),
        };
        (s << 79) | (e << 64) | m as u128
    }
    fn x87_f64(&mut self) -> u64 {
        let r = self.next();
        let s = (r & 1) << 63;
        s | match r % 10 {
            0 => 0,
            1 => self.next() >> 12,
            2 => 0x7ff0_0000_0000_0000,
            3 => 0x7ff8_0000_0000_0000 | (self.next() >> 13),
            4 => 0x7ff0_0000_0000_0001 | (self.next() >> 14),
            5 => 0x7fef_ffff_ffff_ffff,
            6 => (self.next() % 0x7ff) << 52 | (self.next() >> 12),
            _ => ((1023 + self.next() % 40 - 20) << 52) | (self.next() >> 12),
        }
    }
    fn x87_f32(&mut self) -> u64 {
        let r = self.next();
        let s = (r & 1) << 31;
        s | match r % 10 {
            0 => 0,
            1 => self.next() >> 41,
            2 => 0x7f80_0000,
            3 => 0x7fc0_0000 | (self.next() >> 42),
            4 => 0x7f80_0001 | (self.next() >> 43),
            5 => 0x7f7f_ffff,
            6 => (self.next() % 0xff) << 23 | (self.next() >> 41),
            _ => ((127 + self.next() % 40 - 20) << 23) | (self.next() >> 41),
        }
    }
    fn x87_int(&mut self, bits: u32) -> u64 {
        let r = self.next();
        let v = match r % 4 {
            0 => self.pick(&[0, 1, !0, 1 << (bits - 1), (1 << (bits - 1)) - 1]),
            1 => self.next() >> (r % 64),
            _ => self.next(),
        };
        if bits == 64 {
            v
        } else {
            v & ((1 << bits) - 1)
        }
    }
    fn bcd(&mut self) -> u128 {
        let mut b: u128 = 0;
        let n = self.next() % 19;
        for i in 0..n {
            b |= ((self.next() % 10) as u128) << (4 * i);
        }
        b | ((self.next() & 1) as u128) << 79
    }
}

fn fcw(rng: &mut Rng) -> u16 {
    let masks = if rng.next() % 10 < 7 { 0x3f } else { rng.next() as u16 & 0x3f };
    let pc = rng.pick(&[0u16, 2, 3, 3, 3, 1]);
    let rc = rng.next() as u16 & 3;
    0x40 | masks | (pc << 8) | (rc << 10)
}

/// A random FXSAVE image with no exception pending.
pub(super) fn image(rng: &mut Rng) -> [u8; 512] {
    let mut img = [0u8; 512];
    let mut cw = fcw(rng);
    if rng.next().is_multiple_of(8) {
        // Reserved bits, which FXRSTOR is expected to drop.
        cw = (cw | (rng.next() as u16 & 0xe080)) & !0x40;
    }
    let mut flags = rng.next() as u16 & cw & 0x3f;
    if !rng.next().is_multiple_of(4) {
        flags = 0;
    }
    let sw = (rng.next() as u16 & 0x4700) | flags | ((rng.next() as u16 & 7) << 11);
    let tw = if rng.next().is_multiple_of(2) { 0xff } else { rng.next() as u8 };
    img[0..2].copy_from_slice(&cw.to_le_bytes());
    img[2..4].copy_from_slice(&sw.to_le_bytes());
    img[4] = tw;
    img[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
    let mut regs = [0u128; 8];
    for r in regs.iter_mut() {
        *r = rng.ext();
    }
    if rng.next().is_multiple_of(4) {
        // ST1 close to ST0 (cancellation, equality): a few ulps away, maybe negated. The
        // image holds the registers in stack order.
        let d = rng.next() % 5;
        let v = regs[0] ^ ((rng.next() & 1) as u128) << 79;
        regs[1] =
            if rng.next().is_multiple_of(2) { v.wrapping_add(d as u128) } else { v.wrapping_sub(d as u128) };
    }
    for (r, v) in regs.iter().enumerate() {
        img[32 + 16 * r..42 + 16 * r].copy_from_slice(&v.to_le_bytes()[..10]);
    }
    img
}

pub(super) fn memory(rng: &mut Rng, m: Mem) -> [u8; 128] {
    let mut b = [0u8; 128];
    for c in b.chunks_mut(8) {
        c.copy_from_slice(&rng.next().to_le_bytes());
    }
    match m {
        Mem::None => {}
        Mem::F32 => b[..4].copy_from_slice(&(rng.x87_f32() as u32).to_le_bytes()),
        Mem::F64 => b[..8].copy_from_slice(&rng.x87_f64().to_le_bytes()),
        Mem::F80 => b[..10].copy_from_slice(&rng.ext().to_le_bytes()[..10]),
        Mem::I16 => b[..2].copy_from_slice(&(rng.x87_int(16) as u16).to_le_bytes()),
        Mem::I32 => b[..4].copy_from_slice(&(rng.x87_int(32) as u32).to_le_bytes()),
        Mem::I64 => b[..8].copy_from_slice(&rng.x87_int(64).to_le_bytes()),
        Mem::Bcd => b[..10].copy_from_slice(&rng.bcd().to_le_bytes()[..10]),
        Mem::Raw => {
            // Sometimes reserved control-word bits too (bit 6 reads as 1, 13-15 as 0).
            let cw = if rng.next().is_multiple_of(4) { rng.next() as u16 & 0xffbf } else { fcw(rng) };
            b[..4].copy_from_slice(&(cw as u32).to_le_bytes());
            let sw = rng.next() as u16 & 0x7fff;
            b[4..8].copy_from_slice(&(sw as u32).to_le_bytes());
            for r in 0..8 {
                let v = rng.ext();
                b[28 + 10 * r..38 + 10 * r].copy_from_slice(&v.to_le_bytes()[..10]);
            }
        }
    }
    b
}
