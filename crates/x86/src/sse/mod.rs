//! SSE through SSE4.2 and MMX: the legacy (non-VEX) encodings, split by family. This file
//! routes an instruction to its family and holds the vector operand access they share.

mod compare;
mod convert;
mod family;
mod fastfp;
mod float;
mod integer;
mod lanes;
mod mmx;
mod moves;
mod mxcsr;
mod rounding;
mod shuffle;
pub(crate) mod softfloat;
mod strcmp;

use crate::cpu::*;
use crate::exec::Flow;
use family::Fam;
use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};

// The exact code's operations, for the threaded handlers of the hot forms (`fast_sse`).
pub(crate) use float::{arith32, arith64};
pub(crate) use integer::binary;
pub(crate) use integer::shift;
pub(crate) use moves::movmskb;
pub(crate) use shuffle::shuffle;
pub(crate) use softfloat::{Op as FpOp, F32, F64};

/// A vector register: XMM n or MMX n (the low 64 bits of x87 physical register n).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum V {
    X(usize),
    M(usize),
}

impl V {
    /// Width in bytes.
    pub fn width(self) -> usize {
        match self {
            V::X(_) => 16,
            V::M(_) => 8,
        }
    }
}

pub(crate) fn vreg(r: Register) -> Option<V> {
    if r.is_xmm() {
        Some(V::X((r as usize - Register::XMM0 as usize) & 15))
    } else if r.is_mm() {
        Some(V::M((r as usize - Register::MM0 as usize) & 7))
    } else {
        None
    }
}

/// Legacy SSE operands of 16 bytes in memory must be aligned, except for these.
fn unaligned_ok(m: M) -> bool {
    matches!(
        m,
        M::Movups
            | M::Movupd
            | M::Movdqu
            | M::Lddqu
            | M::Pcmpestri
            | M::Pcmpestrm
            | M::Pcmpistri
            | M::Pcmpistrm
            | M::Pcmpestri64
            | M::Pcmpestrm64
    )
}

impl Cpu {
    pub(crate) fn vget(&self, v: V) -> u128 {
        match v {
            V::X(i) => self.fpu.xmm[i & 15],
            V::M(i) => self.fpu.st[i & 7] as u64 as u128,
        }
    }

    /// Writes a vector register; an MMX write sets the x87 register's exponent to all ones.
    pub(crate) fn vset(&mut self, v: V, x: u128) {
        match v {
            V::X(i) => self.fpu.xmm[i & 15] = x,
            V::M(i) => self.fpu.st[i & 7] = (x as u64 as u128) | (0xffffu128 << 64),
        }
    }

    /// The vector register operand `i` (operand 0 of every SSE instruction with one).
    pub(crate) fn vop(&self, ins: &Instruction, i: u32) -> V {
        vreg(ins.op_register(i)).unwrap_or(V::X(0))
    }

    fn vmem_addr(&mut self, ins: &Instruction) -> R<(usize, u64, usize)> {
        let seg = self.mem_seg(ins);
        let ea = self.ea(ins);
        let size = ins.memory_size().size();
        if size == 16 {
            let lin = self.lin(seg, ea);
            // Misalignment is #GP(0) whatever the segment, before the canonical check.
            if !unaligned_ok(ins.mnemonic()) && lin & 15 != 0 {
                return Err(gp(0));
            }
            // A span that leaves the canonical range faults before any byte is read.
            if self.long_mode() && !(canonical(lin) && canonical(lin.wrapping_add(15))) {
                return Err(if seg == SS { on_stack(gp(0)) } else { gp(0) });
            }
        }
        Ok((seg, ea, size))
    }

    /// Reads operand `i`: a vector register, a general register (zero-extended), memory of
    /// the operand's size, or an immediate.
    pub(crate) fn vread(&mut self, ins: &Instruction, i: u32) -> R<u128> {
        match ins.op_kind(i) {
            OpKind::Register => {
                let r = ins.op_register(i);
                Ok(match vreg(r) {
                    Some(v) => self.vget(v),
                    None => self.get_reg(r) as u128,
                })
            }
            OpKind::Memory => {
                let (seg, ea, size) = self.vmem_addr(ins)?;
                if size == 16 {
                    let lo = self.read(seg, ea, 8)?;
                    let hi = self.read(seg, ea.wrapping_add(8), 8)?;
                    Ok(lo as u128 | ((hi as u128) << 64))
                } else {
                    Ok(self.read(seg, ea, size.clamp(1, 8))? as u128)
                }
            }
            _ => Ok(self.rd(ins, i)? as u128),
        }
    }

