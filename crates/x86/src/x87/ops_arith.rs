//! x87 arithmetic, comparison and the one-operand instructions.

use super::arith::{self, Res};
use super::float::*;
use super::{C0, C1, C2, C3};
use crate::cpu::*;
use crate::flags::{AF, CF, OF, PF, SF as SF_FLAG, ZF};
use iced_x86::{Instruction, MemorySize, Mnemonic as M, OpKind};
use std::cmp::Ordering;

impl Cpu {
    /// Reads the memory operand as an 80-bit value: (value, it was a denormal).
    pub(super) fn x87_mem_operand(&mut self, ins: &Instruction) -> R<(u128, bool)> {
        let seg = self.mem_seg(ins);
        let ea = self.ea(ins);
        Ok(match ins.memory_size() {
            MemorySize::Float32 => super::convert::float_to_ext(self.read(seg, ea, 4)?, F32),
            MemorySize::Float64 => super::convert::float_to_ext(self.read(seg, ea, 8)?, F64),
            MemorySize::Int16 => {
                (super::convert::int_to_ext(self.read(seg, ea, 2)? as u16 as i16 as i64), false)
            }
            MemorySize::Int32 => {
                (super::convert::int_to_ext(self.read(seg, ea, 4)? as u32 as i32 as i64), false)
            }
            MemorySize::Int64 => (super::convert::int_to_ext(self.read(seg, ea, 8)? as i64), false),
            _ => {
                let lo = self.read(seg, ea, 8)?;
                let hi = self.read(seg, ea.wrapping_add(8), 2)?;
                (lo as u128 | ((hi as u128) << 64), false)
            }
        })
    }

    /// Stores an arithmetic result in ST(dst) unless an unmasked exception stops it; pops
    /// when asked and the instruction completed.
    fn x87_finish(&mut self, dst: usize, r: Res, pop: bool) {
        if self.fp_raise(r.flags) {
            return;
        }
        self.st_set(dst, r.v);
        self.set_c1(r.up);
        if pop {
            self.x87_pop();
        }
    }

    pub(super) fn x87_arith(&mut self, ins: &Instruction) -> R<()> {
        use M::*;
        let m = ins.mnemonic();
        let (dst, a, b, de) = if ins.op_count() == 1 && ins.op0_kind() == OpKind::Memory {
            let (v, de) = self.x87_mem_operand(ins)?;
            (0, self.st_get(0), Some(v), de)
        } else {
            let d = Self::st_op(ins, 0);
            (d, self.st_get(d), self.st_get(Self::st_op(ins, 1)), false)
        };
        let pop = matches!(m, Faddp | Fsubp | Fsubrp | Fmulp | Fdivp | Fdivrp);
        let (Some(a), Some(b)) = (a, b) else {
            if self.stack_underflow() {
                self.st_set(dst, INDEFINITE);
                if pop {
                    self.x87_pop();
                }
            }
            return Ok(());
        };
        let ctl = self.ctl();
        let r = match m {
            Fadd | Faddp | Fiadd => arith::add(ctl, a, b, de),
            Fsub | Fsubp | Fisub => arith::sub(ctl, a, b, de),
            Fsubr | Fsubrp | Fisubr => arith::sub(ctl, b, a, de),
            Fmul | Fmulp | Fimul => arith::mul(ctl, a, b, de),
            Fdiv | Fdivp | Fidiv => arith::div(ctl, a, b, de),
            _ => arith::div(ctl, b, a, de),
        };
        self.x87_finish(dst, r, pop);
        Ok(())
    }

