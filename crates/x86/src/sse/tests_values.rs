//! The state of one SSE differential case and the random operands it starts from, drawn
//! heavily from special values.

// Only the x86-64 differential test uses these.
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]

use super::tests_forms::{Data, Form};

/// The state one case starts from and ends with.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) struct State {
    pub xmm: [u128; 16],
    /// x87 registers (80 bits each) = MMX registers in the low 64.
    pub st: [u128; 8],
    pub mxcsr: u32,
    pub ftw: u8,
    pub top: u8,
    /// rax, rcx, rdx.
    pub gpr: [u64; 3],
    /// The status flags.
    pub flags: u64,
    pub mem: [u8; 32],
}

pub(super) const STATUS: u64 = 0x8d5;
pub(super) const DATA: u64 = 0x3000;

/// The differential harness's generator, with the draws of this test.
pub(super) use crate::difftest::Rng;

impl Rng {
    /// A single drawn heavily from special values.
    fn f32(&mut self) -> u32 {
        let r = self.next();
        let s = ((r >> 63) as u32) << 31;
        let m = (r >> 8) as u32 & 0x7f_ffff;
        match r % 12 {
            0 => {
                [
                    0,
                    1,
                    0x7f_ffff,
                    0x80_0000,
                    0x7f7f_ffff,
                    0x7f80_0000,
                    0x7fc0_0000,
                    0x7fa0_0001,
                    0x3f80_0000,
                    0x4f00_0000,
                    0x5f00_0000,
                    0x4b00_0000,
                ][(r >> 20) as usize % 12]
                    | s
            }
            1 => s | m,                                                     // denormal
            2 => s | 0x7f80_0000 | m | 1,                                   // NaN with payload
            3 => s | ((127 + (r >> 40) % 40) << 23) as u32 | m & 0x7f_0000, // near integers
            4 => s | (((r >> 40) % 6) as u32) << 23 | m,                    // tiny normals
            5 => s | ((0xfe - (r >> 40) % 4) << 23) as u32 | m,             // huge
            6 => s | 0x3f00_0000 | (m & 0x40_0003),                         // halves
            7 => s | ((120 + (r >> 40) % 16) << 23) as u32 | m,
            // Few significant bits: exact and exactly-halfway results.
            8 => s | ((100 + (r >> 40) % 60) << 23) as u32 | (m & 0x70_0001),
            _ => r as u32,
        }
    }

    fn f64(&mut self) -> u64 {
        let r = self.next();
        let s = r & (1 << 63);
        let m = self.next() & ((1 << 52) - 1);
        match r % 12 {
            0 => {
                [
                    0,
                    1,
                    (1 << 52) - 1,
                    1 << 52,
                    0x7fef_ffff_ffff_ffff,
                    0x7ff0 << 48,
                    0x7ff8 << 48,
                    0x7ff4_0000_0000_0001,
                    0x3ff0 << 48,
                    0x41e0 << 48,
                    0x43e0 << 48,
                    0x4330 << 48,
                ][(r >> 20) as usize % 12]
                    | s
            }
            1 => s | m,
            2 => s | (0x7ff << 52) | m | 1,
            3 => s | ((1023 + (r >> 40) % 70) << 52) | (m & (0xff << 44)),
            4 => s | (((r >> 40) % 6) << 52) | m,
            5 => s | ((0x7fe - (r >> 40) % 4) << 52) | m,
            6 => s | (0x3fe << 52) | (m & ((1 << 51) | 3)),
            7 => s | ((0x380 + (r >> 40) % 16) << 52) | m,
            8 => s | ((0x36a + (r >> 40) % 8) << 52) | m,
            9 => s | ((0x3c0 + (r >> 40) % 100) << 52) | (m & (0xe << 48 | 1)),
            _ => r,
        }
    }

    fn int(&mut self) -> u64 {
        let r = self.next();
        match r % 8 {
            0 => [0, 1, u64::MAX, 0x8000_0000, 0x7fff_ffff, 0x8000_0000_0000_0000, 0x80, 0x7fff]
                [(r >> 8) as usize % 8],
            1 => r >> 56,
            2 => (r >> 32) as i32 as i64 as u64,
            3 => r & 0x8080_8080_8080_8080,
            _ => self.next(),
        }
    }

    /// A vector of `data` lanes; `like` (another operand) is sometimes echoed nearby.
    fn vector(&mut self, data: Data, like: Option<u128>) -> u128 {
        if let Some(l) = like {
            match self.below(6) {
                0 => return l,
                1 => return l ^ (self.below(4) as u128) ^ ((self.below(4) as u128) << 64),
                _ => {}
            }
        }
        match data {
            Data::F32 => (0..4).fold(0, |a, i| a | (self.f32() as u128) << (32 * i)),
            Data::F64 => self.f64() as u128 | (self.f64() as u128) << 64,
            Data::Int => self.int() as u128 | (self.int() as u128) << 64,
            Data::Str => {
                let alpha = 1 + self.below(4) as u8;
                let zero_at = self.below(20) as usize;
                let mut b = [0u8; 16];
                for (i, x) in b.iter_mut().enumerate() {
                    *x = if i == zero_at { 0 } else { b'a' + (self.next() as u8) % alpha };
                }
                if self.below(3) == 0 {
                    b.iter_mut().for_each(|x| *x |= 0x80 * (self.next() as u8 & 1));
                }
                u128::from_le_bytes(b)
            }
        }
    }

    pub(super) fn state(&mut self, form: &Form) -> State {
        let d = form.data;
        let x1 = self.vector(d, None);
        let x2 = self.vector(d, Some(x1));
        let mut xmm: [u128; 16] = std::array::from_fn(|_| self.vector(d, None));
        xmm[1] = x1;
        xmm[2] = x2;
        let st = std::array::from_fn(|i| {
            let v = match i {
                1 => x1 as u64,
                2 => x2 as u64,
                _ => self.next(),
            };
            v as u128 | ((self.next() as u128 & 0xffff) << 64)
        });
        let rc = self.below(4) as u32;
        let mut mxcsr = 0x1f80 | rc << 13;
        if self.below(3) == 0 {
            mxcsr |= 0x40;
        }
        if self.below(3) == 0 {
            mxcsr |= 0x8000;
        }
        if self.below(4) == 0 {
            mxcsr |= self.below(64) as u32;
        }
        let mut mem = [0u8; 32];
        let mv = self.vector(d, Some(x1));
        mem[..16].copy_from_slice(&mv.to_le_bytes());
        mem[16..].copy_from_slice(&self.next().to_le_bytes().repeat(2));
        let gpr = if d == Data::Str {
            [self.below(20).wrapping_sub(2), self.int(), self.below(20).wrapping_sub(2)]
        } else {
            [self.int(), self.int(), self.int()]
        };
        State {
            xmm,
            st,
            mxcsr,
            ftw: if self.below(2) == 0 { 0 } else { 0xff },
            top: 0,
            gpr,
            flags: self.next() & STATUS,
            mem,
        }
    }
}
