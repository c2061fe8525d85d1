//! SSE4.2 string compares: PCMPESTRI, PCMPESTRM, PCMPISTRI, PCMPISTRM with every imm8
//! mode (element format, aggregation, polarity, index/mask output) and their flags.

use super::lanes::lane;
use crate::cpu::*;
use crate::flags::{CF, OF, SF, STATUS, ZF};
use iced_x86::{Code, Instruction, Mnemonic as M};

/// The result of one string compare: IntRes2 and the two lengths.
struct Outcome {
    res: u32,
    la: usize,
    lb: usize,
}

/// Compares the needle `a` (operand 1) with the haystack `b` (operand 2) of lengths `la`,
/// `lb` (elements) under control `imm`.
fn compare(a: u128, b: u128, la: usize, lb: usize, imm: u8) -> Outcome {
    let words = imm & 1 != 0;
    let signed = imm & 2 != 0;
    let n = if words { 8 } else { 16 };
    let bits = if words { 16 } else { 8 };
    let el = |v: u128, i: usize| -> i64 {
        let x = lane(v, bits, i);
        match (signed, words) {
            (true, true) => x as u16 as i16 as i64,
            (true, false) => x as u8 as i8 as i64,
            _ => x as i64,
        }
    };
    let mut res1 = 0u32;
    match (imm >> 2) & 3 {
        // Equal any: b[j] is one of a's elements.
        0 => {
            for j in 0..lb {
                if (0..la).any(|i| el(a, i) == el(b, j)) {
                    res1 |= 1 << j;
                }
            }
        }
        // Ranges: a holds (low, high) pairs.
        1 => {
            for j in 0..lb {
                let y = el(b, j);
                let mut i = 0;
                while i + 1 < la {
                    if el(a, i) <= y && y <= el(a, i + 1) {
                        res1 |= 1 << j;
                        break;
                    }
                    i += 2;
                }
            }
        }
        // Equal each: element by element; both past their ends compare true.
        2 => {
            for j in 0..n {
                let t = match (j < la, j < lb) {
                    (true, true) => el(a, j) == el(b, j),
                    (false, false) => true,
                    _ => false,
                };
                if t {
                    res1 |= 1 << j;
                }
            }
        }
        // Equal ordered: the needle a starts at b[j] (a's end matches anything).
        _ => {
            for j in 0..n {
                let mut t = true;
                for i in 0..n - j {
                    let k = j + i;
                    if i >= la {
                        break;
                    }
                    if k >= lb || el(a, i) != el(b, k) {
                        t = false;
                        break;
                    }
                }
                if t {
                    res1 |= 1 << j;
                }
            }
        }
    }
    let all = (1u32 << n) - 1;
    let valid = (1u32 << lb) - 1;
    let res = match (imm >> 4) & 3 {
        1 => !res1 & all,
        3 => (res1 ^ valid) & all,
        _ => res1,
    };
    Outcome { res, la, lb }
}

/// Length of an implicit (zero-terminated) string of `n` elements.
fn implicit_len(v: u128, n: usize, bits: u32) -> usize {
    (0..n).find(|&i| lane(v, bits, i) == 0).unwrap_or(n)
}

/// Length of an explicit string: |reg| saturated to `n`.
fn explicit_len(reg: u64, wide: bool, n: usize) -> usize {
    let v = if wide { reg as i64 } else { reg as u32 as i32 as i64 };
    (v.unsigned_abs()).min(n as u64) as usize
}

impl Cpu {
    pub(super) fn simd_strcmp(&mut self, ins: &Instruction) -> R<bool> {
        let m = ins.mnemonic();
        if !matches!(
            m,
            M::Pcmpestri | M::Pcmpestrm | M::Pcmpistri | M::Pcmpistrm | M::Pcmpestri64 | M::Pcmpestrm64
        ) {
            return Ok(false);
        }
        let imm = ins.immediate8();
        let a = self.vget(self.vop(ins, 0));
        let b = self.vread(ins, 1)?;
        let wide =
            matches!(ins.code(), Code::Pcmpestri64_xmm_xmmm128_imm8 | Code::Pcmpestrm64_xmm_xmmm128_imm8);
        self.strcmp_op(m, wide, a, b, imm);
        Ok(true)
    }

    /// PCMPESTRI/ESTRM/ISTRI/ISTRM (`m`; `wide`: the REX.W forms' 64-bit lengths) of `a`
    /// and `b` with control `imm`: ECX or XMM0, and the flags.
    #[inline]
    pub(crate) fn strcmp_op(&mut self, m: M, wide: bool, a: u128, b: u128, imm: u8) {
        let words = imm & 1 != 0;
        let (n, bits) = if words { (8, 16) } else { (16, 8) };
        let m = match m {
            M::Pcmpestri64 => M::Pcmpestri,
            M::Pcmpestrm64 => M::Pcmpestrm,
            m => m,
        };
        let (la, lb) = if matches!(m, M::Pcmpestri | M::Pcmpestrm) {
            (explicit_len(self.regs[0], wide, n), explicit_len(self.regs[2], wide, n))
        } else {
            (implicit_len(a, n, bits), implicit_len(b, n, bits))
        };
        let o = compare(a, b, la, lb, imm);
        if matches!(m, M::Pcmpestri | M::Pcmpistri) {
            let idx = if o.res == 0 {
                n as u32
            } else if imm & 0x40 != 0 {
                31 - o.res.leading_zeros()
            } else {
                o.res.trailing_zeros()
            };
            self.regs[1] = idx as u64;
        } else if imm & 0x40 != 0 {
            // Expanded to a byte/word mask.
            let mut r = 0u128;
            for i in 0..n {
                if o.res >> i & 1 != 0 {
                    r |= ((1u128 << bits) - 1) << (i * bits as usize);
                }
            }
            self.fpu.xmm[0] = r;
        } else {
            self.fpu.xmm[0] = o.res as u128;
        }
        let mut fl = 0;
        if o.res != 0 {
            fl |= CF;
        }
        if o.lb < n {
            fl |= ZF;
        }
        if o.la < n {
            fl |= SF;
        }
        if o.res & 1 != 0 {
            fl |= OF;
        }
        self.set_status(STATUS, fl);
    }
}
