//! x87 loads, stores, constants, exchanges and conditional moves.

use super::convert::{self, BCD_INDEFINITE};
use super::float::DE;
use super::float::*;
use crate::cpu::*;
use crate::flags::{CF, PF, ZF};
use iced_x86::{Instruction, MemorySize, Mnemonic as M, OpKind};

/// The constants as 128-bit significands with the exponent of their top bit.
const PI: (i32, u128) = (1, 0xc90fdaa22168c234c4c6628b80dc1cd1);
const L2T: (i32, u128) = (1, 0xd49a784bcd1b8afe492bf6ff4dafdb4c);
const L2E: (i32, u128) = (0, 0xb8aa3b295c17f0bbbe87fed0691d3e88);
const LG2: (i32, u128) = (-2, 0x9a209a84fbcff7988f8959ac0b7c9178);
const LN2: (i32, u128) = (-1, 0xb17217f7d1cf79abc9e3b39803f2f6af);

impl Cpu {
    pub(super) fn x87_move(&mut self, ins: &Instruction) -> R<()> {
        use M::*;
        let m = ins.mnemonic();
        let mem = ins.op_count() > 0 && ins.op0_kind() == OpKind::Memory;
        match m {
            Fld | Fild | Fbld => self.x87_load(ins, mem),
            Fld1 | Fldz | Fldpi | Fldl2t | Fldl2e | Fldlg2 | Fldln2 => {
                let v = match m {
                    Fld1 => one(false),
                    Fldz => zero(false),
                    _ => {
                        let (e, s) = match m {
                            Fldpi => PI,
                            Fldl2t => L2T,
                            Fldl2e => L2E,
                            Fldlg2 => LG2,
                            _ => LN2,
                        };
                        let ctl = Ctl { prec: 64, masks: 0x3f, ..self.ctl() };
                        round(ctl, F80, true, false, e, s, false).ext()
                    }
                };
                self.x87_push_checked(v);
                Ok(())
            }
            Fst | Fstp | Fstpnce if !mem => {
                let d = Self::st_op(ins, 0);
                match self.st_get(0) {
                    // The D9 D8+i alias checks for no empty register: it only pops then.
                    None if m == Fstpnce => self.set_c1(false),
                    Some(v) => {
                        self.st_set(d, v);
                        self.set_c1(false);
                    }
                    None => {
                        if !self.stack_underflow() {
                            return Ok(());
                        }
                        self.st_set(d, INDEFINITE);
                    }
                }
                if m != Fst {
                    self.x87_pop();
                }
                Ok(())
            }
            Fst | Fstp | Fist | Fistp | Fisttp | Fbstp => self.x87_store(ins),
            Fxch => {
                let i = if ins.op_count() > 1 { Self::st_op(ins, 1) } else { 1 };
                let (a, b) = (self.st_get(0), self.st_get(i));
                if (a.is_none() || b.is_none()) && !self.stack_underflow() {
                    return Ok(());
                }
                self.st_set(0, b.unwrap_or(INDEFINITE));
                self.st_set(i, a.unwrap_or(INDEFINITE));
                if a.is_some() && b.is_some() {
                    self.set_c1(false);
                }
                Ok(())
            }
            Ffree | Ffreep => {
                let p = self.phys(Self::st_op(ins, 0));
                self.fpu.ftw &= !(1 << p);
                self.set_c1(false);
                if m == Ffreep {
                    self.x87_pop();
                }
                Ok(())
            }
            Fincstp | Fdecstp => {
                let d = if m == Fincstp { 1 } else { 7 };
                self.fpu.top = (self.fpu.top + d) & 7;
                self.set_c1(false);
                Ok(())
            }
            Fnop => Ok(()),
            Fcmovb | Fcmove | Fcmovbe | Fcmovu | Fcmovnb | Fcmovne | Fcmovnbe | Fcmovnu => {
                let f = self.flags();
                let cond = match m {
                    Fcmovb | Fcmovnb => f & CF != 0,
                    Fcmove | Fcmovne => f & ZF != 0,
                    Fcmovbe | Fcmovnbe => f & (CF | ZF) != 0,
                    _ => f & PF != 0,
                };
                let cond = cond != matches!(m, Fcmovnb | Fcmovne | Fcmovnbe | Fcmovnu);
                let i = Self::st_op(ins, 1);
                match (self.st_get(0), self.st_get(i)) {
                    (Some(_), Some(v)) => {
                        if cond {
                            self.st_set(0, v);
                        }
                    }
                    _ => {
                        if self.stack_underflow() {
                            self.st_set(0, INDEFINITE);
                        }
                    }
                }
                Ok(())
            }
            _ => self.unimplemented(ins).map(|_| ()),
        }
    }

    /// Pushes `v`, or handles the stack overflow.
    fn x87_push_checked(&mut self, v: u128) {
        if self.push_overflows() {
            if self.stack_overflow() {
                self.x87_push(INDEFINITE);
            }
            return;
        }
        self.x87_push(v);
        self.set_c1(false);
    }

