//! The x87 floating-point unit and the FXSAVE/FXRSTOR state image.
//!
//! `FpuState.st[i]` is physical register i (raw 80-bit value), `top` is TOP and `ftw` the
//! abridged tag (bit i: physical register i is not empty); MMX shares this layout.

mod arith;
mod convert;
mod float;
mod ops_arith;
mod ops_move;
mod probe;
mod qmath;
mod state;
mod trans;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_diff;
#[cfg(test)]
mod tests_gen;
#[cfg(test)]
mod tests_values;

use crate::cpu::*;
use crate::exec::Flow;
use float::DE;
use float::*;
use iced_x86::{Instruction, Mnemonic as M, OpKind, Register};

/// The #MF vector.
pub const MF: u8 = 16;
const CR0_NE: u64 = 1 << 5;
/// Status word bits.
pub const C0: u16 = 0x100;
pub const C1: u16 = 0x200;
pub const C2: u16 = 0x400;
pub const C3: u16 = 0x4000;
pub const ES: u16 = 0x80;
pub const B: u16 = 0x8000;

/// A control word as loaded: reserved bits 7 and 13-15 read as 0, bit 6 as 1.
pub(crate) fn fcw_bits(v: u16) -> u16 {
    (v & 0x1f3f) | 0x40
}

impl Cpu {
    /// The x87 instructions and FXSAVE/FXRSTOR.
    pub(crate) fn exec_x87(&mut self, ins: &Instruction) -> R<Flow> {
        let m = ins.mnemonic();
        if matches!(m, M::Fxsave | M::Fxsave64 | M::Fxrstor | M::Fxrstor64) {
            self.sse_or_nm()?;
            if matches!(m, M::Fxsave | M::Fxsave64) {
                self.fxsave(ins)?;
            } else {
                self.fxrstor(ins)?;
            }
            return Ok(Flow::Next);
        }
        self.fpu_x87_check()?;
        let control = matches!(
            m,
            M::Fninit
                | M::Fnclex
                | M::Fnstsw
                | M::Fnstcw
                | M::Fnstenv
                | M::Fnsave
                | M::Fneni
                | M::Fndisi
                | M::Fnsetpm
        );
        if !control {
            self.x87_pending()?;
        }
        match m {
            M::Fninit => self.fninit(),
            M::Fnclex => self.fpu.fsw &= 0x7f00,
            M::Fneni | M::Fndisi | M::Fnsetpm => {}
            M::Fnstsw => {
                let v = self.fsw() as u64;
                self.wr(ins, 0, v)?;
            }
            M::Fnstcw => {
                let v = self.fpu.fcw as u64;
                self.wr(ins, 0, v)?;
            }
            M::Fldcw => {
                self.fpu.fcw = fcw_bits(self.rd(ins, 0)? as u16);
                self.update_es();
            }
            M::Fnstenv => self.fnstenv(ins)?,
            M::Fldenv => self.fldenv(ins)?,
            M::Fnsave => self.fnsave(ins)?,
            M::Frstor => self.frstor(ins)?,
            _ => {
                self.x87_op(ins)?;
                self.x87_record(ins);
            }
        }
        Ok(Flow::Next)
    }

    /// FWAIT and every waiting x87 instruction: an unmasked exception left pending by an
    /// earlier instruction is raised now (#MF when CR0.NE is set).
    pub(crate) fn x87_pending(&self) -> R<()> {
        if self.fpu.fsw & ES != 0 && self.cr0 & CR0_NE != 0 {
            return Err(Fault::Exc(MF, None));
        }
        Ok(())
    }

    fn fninit(&mut self) {
        let f = &mut self.fpu;
        f.fcw = 0x37f;
        f.fsw = 0;
        f.ftw = 0;
        f.top = 0;
        f.fop = 0;
        f.fip = 0;
        f.fcs = 0;
        f.fdp = 0;
        f.fds = 0;
    }

    /// The status word with TOP.
    pub(crate) fn fsw(&self) -> u16 {
        (self.fpu.fsw & !0x3800) | ((self.fpu.top as u16 & 7) << 11)
    }

    /// ES and B follow the unmasked exception flags.
    pub(crate) fn update_es(&mut self) {
        if self.fpu.fsw & !self.fpu.fcw & 0x3f != 0 {
            self.fpu.fsw |= ES | B;
        } else {
            self.fpu.fsw &= !(ES | B);
        }
    }