    /// Writes operand `i` (a vector or general register, or memory of the operand's size).
    pub(crate) fn vwrite(&mut self, ins: &Instruction, i: u32, x: u128) -> R<()> {
        match ins.op_kind(i) {
            OpKind::Register => {
                let r = ins.op_register(i);
                match vreg(r) {
                    Some(v) => self.vset(v, x),
                    None => self.put_reg(r, x as u64),
                }
                Ok(())
            }
            OpKind::Memory => {
                let (seg, ea, size) = self.vmem_addr(ins)?;
                if size == 16 {
                    let lin = self.lin(seg, ea);
                    self.probe_write(lin, 16).map_err(|f| if seg == SS { on_stack(f) } else { f })?;
                    self.write(seg, ea, 8, x as u64)?;
                    self.write(seg, ea.wrapping_add(8), 8, (x >> 64) as u64)
                } else {
                    self.write(seg, ea, size.clamp(1, 8), x as u64)
                }
            }
            _ => Ok(()),
        }
    }

    fn sse_check(&self) -> R<()> {
        if self.cr0 & CR0_EM != 0 || self.cr4 & CR4_OSFXSR == 0 {
            return Err(ud());
        }
        if self.cr0 & CR0_TS != 0 {
            return Err(Fault::Exc(NM, None));
        }
        Ok(())
    }

    /// x87, MMX, SSE and the state-saving instructions: routed by the CPUID feature that
    /// iced-x86 says each instruction needs.
    pub(crate) fn exec_fpu_sse(&mut self, ins: &Instruction) -> R<Flow> {
        use iced_x86::CpuidFeature as F;
        let (mut x87, mut simd) = (false, false);
        for f in ins.cpuid_features() {
            match f {
                F::FPU | F::FPU287 | F::FPU387 | F::FXSR => x87 = true,
                F::MMX | F::SSE | F::SSE2 | F::SSE3 | F::SSSE3 | F::SSE4_1 | F::SSE4_2 => simd = true,
                _ => {}
            }
        }
        if x87 {
            return self.exec_x87(ins);
        }
        if ins.encoding() != iced_x86::EncodingKind::Legacy {
            // VEX/EVEX forms are not promised by CPUID.
            return self.unimplemented(ins);
        }
        match ins.mnemonic() {
            M::Ldmxcsr | M::Stmxcsr => {
                self.sse_check()?;
                self.ldst_mxcsr(ins)?;
                return Ok(Flow::Next);
            }
            M::Emms => {
                // All registers empty, and TOP 0 as after any MMX instruction.
                self.mmx_check()?;
                self.fpu.ftw = 0;
                self.fpu.top = 0;
                return Ok(Flow::Next);
            }
            M::Crc32 => {
                self.crc32(ins)?;
                return Ok(Flow::Next);
            }
            M::Movnti => {
                // An integer store: none of the FPU/SSE enable checks apply.
                let v = self.rd(ins, 1)?;
                self.wr(ins, 0, v)?;
                return Ok(Flow::Next);
            }
            _ => {}
        }
        if !simd {
            return self.unimplemented(ins);
        }
        let (mut mm, mut xmm) = (false, false);
        for i in 0..ins.op_count() {
            if ins.op_kind(i) == OpKind::Register {
                mm |= ins.op_register(i).is_mm();
                xmm |= ins.op_register(i).is_xmm();
            }
        }
        // MMX-register instructions follow MMX's checks, those with an XMM register too
        // (CVTPI2PS...) SSE's first; the others, SSE's.
        if mm {
            if xmm {
                self.sse_check()?;
            }
            self.mmx_check()?;
        } else {
            self.sse_check()?;
        }
        let r = match family::family(ins.mnemonic()) {
            Fam::Moves => self.simd_moves(ins),
            Fam::Float => self.simd_float(ins),
            Fam::Convert => self.simd_convert(ins),
            Fam::Compare => self.simd_compare(ins),
            Fam::Shuffle => self.simd_shuffle(ins),
            Fam::Strcmp => self.simd_strcmp(ins),
            Fam::Mmx => self.simd_mmx(ins),
            Fam::Integer => self.simd_integer(ins),
        };
        // The switch to MMX mode: done by an instruction that completes or raises a SIMD
        // floating-point exception (#XM, or #UD in its place), not by one whose memory
        // access faults, except MASKMOVQ (as the host CPU does).
        let store_first = ins.mnemonic() == M::Maskmovq;
        if mm && (store_first || matches!(r, Ok(true) | Err(Fault::Exc(mxcsr::XM | UD, _)))) {
            self.mmx_enter();
        }
        if !r? {
            return self.unimplemented(ins);
        }
        Ok(Flow::Next)
    }

    pub(crate) fn sse_or_nm(&self) -> R<()> {
        if self.cr0 & CR0_TS != 0 {
            return Err(Fault::Exc(NM, None));
        }
        if self.cr0 & CR0_EM != 0 {
            return Err(ud());
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests_diff;
#[cfg(test)]
mod tests_forms;
#[cfg(all(test, target_arch = "x86_64"))]
#[allow(clippy::unwrap_used)]
mod tests_native;
#[cfg(test)]
mod tests_values;
