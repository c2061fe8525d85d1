//! Threaded handlers for the hot SSE forms on XMM registers: whole and partial moves
//! (MOVDQA/MOVDQU/MOVAPS/MOVUPS/MOVQ/MOVD/MOVSD/MOVSS/MOVLPS/MOVHPS...), MOVD/MOVQ to and from
//! general registers, PMOVMSKB, the lane-wise integer operations, logic, shuffles and shifts
//! by an immediate, the packed and scalar ADD/SUB/MUL/DIV, the compares and the scalar
//! conversions.
//!
//! A handler runs only the common case: SSE enabled (no #UD or #NM due) and its memory
//! operand in RAM through the TLB, inside one page and aligned where the form requires it.
//! Anything else goes to the exact path (`Cpu::exec` on the instruction the op keeps), which
//! raises the fault or does the slow access. The operations themselves are the exact code's
//! (`sse::binary`, `sse::arith64`...), with the mnemonic a constant; float results and
//! MXCSR flags come from the same soft-float code, so an unmasked exception faults here as
//! it does there, with the destination unchanged. `fast_sse_pick` chooses them at decode time.

use crate::block::{next, step, step_mem, Op, Step};
use crate::cpu::{load, store, ud, Cpu, CR0_EM, CR0_TS, CR4_OSFXSR};
use crate::exec::Flow;
use crate::sse::{arith32, arith64, movmskb, FpOp, F32, F64};
use iced_x86::Mnemonic as M;

/// Source kinds: an XMM register (`Op::s`), or memory of 16 bytes aligned, 16 bytes, 8 or 4.
pub(crate) const REG: u8 = 0;
pub(crate) const M16A: u8 = 1;
pub(crate) const M16: u8 = 2;
pub(crate) const M8: u8 = 3;
pub(crate) const M4: u8 = 4;
/// No source (the operation takes the immediate): PSRLDQ and the other shifts by imm8.
pub(crate) const NONE: u8 = 5;
/// A general register (`Op::s`).
pub(crate) const GPR: u8 = 6;

/// How a move writes its XMM destination: the whole register, the source zero-extended
/// from 64 or 32 bits, or only the low 64 or 32 bits (the rest kept).
pub(crate) const FULL: u8 = 0;
pub(crate) const ZX64: u8 = 1;
pub(crate) const ZX32: u8 = 2;
pub(crate) const LO64: u8 = 3;
pub(crate) const LO32: u8 = 4;
/// The low 64 bits of the source into the high half (MOVHPS load, MOVLHPS).
pub(crate) const HI64: u8 = 5;
/// The high half of the source into the low half (MOVHLPS).
pub(crate) const HL: u8 = 6;

/// Whether SSE instructions run now: no CR0.EM, CR0.TS and CR4.OSFXSR set.
#[inline(always)]
fn sse_on(c: &Cpu) -> bool {
    c.cr0 & (CR0_EM | CR0_TS) == 0 && c.cr4 & CR4_OSFXSR != 0
}

/// The exact path: `Cpu::exec` on the instruction, for faults, TLB misses, page crossings
/// and disabled SSE. (SSE instructions never change the mode, so nothing ends the block.)
#[inline(never)]
fn exact(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        c.cur_ip = op.ip(c.bitness);
        c.rip = op.next;
        let Some(ins) = &op.ins else { return Err(ud()) };
        c.exec(ins)
    })
}

/// The source operand of kind `S`, when the fast path can read it.
#[inline(always)]
fn src<const S: u8>(c: &Cpu, op: &Op) -> Option<u128> {
    if S == REG {
        return Some(c.fpu.xmm[op.s as usize & 15]);
    }
    if S == NONE {
        return Some(0);
    }
    if S == GPR {
        return Some(c.regs[op.s as usize & 15] as u128);
    }
    let lin = c.op_lin(op);
    let n = match S {
        M16A | M16 => 16,
        M8 => 8,
        _ => 4,
    };
    if S == M16A && lin & 15 != 0 {
        return None;
    }
    let p = c.read_ptr(lin, n)?;
    if n == 16 {
        // SAFETY: `read_ptr` gives 16 readable bytes.
        return Some(u128::from_le_bytes(unsafe { std::ptr::read_unaligned(p as *const [u8; 16]) }));
    }
    // SAFETY: `read_ptr` gives `n` readable bytes.
    Some(unsafe { load(p, n) } as u128)
}