    fn x87_load(&mut self, ins: &Instruction, mem: bool) -> R<()> {
        let (v, de) = if mem {
            let seg = self.mem_seg(ins);
            let ea = self.ea(ins);
            if ins.memory_size() == MemorySize::Bcd {
                let lo = self.read(seg, ea, 8)?;
                let hi = self.read(seg, ea.wrapping_add(8), 2)?;
                (convert::bcd_to_ext(lo as u128 | ((hi as u128) << 64)), false)
            } else {
                self.x87_mem_operand(ins)?
            }
        } else {
            match self.st_get(Self::st_op(ins, 0)) {
                Some(v) => (v, false),
                None => {
                    if self.stack_underflow() {
                        self.x87_push(INDEFINITE);
                    }
                    return Ok(());
                }
            }
        };
        if self.push_overflows() {
            if self.stack_overflow() {
                self.x87_push(INDEFINITE);
            }
            return Ok(());
        }
        let float = matches!(ins.memory_size(), MemorySize::Float32 | MemorySize::Float64) && mem;
        let mut flags = if de { DE } else { 0 };
        let mut v = v;
        if float && class(v) == Class::SNan {
            flags |= IE;
            v = quiet(v);
        }
        // A denormal operand is loaded even when DE is unmasked.
        if self.fp_raise(flags) && flags & IE != 0 {
            return Ok(());
        }
        self.x87_push(v);
        self.set_c1(false);
        Ok(())
    }

    /// FST/FSTP to memory, FIST/FISTP/FISTTP and FBSTP: the memory is written before any
    /// register state changes, so a fault leaves the FPU as it was.
    fn x87_store(&mut self, ins: &Instruction) -> R<()> {
        use M::*;
        let m = ins.mnemonic();
        let seg = self.mem_seg(ins);
        let ea = self.ea(ins);
        let ms = ins.memory_size();
        let pop = matches!(m, Fstp | Fistp | Fisttp | Fbstp);
        let ctl = self.ctl();
        let Some(v) = self.st_get(0) else {
            if ctl.masks & IE == 0 {
                self.stack_underflow();
                return Ok(());
            }
            let bits = match ms {
                MemorySize::Float32 => (0xffc0_0000, 0),
                MemorySize::Float64 => (0xfff8_0000_0000_0000, 0),
                MemorySize::Float80 => (INDEFINITE as u64, 0xffff),
                MemorySize::Bcd => (BCD_INDEFINITE as u64, (BCD_INDEFINITE >> 64) as u64),
                MemorySize::Int16 => (convert::int_indefinite(16), 0),
                MemorySize::Int32 => (convert::int_indefinite(32), 0),
                _ => (convert::int_indefinite(64), 0),
            };
            self.x87_write_mem(seg, ea, ms, bits)?;
            self.stack_underflow();
            if pop {
                self.x87_pop();
            }
            return Ok(());
        };
        let (bits, flags, up) = match ms {
            MemorySize::Float32 | MemorySize::Float64 => {
                let f = if ms == MemorySize::Float32 { F32 } else { F64 };
                let (b, fl, up) = convert::ext_to_float(ctl, v, f);
                ((b, 0), fl, up)
            }
            MemorySize::Float80 => ((v as u64, (v >> 64) as u64), 0, false),
            MemorySize::Bcd => {
                let (b, fl, up) = convert::ext_to_bcd(ctl.rc, v);
                let b = b.unwrap_or(BCD_INDEFINITE);
                ((b as u64, (b >> 64) as u64), fl, up)
            }
            _ => {
                let width = (ms.size() * 8) as u32;
                let rc = if m == Fisttp { 3 } else { ctl.rc };
                let (i, fl, up) = convert::ext_to_int(rc, v, width);
                ((i.map(|i| i as u64).unwrap_or(convert::int_indefinite(width)), 0), fl, up)
            }
        };
        // An unmasked exception stores nothing (overflow and underflow included, for memory).
        if flags & !ctl.masks & (IE | OE | UE) != 0 {
            let f = flags & !ctl.masks & (IE | OE | UE);
            self.fp_raise(if f & IE != 0 { flags } else { f });
            self.set_c1(false);
            return Ok(());
        }
        self.x87_write_mem(seg, ea, ms, bits)?;
        self.fp_raise(flags);
        self.set_c1(up);
        if pop {
            self.x87_pop();
        }
        Ok(())
    }

    fn x87_write_mem(&mut self, seg: usize, ea: u64, ms: MemorySize, (lo, hi): (u64, u64)) -> R<()> {
        let size = ms.size();
        if size == 10 {
            self.x87_probe_ten(seg, ea)?;
            self.write(seg, ea, 8, lo)?;
            self.write(seg, ea.wrapping_add(8), 2, hi)
        } else {
            self.write(seg, ea, size, lo)
        }
    }
}
