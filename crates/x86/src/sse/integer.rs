//! Integer SIMD arithmetic on XMM and MMX registers: lane-wise add/sub/compare/min/max/
//! multiply, the SSSE3 horizontal and sign operations, packs and unpacks, shifts, logic,
//! PTEST and CRC32.

use super::lanes::*;
use crate::cpu::*;
use crate::flags::{CF, STATUS, ZF};
use iced_x86::{Instruction, Mnemonic as M, OpKind};

// Plain loops over byte arrays: the compiler turns them into vector instructions.
#[inline]
fn map8(a: u128, b: u128, f: impl Fn(u8, u8) -> u8) -> u128 {
    let (x, y) = (a.to_le_bytes(), b.to_le_bytes());
    let mut r = [0u8; 16];
    for i in 0..16 {
        r[i] = f(x[i], y[i]);
    }
    u128::from_le_bytes(r)
}
#[inline]
fn map16(a: u128, b: u128, f: impl Fn(u16, u16) -> u16) -> u128 {
    let (x, y) = (a.to_le_bytes(), b.to_le_bytes());
    let mut r = [0u8; 16];
    for i in 0..8 {
        let v = f(u16::from_le_bytes([x[2 * i], x[2 * i + 1]]), u16::from_le_bytes([y[2 * i], y[2 * i + 1]]));
        r[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
    }
    u128::from_le_bytes(r)
}
#[inline]
fn map32(a: u128, b: u128, f: impl Fn(u32, u32) -> u32) -> u128 {
    let (x, y) = (lanes32(a), lanes32(b));
    from32(std::array::from_fn(|i| f(x[i], y[i])))
}
fn map64(a: u128, b: u128, f: impl Fn(u64, u64) -> u64) -> u128 {
    let (x, y) = (lanes64(a), lanes64(b));
    from64(std::array::from_fn(|i| f(x[i], y[i])))
}

fn mask<T: From<u8> + std::ops::Not<Output = T>>(c: bool) -> T {
    if c {
        !T::from(0)
    } else {
        T::from(0)
    }
}

/// Interleaves the low (or high) halves of `a` and `b` in elements of `size` bytes.
fn unpack(a: u128, b: u128, w: usize, size: usize, high: bool) -> u128 {
    let (x, y) = (a.to_le_bytes(), b.to_le_bytes());
    let half = w / 2;
    let o = if high { half } else { 0 };
    let mut r = [0u8; 16];
    for e in 0..half / size {
        for k in 0..size {
            r[2 * e * size + k] = x[o + e * size + k];
            r[(2 * e + 1) * size + k] = y[o + e * size + k];
        }
    }
    u128::from_le_bytes(r)
}

/// Narrows the signed `isize`-byte elements of `a` then `b` with `sat` into half-size ones.
fn pack(a: u128, b: u128, w: usize, isize: usize, sat: impl Fn(i64) -> u64) -> u128 {
    let n = w / isize;
    let osize = isize / 2;
    let mut r = 0u128;
    for (k, v) in [a, b].iter().enumerate() {
        for i in 0..n {
            let x = lane(*v, isize as u32 * 8, i);
            let x = if isize == 2 { x as u16 as i16 as i64 } else { x as u32 as i32 as i64 };
            r = with_lane(r, osize as u32 * 8, k * n + i, sat(x));
        }
    }
    r
}

/// Pairs of adjacent `bits`-bit elements of `a` (low half) then `b` (high half), combined.
fn horizontal(a: u128, b: u128, w: usize, bits: u32, f: impl Fn(i64, i64) -> u64) -> u128 {
    let n = w * 8 / bits as usize;
    let sx = |v: u64| if bits == 16 { v as u16 as i16 as i64 } else { v as u32 as i32 as i64 };
    let mut r = 0u128;
    for (k, v) in [a, b].iter().enumerate() {
        for i in 0..n / 2 {
            let x = sx(lane(*v, bits, 2 * i));
            let y = sx(lane(*v, bits, 2 * i + 1));
            r = with_lane(r, bits, k * n / 2 + i, f(x, y));
        }
    }
    r
}

fn sat16(x: i64) -> u64 {
    x.clamp(-32768, 32767) as i16 as u16 as u64
}

fn sign<T: Copy>(x: T, s: i64, neg: impl Fn(T) -> T, zero: T) -> T {
    match s.cmp(&0) {
        std::cmp::Ordering::Less => neg(x),
        std::cmp::Ordering::Equal => zero,
        _ => x,
    }
}

/// CRC-32C (Castagnoli, reflected) of one byte.
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// The two-operand integer operations: `a` is the destination, `b` the source. Inlined, so
/// that a caller with a constant mnemonic (the threaded handlers) gets just its operation.
#[inline(always)]
pub(crate) fn binary(m: M, a: u128, b: u128, w: usize) -> Option<u128> {
    Some(match m {
        M::Paddb => map8(a, b, u8::wrapping_add),
        M::Psubb => map8(a, b, u8::wrapping_sub),
        M::Paddusb => map8(a, b, u8::saturating_add),
        M::Psubusb => map8(a, b, u8::saturating_sub),
        M::Paddsb => map8(a, b, |x, y| (x as i8).saturating_add(y as i8) as u8),
        M::Psubsb => map8(a, b, |x, y| (x as i8).saturating_sub(y as i8) as u8),
        M::Pcmpeqb => map8(a, b, |x, y| mask(x == y)),
        M::Pcmpgtb => map8(a, b, |x, y| mask((x as i8) > (y as i8))),
        M::Pminub => map8(a, b, u8::min),
        M::Pmaxub => map8(a, b, u8::max),
        M::Pminsb => map8(a, b, |x, y| (x as i8).min(y as i8) as u8),
        M::Pmaxsb => map8(a, b, |x, y| (x as i8).max(y as i8) as u8),
        M::Pavgb => map8(a, b, |x, y| ((x as u16 + y as u16 + 1) >> 1) as u8),
        M::Pabsb => map8(a, b, |_, y| (y as i8).unsigned_abs()),
        M::Psignb => map8(a, b, |x, y| sign(x, y as i8 as i64, u8::wrapping_neg, 0)),
        M::Paddw => map16(a, b, u16::wrapping_add),
        M::Psubw => map16(a, b, u16::wrapping_sub),
        M::Paddusw => map16(a, b, u16::saturating_add),
        M::Psubusw => map16(a, b, u16::saturating_sub),
        M::Paddsw => map16(a, b, |x, y| (x as i16).saturating_add(y as i16) as u16),
        M::Psubsw => map16(a, b, |x, y| (x as i16).saturating_sub(y as i16) as u16),
        M::Pcmpeqw => map16(a, b, |x, y| mask(x == y)),
        M::Pcmpgtw => map16(a, b, |x, y| mask((x as i16) > (y as i16))),
        M::Pmullw => map16(a, b, u16::wrapping_mul),
        M::Pmulhw => map16(a, b, |x, y| ((x as i16 as i32 * y as i16 as i32) >> 16) as u16),
        M::Pmulhuw => map16(a, b, |x, y| ((x as u32 * y as u32) >> 16) as u16),
        M::Pmulhrsw => map16(a, b, |x, y| ((((x as i16 as i32 * y as i16 as i32) >> 14) + 1) >> 1) as u16),
        M::Pminsw => map16(a, b, |x, y| (x as i16).min(y as i16) as u16),
        M::Pmaxsw => map16(a, b, |x, y| (x as i16).max(y as i16) as u16),
        M::Pminuw => map16(a, b, u16::min),
        M::Pmaxuw => map16(a, b, u16::max),
        M::Pavgw => map16(a, b, |x, y| ((x as u32 + y as u32 + 1) >> 1) as u16),
        M::Pabsw => map16(a, b, |_, y| (y as i16).unsigned_abs()),
        M::Psignw => map16(a, b, |x, y| sign(x, y as i16 as i64, u16::wrapping_neg, 0)),
        M::Paddd => map32(a, b, u32::wrapping_add),
        M::Psubd => map32(a, b, u32::wrapping_sub),
        M::Pcmpeqd => map32(a, b, |x, y| mask(x == y)),
        M::Pcmpgtd => map32(a, b, |x, y| mask((x as i32) > (y as i32))),
        M::Pmulld => map32(a, b, u32::wrapping_mul),
        M::Pminsd => map32(a, b, |x, y| (x as i32).min(y as i32) as u32),
        M::Pmaxsd => map32(a, b, |x, y| (x as i32).max(y as i32) as u32),
        M::Pminud => map32(a, b, u32::min),
        M::Pmaxud => map32(a, b, u32::max),
        M::Pabsd => map32(a, b, |_, y| (y as i32).unsigned_abs()),
        M::Psignd => map32(a, b, |x, y| sign(x, y as i32 as i64, u32::wrapping_neg, 0)),
        M::Paddq => map64(a, b, u64::wrapping_add),
        M::Psubq => map64(a, b, u64::wrapping_sub),
        M::Pcmpeqq => map64(a, b, |x, y| mask(x == y)),
        M::Pcmpgtq => map64(a, b, |x, y| mask((x as i64) > (y as i64))),
        M::Pmuludq => map64(a, b, |x, y| (x as u32 as u64) * (y as u32 as u64)),
        M::Pmuldq => map64(a, b, |x, y| ((x as u32 as i32 as i64) * (y as u32 as i32 as i64)) as u64),
        M::Pxor | M::Xorps | M::Xorpd => a ^ b,
        M::Por | M::Orps | M::Orpd => a | b,
        M::Pand | M::Andps | M::Andpd => a & b,
        M::Pandn | M::Andnps | M::Andnpd => !a & b,
        M::Pmaddwd => {
            let (x, y) = (lanes16(a), lanes16(b));
            from32(std::array::from_fn(|i| {
                ((x[2 * i] as i16 as i32) * (y[2 * i] as i16 as i32))
                    .wrapping_add((x[2 * i + 1] as i16 as i32) * (y[2 * i + 1] as i16 as i32))
                    as u32
            }))
        }
        M::Pmaddubsw => {
            let (x, y) = (lanes8(a), lanes8(b));
            from16(std::array::from_fn(|i| {
                let p = |k: usize| x[k] as i64 * y[k] as i8 as i64;
                sat16(p(2 * i) + p(2 * i + 1)) as u16
            }))
        }
        M::Psadbw => {
            let (x, y) = (lanes8(a), lanes8(b));
            let sum = |r: std::ops::Range<usize>| r.map(|i| x[i].abs_diff(y[i]) as u64).sum::<u64>();
            from64([sum(0..8), sum(8..16)])
        }
        M::Punpcklbw => unpack(a, b, w, 1, false),
        M::Punpckhbw => unpack(a, b, w, 1, true),
        M::Punpcklwd => unpack(a, b, w, 2, false),
        M::Punpckhwd => unpack(a, b, w, 2, true),
        M::Punpckldq | M::Unpcklps => unpack(a, b, w, 4, false),
        M::Punpckhdq | M::Unpckhps => unpack(a, b, w, 4, true),
        M::Punpcklqdq | M::Unpcklpd => unpack(a, b, w, 8, false),
        M::Punpckhqdq | M::Unpckhpd => unpack(a, b, w, 8, true),
        M::Packsswb => pack(a, b, w, 2, |x| x.clamp(-128, 127) as u8 as u64),
        M::Packuswb => pack(a, b, w, 2, |x| x.clamp(0, 255) as u64),
        M::Packssdw => pack(a, b, w, 4, sat16),
        M::Packusdw => pack(a, b, w, 4, |x| x.clamp(0, 65535) as u64),
        M::Phaddw => horizontal(a, b, w, 16, |x, y| (x + y) as u64),
        M::Phaddsw => horizontal(a, b, w, 16, |x, y| sat16(x + y)),
        M::Phsubw => horizontal(a, b, w, 16, |x, y| (x - y) as u64),
        M::Phsubsw => horizontal(a, b, w, 16, |x, y| sat16(x - y)),
        M::Phaddd => horizontal(a, b, w, 32, |x, y| (x + y) as u64),
        M::Phsubd => horizontal(a, b, w, 32, |x, y| (x - y) as u64),
        _ => return None,
    })
}

/// Shifts each `bits`-bit lane by `c` (logical left/right, or arithmetic right). Inlined
/// for the threaded handlers' constant mnemonics.
#[inline(always)]
pub(crate) fn shift(m: M, a: u128, c: u64) -> Option<u128> {
    Some(match m {
        M::Psllw => map16(a, 0, |x, _| if c > 15 { 0 } else { x << c }),
        M::Psrlw => map16(a, 0, |x, _| if c > 15 { 0 } else { x >> c }),
        M::Psraw => map16(a, 0, |x, _| ((x as i16) >> c.min(15)) as u16),
        M::Pslld => map32(a, 0, |x, _| if c > 31 { 0 } else { x << c }),
        M::Psrld => map32(a, 0, |x, _| if c > 31 { 0 } else { x >> c }),
        M::Psrad => map32(a, 0, |x, _| ((x as i32) >> c.min(31)) as u32),
        M::Psllq => map64(a, 0, |x, _| if c > 63 { 0 } else { x << c }),
        M::Psrlq => map64(a, 0, |x, _| if c > 63 { 0 } else { x >> c }),
        M::Pslldq => {
            if c > 15 {
                0
            } else {
                a << (c * 8)
            }
        }
        M::Psrldq => {
            if c > 15 {
                0
            } else {
                a >> (c * 8)
            }
        }
        _ => return None,
    })
}

impl Cpu {
    pub(super) fn simd_integer(&mut self, ins: &Instruction) -> R<bool> {
        let m = ins.mnemonic();
        if m == M::Ptest {
            let a = self.vget(self.vop(ins, 0));
            let b = self.vread(ins, 1)?;
            let f = if a & b == 0 { ZF } else { 0 } | if !a & b == 0 { CF } else { 0 };
            self.set_status(STATUS, f);
            return Ok(true);
        }
        let d = self.vop(ins, 0);
        let w = d.width();
        if matches!(ins.op1_kind(), OpKind::Immediate8) {
            let a = self.vget(d);
            return match shift(m, a, ins.immediate8() as u64) {
                Some(r) => {
                    self.vset(d, r);
                    Ok(true)
                }
                None => Ok(false),
            };
        }
        if ins.op_count() != 2 {
            return Ok(false);
        }
        // Reached only for mnemonics no other family claims (see `family`).
        let b = self.vread(ins, 1)?;
        let a = self.vget(d);
        let r = match shift(m, a, b as u64) {
            Some(r) => r,
            None => match binary(m, a, b, w) {
                Some(r) => r,
                None => return Ok(false),
            },
        };
        self.vset(d, r);
        Ok(true)
    }

    /// CRC32 r32/r64, r/m8..64: CRC-32C of the source bytes, continuing from the destination.
    pub(super) fn crc32(&mut self, ins: &Instruction) -> R<()> {
        let n = self.op_size(ins, 1) as usize;
        let v = self.rd(ins, 1)?;
        let mut c = self.rd(ins, 0)? as u32;
        for i in 0..n.min(8) {
            let byte = (v >> (8 * i)) as u8;
            c = (c >> 8) ^ CRC_TABLE[((c as u8) ^ byte) as usize];
        }
        self.wr(ins, 0, c as u64)
    }
}