    pub(super) fn x87_compare(&mut self, ins: &Instruction) -> R<()> {
        use M::*;
        let m = ins.mnemonic();
        let (a, b, de) = if ins.op_count() == 1 && ins.op0_kind() == OpKind::Memory {
            let (v, de) = self.x87_mem_operand(ins)?;
            (self.st_get(0), Some(v), de)
        } else if m == Ftst {
            (self.st_get(0), Some(zero(false)), false)
        } else if ins.op_count() == 2 {
            (self.st_get(Self::st_op(ins, 0)), self.st_get(Self::st_op(ins, 1)), false)
        } else {
            (self.st_get(0), self.st_get(1), false)
        };
        let pops = match m {
            Fcomp | Fucomp | Ficomp | Fcomip | Fucomip => 1,
            Fcompp | Fucompp => 2,
            _ => 0,
        };
        let quiet = matches!(m, Fucom | Fucomp | Fucompp | Fucomi | Fucomip);
        let eflags = matches!(m, Fcomi | Fcomip | Fucomi | Fucomip);
        // The condition codes (or flags) are set even when an unmasked exception is raised.
        let c1 = self.fpu.fsw & C1;
        let (ord, stop) = match (a, b) {
            (Some(a), Some(b)) => {
                let (o, f) = arith::compare(self.ctl(), a, b, quiet, de);
                let stop = self.fp_raise(f);
                if eflags {
                    // FCOMI leaves C1 alone unless the stack faults.
                    self.fpu.fsw |= c1;
                }
                (o, stop)
            }
            _ => (None, !self.stack_underflow()),
        };
        let (c3, c2, c0) = match ord {
            Some(Ordering::Greater) => (false, false, false),
            Some(Ordering::Less) => (false, false, true),
            Some(Ordering::Equal) => (true, false, false),
            None => (true, true, true),
        };
        if eflags {
            let v = (if c3 { ZF } else { 0 }) | (if c2 { PF } else { 0 }) | (if c0 { CF } else { 0 });
            self.set_status(ZF | PF | CF | OF | SF_FLAG | AF, v);
        } else {
            self.set_cc(C3, c3);
            self.set_cc(C2, c2);
            self.set_cc(C0, c0);
        }
        if !eflags {
            self.set_c1(false);
        }
        if stop {
            return Ok(());
        }
        for _ in 0..pops {
            self.x87_pop();
        }
        Ok(())
    }

    pub(super) fn x87_unary(&mut self, ins: &Instruction) -> R<()> {
        let m = ins.mnemonic();
        if m == M::Fxam {
            self.fxam();
            return Ok(());
        }
        let Some(a) = self.st_get(0) else {
            if self.stack_underflow() {
                self.st_set(0, INDEFINITE);
            }
            return Ok(());
        };
        let ctl = self.ctl();
        let r = match m {
            M::Fchs => Res::exact(neg(a)),
            M::Fabs => Res::exact(a & !(1 << 79)),
            M::Fsqrt => arith::sqrt(ctl, a),
            _ => arith::rndint(ctl, a),
        };
        self.x87_finish(0, r, false);
        Ok(())
    }

    fn fxam(&mut self) {
        let p = self.phys(0);
        let v = self.fpu.st[p];
        let (c3, c2, c0) = if self.fpu.ftw & (1 << p) == 0 {
            (true, false, true)
        } else {
            match class(v) {
                Class::Unsupported => (false, false, false),
                Class::QNan | Class::SNan => (false, false, true),
                Class::Normal => (false, true, false),
                Class::Inf => (false, true, true),
                Class::Zero => (true, false, false),
                Class::Denormal => (true, true, false),
            }
        };
        self.set_cc(C3, c3);
        self.set_cc(C2, c2);
        self.set_cc(C0, c0);
        self.set_cc(C1, sign(v));
    }

    pub(super) fn x87_misc(&mut self, ins: &Instruction) -> R<()> {
        let m = ins.mnemonic();
        let ctl = self.ctl();
        if m == M::Fxtract {
            let Some(a) = self.st_get(0) else {
                if self.stack_underflow() {
                    self.st_set(0, INDEFINITE);
                    self.x87_push(INDEFINITE);
                }
                return Ok(());
            };
            if self.push_overflows() {
                if self.stack_overflow() {
                    self.st_set(0, INDEFINITE);
                    self.x87_push(INDEFINITE);
                }
                return Ok(());
            }
            let (e, s) = arith::xtract(ctl, a);
            if self.fp_raise(e.flags | s.flags) {
                return Ok(());
            }
            self.st_set(0, e.v);
            self.x87_push(s.v);
            self.set_c1(false);
            return Ok(());
        }
        let (Some(a), Some(b)) = (self.st_get(0), self.st_get(1)) else {
            if m != M::Fscale {
                self.set_cc(C2, false);
            }
            if self.stack_underflow() {
                self.st_set(0, INDEFINITE);
            }
            return Ok(());
        };
        if m == M::Fscale {
            self.x87_finish(0, arith::scale(ctl, a, b), false);
            return Ok(());
        }
        let (r, partial, q) = arith::prem(ctl, a, b, m == M::Fprem1);
        self.set_cc(C2, false);
        if self.fp_raise(r.flags) {
            return Ok(());
        }
        self.st_set(0, r.v);
        self.set_cc(C2, partial);
        match q {
            Some(q) if !partial => {
                self.set_cc(C0, q & 4 != 0);
                self.set_cc(C3, q & 2 != 0);
                self.set_cc(C1, q & 1 != 0);
            }
            Some(_) => {
                self.set_cc(C0, false);
                self.set_cc(C3, false);
                self.set_c1(false);
            }
            None => self.set_c1(false),
        }
        Ok(())
    }
}