    /// Records the last non-control instruction's address, opcode and data pointer.
    fn x87_record(&mut self, ins: &Instruction) {
        let ip = self.cur_ip;
        self.fpu.fip = ip;
        self.fpu.fcs = self.segs[CS].selector;
        let mut fop = 0;
        for i in 0..15u64 {
            let Ok(b) = self.read(CS, ip.wrapping_add(i), 1) else { break };
            if (0xd8..=0xdf).contains(&b) {
                let modrm = self.read(CS, ip.wrapping_add(i + 1), 1).unwrap_or(0);
                fop = (((b & 7) << 8) | modrm) as u16;
                break;
            }
        }
        self.fpu.fop = fop;
        if (0..ins.op_count()).any(|i| ins.op_kind(i) == OpKind::Memory) {
            self.fpu.fdp = self.ea(ins);
            self.fpu.fds = self.segs[self.mem_seg(ins)].selector;
        }
    }

    fn ctl(&self) -> Ctl {
        Ctl::from_fcw(self.fpu.fcw)
    }

    fn phys(&self, i: usize) -> usize {
        (self.fpu.top as usize + i) & 7
    }

    /// ST(i), or None when it is empty.
    fn st_get(&self, i: usize) -> Option<u128> {
        let p = self.phys(i);
        (self.fpu.ftw & (1 << p) != 0).then_some(self.fpu.st[p])
    }

    fn st_set(&mut self, i: usize, v: u128) {
        let p = self.phys(i);
        self.fpu.st[p] = v;
        self.fpu.ftw |= 1 << p;
    }

    fn x87_push(&mut self, v: u128) {
        self.fpu.top = self.fpu.top.wrapping_sub(1) & 7;
        self.st_set(0, v);
    }

    fn x87_pop(&mut self) {
        let t = self.fpu.top as usize & 7;
        self.fpu.ftw &= !(1 << t);
        self.fpu.top = (self.fpu.top + 1) & 7;
    }

    /// Whether a push would find ST(7) in use.
    fn push_overflows(&self) -> bool {
        self.st_get(7).is_some()
    }

    fn set_c1(&mut self, on: bool) {
        self.set_cc(C1, on);
    }

    fn set_cc(&mut self, bit: u16, on: bool) {
        if on {
            self.fpu.fsw |= bit;
        } else {
            self.fpu.fsw &= !bit;
        }
    }

    /// Sets exception flags; true when one of them is unmasked and stops the result
    /// (IE, DE, ZE).
    fn fp_raise(&mut self, flags: u16) -> bool {
        let f = flags & 0x7f;
        self.fpu.fsw |= f;
        let unmasked = f & !self.fpu.fcw & 0x3f;
        if unmasked != 0 {
            self.fpu.fsw |= ES | B;
        }
        let stop = unmasked & (IE | DE | ZE) != 0;
        if stop {
            self.set_c1(false);
        }
        stop
    }

    /// A stack underflow (an empty source): IE+SF with C1 clear; true when masked (the
    /// destination then gets the indefinite).
    fn stack_underflow(&mut self) -> bool {
        self.set_c1(false);
        !self.fp_raise(IE | SF)
    }

    /// A stack overflow (a push onto a full register): IE+SF with C1 set; true when masked.
    fn stack_overflow(&mut self) -> bool {
        let masked = !self.fp_raise(IE | SF);
        self.set_c1(true);
        masked
    }

    /// The register operand `i` of the instruction as a stack index.
    fn st_op(ins: &Instruction, i: u32) -> usize {
        (ins.op_register(i) as usize).wrapping_sub(Register::ST0 as usize) & 7
    }

    fn fpu_x87_check(&self) -> R<()> {
        if self.cr0 & (CR0_EM | CR0_TS) != 0 {
            return Err(Fault::Exc(NM, None));
        }
        Ok(())
    }

    /// The non-control x87 instructions.
    fn x87_op(&mut self, ins: &Instruction) -> R<()> {
        use M::*;
        match ins.mnemonic() {
            Fadd | Faddp | Fiadd | Fsub | Fsubp | Fisub | Fsubr | Fsubrp | Fisubr | Fmul | Fmulp | Fimul
            | Fdiv | Fdivp | Fidiv | Fdivr | Fdivrp | Fidivr => self.x87_arith(ins),
            Fcom | Fcomp | Fcompp | Fucom | Fucomp | Fucompp | Ficom | Ficomp | Ftst | Fcomi | Fcomip
            | Fucomi | Fucomip => self.x87_compare(ins),
            Fchs | Fabs | Fsqrt | Frndint | Fxam => self.x87_unary(ins),
            Fscale | Fprem | Fprem1 | Fxtract => self.x87_misc(ins),
            F2xm1 | Fyl2x | Fyl2xp1 | Fptan | Fpatan | Fsin | Fcos | Fsincos => self.x87_trans(ins),
            _ => self.x87_move(ins),
        }
    }
}