/// A move into XMM `d` from source `S`, written as `K` says.
pub(crate) fn mov_x<const K: u8, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if sse_on(c) {
        if let Some(v) = src::<S>(c, op) {
            let d = op.d as usize & 15;
            let old = c.fpu.xmm[d];
            let lo64 = u64::MAX as u128;
            let lo32 = u32::MAX as u128;
            c.fpu.xmm[d] = match K {
                FULL => v,
                ZX64 => v & lo64,
                ZX32 => v & lo32,
                LO64 => (old & !lo64) | (v & lo64),
                LO32 => (old & !lo32) | (v & lo32),
                HI64 => (old & lo64) | (v << 64),
                _ => (old & !lo64) | (v >> 64),
            };
            return next(c, op);
        }
    }
    exact(c, op)
}

/// A store of the low `N` bytes of XMM `s`; `A`: the address must be 16-byte aligned.
pub(crate) fn store_x<const N: usize, const A: bool>(c: &mut Cpu, op: &Op) -> Step {
    store_part::<N, A, false>(c, op)
}

/// MOVHPS/MOVHPD m64, xmm: a store of the high half of XMM `s`.
pub(crate) fn store_hi(c: &mut Cpu, op: &Op) -> Step {
    store_part::<8, false, true>(c, op)
}

/// A store of `N` bytes of XMM `s` (from its high half: `HI`); `A`: aligned.
#[inline(always)]
fn store_part<const N: usize, const A: bool, const HI: bool>(c: &mut Cpu, op: &Op) -> Step {
    if sse_on(c) {
        let lin = c.op_lin(op);
        if !(A && lin & 15 != 0) {
            if let Some(p) = c.write_ptr(lin, N) {
                let x = c.fpu.xmm[op.s as usize & 15];
                let v = if HI { x >> 64 } else { x };
                // SAFETY: `write_ptr` gives N writable bytes of a page without decoded code.
                unsafe {
                    if N == 16 {
                        std::ptr::write_unaligned(p as *mut [u8; 16], v.to_le_bytes());
                    } else {
                        store(p, N, v as u64);
                    }
                }
                return next(c, op);
            }
        }
    }
    exact(c, op)
}

/// MOVD/MOVQ xmm, r32/r64: the register zero-extended.
pub(crate) fn gpr_to_x<const N: u8>(c: &mut Cpu, op: &Op) -> Step {
    if !sse_on(c) {
        return exact(c, op);
    }
    step(c, op, |c| {
        let v = c.regs[op.s as usize & 15];
        c.fpu.xmm[op.d as usize & 15] = if N == 4 { v as u32 as u128 } else { v as u128 };
        Ok(Flow::Next)
    })
}

/// MOVD/MOVQ r32/r64, xmm (a 32-bit write clears the upper half) and PMOVMSKB (`MSK`).
pub(crate) fn x_to_gpr<const N: u8, const MSK: bool>(c: &mut Cpu, op: &Op) -> Step {
    if !sse_on(c) {
        return exact(c, op);
    }
    step(c, op, |c| {
        let x = c.fpu.xmm[op.s as usize & 15];
        let v = if MSK { movmskb(x, 16) } else { x as u64 };
        c.set_reg(op.d as usize & 15, N, v);
        Ok(Flow::Next)
    })
}

/// A lane-wise operation of the exact code with its mnemonic fixed.
pub(crate) trait Lanes {
    fn run(a: u128, b: u128, imm: u8) -> u128;
}

/// XMM `d` = `L(d, source S)`.
pub(crate) fn lanes<L: Lanes, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if sse_on(c) {
        if let Some(b) = src::<S>(c, op) {
            let d = op.d as usize & 15;
            c.fpu.xmm[d] = L::run(c.fpu.xmm[d], b, op.imm as u8);
            return next(c, op);
        }
    }
    exact(c, op)
}

/// Float ADD/SUB/MUL/DIV (`K`: 0-3), double (`D`) or single, packed (`P`) or scalar.
pub(crate) fn fp<const K: u8, const D: bool, const P: bool, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if sse_on(c) {
        if let Some(b) = src::<S>(c, op) {
            return step(c, op, |c| {
                let d = op.d as usize & 15;
                let a = c.fpu.xmm[d];
                let o = match K {
                    0 => FpOp::Add,
                    1 => FpOp::Sub,
                    2 => FpOp::Mul,
                    _ => FpOp::Div,
                };
                let mut env = c.fp_env();
                let r = if D { arith64(&mut env, o, P, a, b) } else { arith32(&mut env, o, P, a, b) };
                c.fp_commit(&env)?;
                c.fpu.xmm[d] = r;
                Ok(Flow::Next)
            });
        }
    }
    exact(c, op)
}

