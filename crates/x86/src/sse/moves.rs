//! Data movement: whole-register and partial moves, MOVD/MOVQ, the non-temporal stores, the
//! duplicate moves of SSE3 and the sign-mask extractions.

use super::lanes::*;
use crate::cpu::*;
use iced_x86::{Instruction, Mnemonic as M, OpKind};

const LO64: u128 = u64::MAX as u128;

/// PMOVMSKB: the top bit of each of the `width` bytes of `v`.
#[inline]
pub(crate) fn movmskb(v: u128, width: usize) -> u64 {
    lanes8(v)[..width.min(16)].iter().enumerate().fold(0u64, |a, (i, b)| a | (((b >> 7) as u64) << i))
}

impl Cpu {
    pub(super) fn simd_moves(&mut self, ins: &Instruction) -> R<bool> {
        let m = ins.mnemonic();
        match m {
            M::Movaps
            | M::Movapd
            | M::Movdqa
            | M::Movntdq
            | M::Movntps
            | M::Movntpd
            | M::Movups
            | M::Movupd
            | M::Movdqu
            | M::Lddqu
            | M::Movntdqa
            | M::Movntq => {
                let v = self.vread(ins, 1)?;
                self.vwrite(ins, 0, v)?;
            }
            M::Movd | M::Movq => {
                let v = self.vread(ins, 1)?;
                let v = if self.op_size(ins, 1) >= 8 { v & LO64 } else { v & u32::MAX as u128 };
                // A vector destination is zero-extended; MOVQ mm, mm copies 64 bits.
                self.vwrite(ins, 0, v)?;
            }
            M::Movss | M::Movsd => {
                let lm: u128 = if m == M::Movss { u32::MAX as u128 } else { LO64 };
                let v = self.vread(ins, 1)?;
                if ins.op0_kind() == OpKind::Memory || ins.op1_kind() == OpKind::Memory {
                    self.vwrite(ins, 0, v & lm)?;
                } else {
                    let d = self.vop(ins, 0);
                    let x = self.vget(d);
                    self.vset(d, (x & !lm) | (v & lm));
                }
            }
            M::Movlps | M::Movlpd | M::Movhps | M::Movhpd => {
                let high = matches!(m, M::Movhps | M::Movhpd);
                if ins.op0_kind() == OpKind::Memory {
                    let v = self.vread(ins, 1)?;
                    let part = if high { v >> 64 } else { v & LO64 };
                    self.vwrite(ins, 0, part)?;
                } else {
                    let v = self.vread(ins, 1)? & LO64;
                    let d = self.vop(ins, 0);
                    let x = self.vget(d);
                    self.vset(d, if high { (x & LO64) | (v << 64) } else { (x & !LO64) | v });
                }
            }
            M::Movhlps | M::Movlhps => {
                let s = self.vread(ins, 1)?;
                let d = self.vop(ins, 0);
                let x = self.vget(d);
                self.vset(d, if m == M::Movhlps { (x & !LO64) | (s >> 64) } else { (x & LO64) | (s << 64) });
            }
            M::Movshdup | M::Movsldup => {
                let s = lanes32(self.vread(ins, 1)?);
                let o = if m == M::Movshdup { 1 } else { 0 };
                let d = self.vop(ins, 0);
                self.vset(d, from32([s[o], s[o], s[2 + o], s[2 + o]]));
            }
            M::Movddup => {
                let s = self.vread(ins, 1)? as u64;
                let d = self.vop(ins, 0);
                self.vset(d, from64([s, s]));
            }
            M::Pmovmskb | M::Movmskps | M::Movmskpd => {
                let s = self.vop(ins, 1);
                let v = self.vget(s);
                let r = match m {
                    M::Pmovmskb => movmskb(v, s.width()),
                    M::Movmskps => {
                        lanes32(v).iter().enumerate().fold(0u64, |a, (i, b)| a | (((b >> 31) as u64) << i))
                    }
                    _ => lanes64(v).iter().enumerate().fold(0u64, |a, (i, b)| a | ((b >> 63) << i)),
                };
                // The destination is a full register (a 32-bit one zero-extends).
                self.wr(ins, 0, r)?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}