/// An operation of the exact code with its mnemonic fixed (the float family, PCMPxSTRx).
pub(crate) trait FloatOp {
    const M: M;
}

/// XMM `d` = float operation `F` of `d` and source `S` (SQRT, MIN, MAX...).
pub(crate) fn float<F: FloatOp, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if sse_on(c) {
        if let Some(b) = src::<S>(c, op) {
            return step(c, op, |c| {
                let d = op.d as usize & 15;
                let r = c.float_op(F::M, c.fpu.xmm[d], b, op.imm as u8)?;
                c.fpu.xmm[d] = r;
                Ok(Flow::Next)
            });
        }
    }
    exact(c, op)
}

/// PCMPxSTRx (`F::M`; `WIDE`: the REX.W forms) of XMM `d` and source `S`, control `Op::imm`.
pub(crate) fn strcmp<F: FloatOp, const WIDE: bool, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if sse_on(c) {
        if let Some(b) = src::<S>(c, op) {
            let a = c.fpu.xmm[op.d as usize & 15];
            c.strcmp_op(F::M, WIDE, a, b, op.imm as u8);
            return next(c, op);
        }
    }
    exact(c, op)
}

/// (U)COMISS/SD: double (`D`), signaling (`SIG`: COMIS*), from source `S`.
pub(crate) fn comi<const D: bool, const SIG: bool, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if sse_on(c) {
        if let Some(b) = src::<S>(c, op) {
            return step(c, op, |c| {
                let a = c.fpu.xmm[op.d as usize & 15];
                c.comi(if D { F64 } else { F32 }, SIG, a, b)?;
                Ok(Flow::Next)
            });
        }
    }
    exact(c, op)
}

/// CMPPS/PD/SS/SD with the predicate in `Op::imm`: double (`D`), packed (`P`).
pub(crate) fn cmp<const D: bool, const P: bool, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if sse_on(c) {
        if let Some(b) = src::<S>(c, op) {
            return step(c, op, |c| {
                let d = op.d as usize & 15;
                let n = if !P {
                    1
                } else if D {
                    2
                } else {
                    4
                };
                let r = c.cmp_lanes(if D { F64 } else { F32 }, n, op.imm as u8, c.fpu.xmm[d], b)?;
                c.fpu.xmm[d] = r;
                Ok(Flow::Next)
            });
        }
    }
    exact(c, op)
}

/// CVT(T)SS2SI/SD2SI (`K`: 0-3 in that order: SS2SI, TSS2SI, SD2SI, TSD2SI) into a general
/// register of `N` bytes, from source `S`.
pub(crate) fn cvt_si<const K: u8, const N: u8, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if sse_on(c) {
        if let Some(b) = src::<S>(c, op) {
            return step(c, op, |c| {
                let m = match K {
                    0 => M::Cvtss2si,
                    1 => M::Cvttss2si,
                    2 => M::Cvtsd2si,
                    _ => M::Cvttsd2si,
                };
                let v = c.cvt_to_int(m, b, N as u32 * 8)?;
                c.set_reg(op.d as usize & 15, N, v);
                Ok(Flow::Next)
            });
        }
    }
    exact(c, op)
}

/// CVTSI2SD (`D`) or CVTSI2SS from an integer of `N` bytes in source `S` (GPR, M4, M8).
pub(crate) fn cvt_from_si<const D: bool, const N: u8, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if sse_on(c) {
        if let Some(b) = src::<S>(c, op) {
            return step(c, op, |c| {
                let v = if N == 8 { b as u64 as i64 } else { b as u32 as i32 as i64 };
                let d = op.d as usize & 15;
                let r = c.cvt_from_int(D, c.fpu.xmm[d], v)?;
                c.fpu.xmm[d] = r;
                Ok(Flow::Next)
            });
        }
    }
    exact(c, op)
}

/// CVTSS2SD (`TO_D`) or CVTSD2SS from source `S`.
pub(crate) fn cvt_fp<const TO_D: bool, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if sse_on(c) {
        if let Some(b) = src::<S>(c, op) {
            return step(c, op, |c| {
                let d = op.d as usize & 15;
                let m = if TO_D { M::Cvtss2sd } else { M::Cvtsd2ss };
                let r = c.cvt_lanes(m, c.fpu.xmm[d], b)?;
                c.fpu.xmm[d] = r;
                Ok(Flow::Next)
            });
        }
    }
    exact(c, op)
}
