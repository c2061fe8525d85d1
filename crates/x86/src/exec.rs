//! Integer instruction semantics.

use crate::cpu::*;
use crate::flags::{self, mask, szp, LazyOp, AF, CF, DF, OF, PF, SF, ZF};
use iced_x86::{Code, ConditionCode, Instruction, Mnemonic as M, OpKind};

/// What an executed instruction means for the block that runs it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flow {
    /// Fall through to the next instruction.
    Next,
    /// Control moved or machine state changed: end the block.
    Branch,
}

use Flow::{Branch, Next};

#[inline]
fn sx(v: u64, size: u8) -> i64 {
    let s = 64 - size as u32 * 8;
    ((v << s) as i64) >> s
}

impl Cpu {
    /// Evaluates a condition code.
    #[inline(always)]
    pub fn cond(&self, cc: ConditionCode) -> bool {
        // Fast paths that read the recorded operation instead of building all flags.
        let l = &self.lazy;
        if l.op != LazyOp::None {
            let m = mask(l.size());
            match cc {
                ConditionCode::e => return l.res & m == 0,
                ConditionCode::ne => return l.res & m != 0,
                ConditionCode::s => return l.res & crate::flags::sign(l.size()) != 0,
                ConditionCode::ns => return l.res & crate::flags::sign(l.size()) == 0,
                _ => {}
            }
            if l.op == LazyOp::Sub {
                let (a, b) = (l.a & m, l.b & m);
                let (sa, sb) = (sx(a, l.size()), sx(b, l.size()));
                match cc {
                    ConditionCode::b => return a < b,
                    ConditionCode::ae => return a >= b,
                    ConditionCode::be => return a <= b,
                    ConditionCode::a => return a > b,
                    ConditionCode::l => return sa < sb,
                    ConditionCode::ge => return sa >= sb,
                    ConditionCode::le => return sa <= sb,
                    ConditionCode::g => return sa > sb,
                    _ => {}
                }
            }
            if l.op == LazyOp::Logic {
                // CF and OF are clear.
                let z = l.res & m == 0;
                let s = l.res & crate::flags::sign(l.size()) != 0;
                match cc {
                    ConditionCode::b | ConditionCode::o => return false,
                    ConditionCode::ae | ConditionCode::no => return true,
                    ConditionCode::be => return z,
                    ConditionCode::a => return !z,
                    ConditionCode::l => return s,
                    ConditionCode::ge => return !s,
                    ConditionCode::le => return z || s,
                    ConditionCode::g => return !z && !s,
                    _ => {}
                }
            }
        }
        self.cond_from_flags(cc)
    }

    /// Evaluates a condition code from the materialised flags.
    pub fn cond_from_flags(&self, cc: ConditionCode) -> bool {
        let f = self.flags();
        let (c, z, s, o, p) = (f & CF != 0, f & ZF != 0, f & SF != 0, f & OF != 0, f & PF != 0);
        match cc {
            ConditionCode::o => o,
            ConditionCode::no => !o,
            ConditionCode::b => c,
            ConditionCode::ae => !c,
            ConditionCode::e => z,
            ConditionCode::ne => !z,
            ConditionCode::be => c || z,
            ConditionCode::a => !c && !z,
            ConditionCode::s => s,
            ConditionCode::ns => !s,
            ConditionCode::p => p,
            ConditionCode::np => !p,
            ConditionCode::l => s != o,
            ConditionCode::ge => s == o,
            ConditionCode::le => z || s != o,
            ConditionCode::g => !z && s == o,
            ConditionCode::None => true,
        }
    }

    /// Performs a two-operand ALU operation and records its flags.
    #[inline]
    pub fn alu(&mut self, m: M, size: u8, a: u64, b: u64) -> u64 {
        let mk = mask(size);
        let (r, op, cin) = match m {
            M::Add => (a.wrapping_add(b), LazyOp::Add, false),
            M::Adc => {
                let c = self.flag(CF);
                (a.wrapping_add(b).wrapping_add(c as u64), LazyOp::Adc, c)
            }
            M::Sub | M::Cmp => (a.wrapping_sub(b), LazyOp::Sub, false),
            M::Sbb => {
                let c = self.flag(CF);
                (a.wrapping_sub(b).wrapping_sub(c as u64), LazyOp::Sbb, c)
            }
            M::And | M::Test => (a & b, LazyOp::Logic, false),
            M::Or => (a | b, LazyOp::Logic, false),
            _ => (a ^ b, LazyOp::Logic, false),
        };
        let r = r & mk;
        self.set_lazy(op, size, a & mk, b & mk, r, cin);
        r
    }

    /// Records flags that are SF/ZF/PF of `res` with the given CF and OF (AF clear).
    #[inline]
    pub(crate) fn set_szp_flags(&mut self, res: u64, size: u8, cf: bool, of: bool) {
        let b = if cf { CF } else { 0 } | if of { OF } else { 0 };
        self.lazy = flags::Lazy::new(LazyOp::Szp, size, 0, b, res & mask(size), false);
    }

    /// Shifts and rotates: returns the result, or None when the count leaves everything alone.
    #[inline(always)]
    pub fn shift(&mut self, m: M, size: u8, a: u64, count: u64) -> Option<u64> {
        let bits = size as u32 * 8;
        let cnt = (count & if size == 8 { 0x3f } else { 0x1f }) as u32;
        if cnt == 0 {
            return None;
        }
        let mk = mask(size);
        let a = a & mk;
        let msb = |v: u64| (v >> (bits - 1)) & 1 != 0;
        let r;
        match m {
            M::Shl | M::Sal => {
                r = if cnt >= 64 { 0 } else { (a << cnt) & mk };
                let cf = cnt <= bits && (a >> (bits - cnt)) & 1 != 0;
                self.set_szp_flags(r, size, cf, msb(r) ^ cf);
            }
            M::Shr => {
                r = if cnt >= 64 { 0 } else { a >> cnt };
                let cf = cnt <= bits && (a >> (cnt - 1)) & 1 != 0;
                self.set_szp_flags(r, size, cf, msb(a));
            }
            M::Sar => {
                let s = sx(a, size);
                r = (s >> cnt.min(63)) as u64 & mk;
                let cf = (s >> (cnt - 1).min(63)) & 1 != 0;
                self.set_szp_flags(r, size, cf, false);
            }
            M::Rol => {
                let c = cnt % bits;
                r = if c == 0 { a } else { ((a << c) | (a >> (bits - c))) & mk };
                let cf = r & 1 != 0;
                self.set_status(CF | OF, if cf { CF } else { 0 } | if msb(r) ^ cf { OF } else { 0 });
            }
            M::Ror => {
                let c = cnt % bits;
                r = if c == 0 { a } else { ((a >> c) | (a << (bits - c))) & mk };
                let cf = msb(r);
                let of = msb(r) ^ ((r >> (bits - 2)) & 1 != 0);
                self.set_status(CF | OF, if cf { CF } else { 0 } | if of { OF } else { 0 });
            }
            M::Rcl => {
                let c = if size < 4 { cnt % (bits + 1) } else { cnt };
                let mut v = a;
                let mut cf = self.flag(CF);
                for _ in 0..c {
                    let out = msb(v);
                    v = ((v << 1) | cf as u64) & mk;
                    cf = out;
                }
                r = v;
                self.set_status(CF | OF, if cf { CF } else { 0 } | if msb(r) ^ cf { OF } else { 0 });
            }
            M::Rcr => {
                let c = if size < 4 { cnt % (bits + 1) } else { cnt };
                let mut v = a;
                let mut cf = self.flag(CF);
                let of = msb(v) ^ cf;
                for _ in 0..c {
                    let out = v & 1 != 0;
                    v = (v >> 1) | ((cf as u64) << (bits - 1));
                    cf = out;
                }
                r = v;
                self.set_status(CF | OF, if cf { CF } else { 0 } | if of { OF } else { 0 });
            }
            _ => return None,
        }
        Some(r)
    }

    fn double_shift(&mut self, left: bool, size: u8, dst: u64, src: u64, count: u64) -> Option<u64> {
        let bits = size as u32 * 8;
        let cnt = (count & if size == 8 { 0x3f } else { 0x1f }) as u32;
        if cnt == 0 {
            return None;
        }
        let mk = mask(size);
        let (d, s) = (dst & mk, src & mk);
        let msb = |v: u64| (v >> (bits - 1)) & 1 != 0;
        // Work on a 128-bit concatenation so that 16-bit counts above 16 behave like hardware.
        let (r, cf) = if left {
            let cat: u128 = ((d as u128) << bits) | s as u128;
            let cat = if size == 2 { (cat << 32) | ((d as u128) << 16) } else { cat };
            let total = if size == 2 { 64 } else { 2 * bits };
            let sh = cat << cnt;
            let r = ((sh >> (total - bits)) as u64) & mk;
            let cf = (cat >> (total - cnt)) & 1 != 0;
            (r, cf)
        } else {
            let cat: u128 = ((s as u128) << bits) | d as u128;
            let cat = if size == 2 { cat | ((d as u128) << 32) } else { cat };
            let r = ((cat >> cnt) as u64) & mk;
            let cf = (cat >> (cnt - 1)) & 1 != 0;
            (r, cf)
        };
        self.set_szp_flags(r, size, cf, msb(r) ^ msb(d));
        Some(r)
    }

    fn operand_size(&self, ins: &Instruction) -> u8 {
        if ins.op_count() > 0 {
            self.op_size(ins, 0)
        } else {
            (self.bitness / 8) as u8
        }
    }

    /// Executes one decoded instruction. A fault leaves the flags as they were before it:
    /// faults are precise, and a faulting `adc [mem], r` (a copy-on-write page, say) runs again
    /// with the same carry once the fault is handled.
    pub fn exec(&mut self, ins: &Instruction) -> R<Flow> {
        let (lazy, rflags) = (self.lazy, self.rflags);
        let r = self.exec_inner(ins);
        // A string instruction that faults part-way keeps the flags of the elements done.
        if r.is_err() && !ins.is_string_instruction() {
            self.lazy = lazy;
            self.rflags = rflags;
        }
        r
    }

    fn exec_inner(&mut self, ins: &Instruction) -> R<Flow> {
        let m = ins.mnemonic();
        match m {
            M::Mov => {
                if ins.op0_kind() == OpKind::Register {
                    let r0 = ins.op0_register();
                    if r0.is_segment_register() {
                        let v = self.rd(ins, 1)? as u16;
                        let s = crate::operand::seg_index(r0);
                        if s == CS {
                            return Err(ud());
                        }
                        self.load_seg(s, v)?;
                        if s == SS {
                            self.inhibit_irq = true;
                        }
                        return Ok(Next);
                    }
                    if r0.is_cr() || r0.is_dr() {
                        return self.mov_to_control(ins);
                    }
                }
                if ins.op1_kind() == OpKind::Register {
                    let r1 = ins.op1_register();
                    if r1.is_segment_register() {
                        let v = self.segs[crate::operand::seg_index(r1)].selector as u64;
                        // A register destination gets the selector zero-extended.
                        return self.wr(ins, 0, v).map(|_| Next);
                    }
                    if r1.is_cr() || r1.is_dr() {
                        return self.mov_from_control(ins);
                    }
                }
                let v = self.rd(ins, 1)?;
                self.wr(ins, 0, v)?;
            }
            M::Add | M::Or | M::Adc | M::Sbb | M::And | M::Sub | M::Xor => {
                let size = self.op_size(ins, 0);
                let a = self.rd_rmw(ins, 0)?;
                let b = self.rd(ins, 1)?;
                let r = self.alu(m, size, a, b);
                self.wr(ins, 0, r)?;
            }
            M::Cmp | M::Test => {
                let size = self.op_size(ins, 0);
                let a = self.rd(ins, 0)?;
                let b = self.rd(ins, 1)?;
                self.alu(m, size, a, b);
            }
            M::Inc | M::Dec => {
                let size = self.op_size(ins, 0);
                let a = self.rd_rmw(ins, 0)?;
                let (r, op) = if m == M::Inc {
                    (a.wrapping_add(1), LazyOp::Inc)
                } else {
                    (a.wrapping_sub(1), LazyOp::Dec)
                };
                let r = r & mask(size);
                self.wr(ins, 0, r)?;
                self.set_lazy(op, size, a & mask(size), 1, r, false);
            }
            M::Neg => {
                let size = self.op_size(ins, 0);
                let a = self.rd_rmw(ins, 0)?;
                let r = self.alu(M::Sub, size, 0, a);
                self.wr(ins, 0, r)?;
            }
            M::Not => {
                let size = self.op_size(ins, 0);
                let a = self.rd_rmw(ins, 0)?;
                self.wr(ins, 0, !a & mask(size))?;
            }
            M::Lea => {
                let ea = self.ea(ins);
                self.wr(ins, 0, ea)?;
            }
            M::Movzx => {
                let v = self.rd(ins, 1)?;
                self.wr(ins, 0, v)?;
            }
            M::Movsx | M::Movsxd => {
                let s = self.op_size(ins, 1);
                let v = self.rd(ins, 1)?;
                self.wr(ins, 0, sx(v, s) as u64)?;
            }
            M::Xchg => {
                let a = self.rd_rmw(ins, 0)?;
                let b = self.rd(ins, 1)?;
                self.wr(ins, 0, b)?;
                self.wr(ins, 1, a)?;
            }
            M::Xadd => {
                let size = self.op_size(ins, 0);
                let a = self.rd_rmw(ins, 0)?;
                let b = self.rd(ins, 1)?;
                let r = self.alu(M::Add, size, a, b);
                if ins.op0_kind() == OpKind::Memory {
                    // The store first: the source register may be part of the address.
                    self.wr(ins, 0, r)?;
                    self.wr(ins, 1, a)?;
                } else {
                    // The source first: `xadd r, r` leaves the sum.
                    self.wr(ins, 1, a)?;
                    self.wr(ins, 0, r)?;
                }
            }
            M::Cmpxchg => {
                let size = self.op_size(ins, 0);
                let d = self.rd_rmw(ins, 0)?;
                let acc = self.reg(0, size);
                self.alu(M::Cmp, size, acc, d);
                if acc == d {
                    let s = self.rd(ins, 1)?;
                    self.wr(ins, 0, s)?;
                } else {
                    // A memory destination is written back even on failure (a locked cycle);
                    // a register one is left alone (its upper half too).
                    if ins.op0_kind() == OpKind::Memory {
                        self.wr(ins, 0, d)?;
                    }
                    self.set_reg(0, size, d);
                }
            }
            M::Cmpxchg8b | M::Cmpxchg16b => {
                let half = if m == M::Cmpxchg8b { 4usize } else { 8 };
                let seg = self.mem_seg(ins);
                let ea = self.ea(ins);
                if half == 8 && self.lin(seg, ea) & 15 != 0 {
                    return Err(gp(0));
                }
                // Translated for writing, both halves at once, before anything is read.
                let lin = self.lin(seg, ea);
                self.probe_write(lin, 2 * half).map_err(|f| if seg == SS { on_stack(f) } else { f })?;
                let lo = self.read(seg, ea, half)?;
                let hi = self.read(seg, ea.wrapping_add(half as u64), half)?;
                let hs = half as u8;
                if lo == self.reg(0, hs) && hi == self.reg(2, hs) {
                    let (nl, nh) = (self.reg(3, hs), self.reg(1, hs));
                    self.write(seg, ea, half, nl)?;
                    self.write(seg, ea.wrapping_add(half as u64), half, nh)?;
                    self.set_status(ZF, ZF);
                } else {
                    self.write(seg, ea, half, lo)?;
                    self.write(seg, ea.wrapping_add(half as u64), half, hi)?;
                    self.set_reg(0, hs, lo);
                    self.set_reg(2, hs, hi);
                    self.set_status(ZF, 0);
                }
            }
            M::Shl | M::Sal | M::Shr | M::Sar | M::Rol | M::Ror | M::Rcl | M::Rcr => {
                let size = self.op_size(ins, 0);
                let a = self.rd_rmw(ins, 0)?;
                let c = if ins.op_count() > 1 { self.rd(ins, 1)? } else { 1 };
                match self.shift(m, size, a, c) {
                    Some(r) => self.wr(ins, 0, r)?,
                    // A 32-bit register destination is zero-extended even by a zero count.
                    None if size == 4 && ins.op0_kind() == OpKind::Register => self.wr(ins, 0, a)?,
                    None => {}
                }
            }
            M::Shld | M::Shrd => {
                let size = self.op_size(ins, 0);
                let a = self.rd_rmw(ins, 0)?;
                let b = self.rd(ins, 1)?;
                let c = self.rd(ins, 2)?;
                match self.double_shift(m == M::Shld, size, a, b, c) {
                    Some(r) => self.wr(ins, 0, r)?,
                    None if size == 4 && ins.op0_kind() == OpKind::Register => self.wr(ins, 0, a)?,
                    None => {}
                }
            }
            M::Mul | M::Imul if ins.op_count() == 1 => self.mul1(ins, m == M::Imul)?,
            M::Imul => {
                let size = self.op_size(ins, 0);
                let (a, b) = if ins.op_count() == 3 {
                    (self.rd(ins, 1)?, self.rd(ins, 2)?)
                } else {
                    (self.rd(ins, 0)?, self.rd(ins, 1)?)
                };
                let p = (sx(a, size) as i128) * (sx(b, size) as i128);
                let r = (p as u64) & mask(size);
                let of = sx(r, size) as i128 != p;
                self.wr(ins, 0, r)?;
                self.set_szp_flags(r, size, of, of);
            }
            M::Div | M::Idiv => self.div(ins, m == M::Idiv)?,
            M::Bt | M::Bts | M::Btr | M::Btc => {
                let size = self.op_size(ins, 0);
                let bits = size as u64 * 8;
                let off = self.rd(ins, 1)?;
                if ins.op0_kind() == OpKind::Memory && ins.op1_kind() == OpKind::Register {
                    let seg = self.mem_seg(ins);
                    let soff = sx(off, self.op_size(ins, 1));
                    let ea =
                        self.ea(ins).wrapping_add(((soff >> bits.trailing_zeros()) * size as i64) as u64);
                    let ea = match self.addr_size(ins) {
                        2 => ea & 0xffff,
                        4 => ea & 0xffff_ffff,
                        _ => ea,
                    };
                    let v = if m == M::Bt {
                        self.read(seg, ea, size as usize)?
                    } else {
                        self.read_rmw(seg, ea, size as usize)?
                    };
                    let bit = (soff as u64) & (bits - 1);
                    let cf = (v >> bit) & 1 != 0;
                    let nv = match m {
                        M::Bts => v | (1 << bit),
                        M::Btr => v & !(1 << bit),
                        M::Btc => v ^ (1 << bit),
                        _ => v,
                    };
                    if m != M::Bt {
                        self.write(seg, ea, size as usize, nv)?;
                    }
                    self.set_status(CF, if cf { CF } else { 0 });
                } else {
                    let v = if m == M::Bt { self.rd(ins, 0)? } else { self.rd_rmw(ins, 0)? };
                    let bit = off & (bits - 1);
                    let cf = (v >> bit) & 1 != 0;
                    let nv = match m {
                        M::Bts => v | (1 << bit),
                        M::Btr => v & !(1 << bit),
                        M::Btc => v ^ (1 << bit),
                        _ => v,
                    };
                    if m != M::Bt {
                        self.wr(ins, 0, nv)?;
                    }
                    self.set_status(CF, if cf { CF } else { 0 });
                }
            }
            M::Bsf | M::Bsr | M::Tzcnt | M::Lzcnt => {
                // Without BMI1/ABM in CPUID, TZCNT and LZCNT execute as BSF and BSR.
                let size = self.op_size(ins, 0);
                let v = self.rd(ins, 1)? & mask(size);
                if v == 0 {
                    self.set_status(ZF, ZF);
                } else {
                    let r = if matches!(m, M::Bsf | M::Tzcnt) {
                        v.trailing_zeros() as u64
                    } else {
                        63 - v.leading_zeros() as u64
                    };
                    self.wr(ins, 0, r)?;
                    self.set_status(flags::STATUS, 0);
                }
            }
            M::Popcnt => {
                let v = self.rd(ins, 1)?;
                let r = v.count_ones() as u64;
                self.wr(ins, 0, r)?;
                self.set_status(flags::STATUS, if r == 0 { ZF } else { 0 });
            }
            M::Bswap => {
                let size = self.op_size(ins, 0);
                let v = self.rd(ins, 0)?;
                let r = match size {
                    8 => v.swap_bytes(),
                    4 => (v as u32).swap_bytes() as u64,
                    _ => 0,
                };
                self.wr(ins, 0, r)?;
            }
            M::Cbw => {
                let v = sx(self.reg(0, 1), 1) as u64;
                self.set_reg(0, 2, v);
            }
            M::Cwde => {
                let v = sx(self.reg(0, 2), 2) as u64;
                self.set_reg(0, 4, v);
            }
            M::Cdqe => {
                self.regs[0] = sx(self.reg(0, 4), 4) as u64;
            }
            M::Cwd => {
                let v = if self.regs[0] & 0x8000 != 0 { 0xffff } else { 0 };
                self.set_reg(2, 2, v);
            }
            M::Cdq => {
                let v = if self.regs[0] & 0x8000_0000 != 0 { 0xffff_ffff } else { 0 };
                self.set_reg(2, 4, v);
            }
            M::Cqo => {
                self.regs[2] = if self.regs[0] >> 63 != 0 { u64::MAX } else { 0 };
            }
            M::Clc => self.set_status(CF, 0),
            M::Stc => self.set_status(CF, CF),
            M::Cmc => {
                let c = self.flag(CF);
                self.set_status(CF, if c { 0 } else { CF });
            }
            M::Cld => self.rflags &= !DF,
            M::Std => self.rflags |= DF,
            M::Cli => {
                self.check_iopl()?;
                self.rflags &= !flags::IF;
            }
            M::Sti => {
                self.check_iopl()?;
                if self.rflags & flags::IF == 0 {
                    self.inhibit_irq = true;
                }
                self.rflags |= flags::IF;
                return Ok(Branch);
            }
            M::Lahf => {
                let f = self.flags() as u8 as u64;
                self.regs[0] = (self.regs[0] & !0xff00) | ((f | 2) << 8);
            }
            M::Sahf => {
                let ah = (self.regs[0] >> 8) & 0xff;
                self.set_status(CF | PF | AF | ZF | SF, ah);
            }
            M::Salc => {
                let v = if self.flag(CF) { 0xff } else { 0 };
                self.set_reg(0, 1, v);
            }
            M::Setb
            | M::Setae
            | M::Sete
            | M::Setne
            | M::Setbe
            | M::Seta
            | M::Sets
            | M::Setns
            | M::Seto
            | M::Setno
            | M::Setp
            | M::Setnp
            | M::Setl
            | M::Setge
            | M::Setle
            | M::Setg => {
                let v = self.cond(ins.condition_code()) as u64;
                self.wr(ins, 0, v)?;
            }
            M::Cmovb
            | M::Cmovae
            | M::Cmove
            | M::Cmovne
            | M::Cmovbe
            | M::Cmova
            | M::Cmovs
            | M::Cmovns
            | M::Cmovo
            | M::Cmovno
            | M::Cmovp
            | M::Cmovnp
            | M::Cmovl
            | M::Cmovge
            | M::Cmovle
            | M::Cmovg => {
                let v = self.rd(ins, 1)?;
                if self.cond(ins.condition_code()) {
                    self.wr(ins, 0, v)?;
                } else if self.op_size(ins, 0) == 4 {
                    // A 32-bit CMOV clears the upper half even when it does not move.
                    let r = self.get_reg(ins.op0_register());
                    self.put_reg(ins.op0_register(), r);
                }
            }
            M::Jo
            | M::Jno
            | M::Jb
            | M::Jae
            | M::Je
            | M::Jne
            | M::Jbe
            | M::Ja
            | M::Js
            | M::Jns
            | M::Jp
            | M::Jnp
            | M::Jl
            | M::Jge
            | M::Jle
            | M::Jg => {
                if self.cond(ins.condition_code()) {
                    self.rip = ins.near_branch_target();
                    return Ok(Branch);
                }
            }
            M::Jcxz | M::Jecxz | M::Jrcxz => {
                let size = match m {
                    M::Jcxz => 2,
                    M::Jecxz => 4,
                    _ => 8,
                };
                if self.reg(1, size) == 0 {
                    self.rip = ins.near_branch_target();
                    return Ok(Branch);
                }
            }
            M::Loop | M::Loope | M::Loopne => {
                let size = match ins.code() {
                    Code::Loop_rel8_16_CX
                    | Code::Loop_rel8_32_CX
                    | Code::Loope_rel8_16_CX
                    | Code::Loope_rel8_32_CX
                    | Code::Loopne_rel8_16_CX
                    | Code::Loopne_rel8_32_CX => 2,
                    Code::Loop_rel8_16_ECX
                    | Code::Loop_rel8_32_ECX
                    | Code::Loop_rel8_64_ECX
                    | Code::Loope_rel8_16_ECX
                    | Code::Loope_rel8_32_ECX
                    | Code::Loope_rel8_64_ECX
                    | Code::Loopne_rel8_16_ECX
                    | Code::Loopne_rel8_32_ECX
                    | Code::Loopne_rel8_64_ECX => 4,
                    _ => 8,
                };
                let c = self.reg(1, size).wrapping_sub(1) & mask(size);
                self.set_reg(1, size, c);
                let take = c != 0
                    && match m {
                        M::Loope => self.flag(ZF),
                        M::Loopne => !self.flag(ZF),
                        _ => true,
                    };
                if take {
                    self.rip = ins.near_branch_target();
                    return Ok(Branch);
                }
            }
            M::Jmp => {
                match ins.op0_kind() {
                    OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                        self.rip = ins.near_branch_target()
                    }
                    OpKind::FarBranch16 | OpKind::FarBranch32 => {
                        let off = if ins.op0_kind() == OpKind::FarBranch16 {
                            ins.far_branch16() as u64
                        } else {
                            ins.far_branch32() as u64
                        };
                        self.far_jump(ins.far_branch_selector(), off)?;
                    }
                    _ => {
                        if is_far(ins) {
                            let (sel, off) = self.read_far_ptr(ins)?;
                            self.far_jump(sel, off)?;
                        } else {
                            let t = self.rd(ins, 0)?;
                            self.rip = t;
                        }
                    }
                }
                return Ok(Branch);
            }
            M::Call => {
                let os = self.branch_size(ins);
                match ins.op0_kind() {
                    OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                        let ret = self.rip;
                        self.push(os, ret)?;
                        self.rip = ins.near_branch_target();
                    }
                    OpKind::FarBranch16 | OpKind::FarBranch32 => {
                        let off = if ins.op0_kind() == OpKind::FarBranch16 {
                            ins.far_branch16() as u64
                        } else {
                            ins.far_branch32() as u64
                        };
                        self.far_call(ins.far_branch_selector(), off, os)?;
                    }
                    _ => {
                        if is_far(ins) {
                            let (sel, off) = self.read_far_ptr(ins)?;
                            let fos = ins.memory_size().size() - 2;
                            self.far_call(sel, off, fos)?;
                        } else {
                            let t = self.rd(ins, 0)?;
                            let ret = self.rip;
                            self.push(os, ret)?;
                            self.rip = t;
                        }
                    }
                }
                return Ok(Branch);
            }
            M::Ret => {
                let os = self.branch_size(ins);
                let t = self.pop(os)?;
                if ins.op_count() > 0 {
                    let ss = self.stack_size();
                    let sp = self.reg(4, ss).wrapping_add(ins.immediate16() as u64);
                    self.set_reg(4, ss, sp);
                }
                self.rip = t;
                return Ok(Branch);
            }
            M::Retf => {
                let os = self.branch_size(ins);
                let imm = if ins.op_count() > 0 { ins.immediate16() as u64 } else { 0 };
                self.far_ret(os, imm)?;
                return Ok(Branch);
            }
            M::Push => {
                let os = self.operand_size(ins) as usize;
                if ins.op0_kind() == OpKind::Register && ins.op0_register().is_segment_register() {
                    let v = self.segs[crate::operand::seg_index(ins.op0_register())].selector as u64;
                    let os = stack_op_size(ins, self.bitness);
                    self.push(os, v)?;
                } else {
                    let v = self.rd(ins, 0)?;
                    let os = if ins.op0_kind() == OpKind::Register || ins.op0_kind() == OpKind::Memory {
                        os
                    } else {
                        stack_op_size(ins, self.bitness)
                    };
                    self.push(os, v)?;
                }
            }
            M::Pop => {
                if ins.op0_kind() == OpKind::Register && ins.op0_register().is_segment_register() {
                    let os = stack_op_size(ins, self.bitness);
                    let ss = self.stack_size();
                    let sp = self.reg(4, ss);
                    let v = self.read(SS, sp, os)? as u16;
                    let s = crate::operand::seg_index(ins.op0_register());
                    self.load_seg(s, v)?;
                    self.set_reg(4, ss, sp.wrapping_add(os as u64));
                    if s == SS {
                        self.inhibit_irq = true;
                    }
                } else {
                    let os = self.operand_size(ins) as usize;
                    let v = self.pop(os)?;
                    if let Err(e) = self.wr(ins, 0, v) {
                        let ss = self.stack_size();
                        let sp = self.reg(4, ss).wrapping_sub(os as u64);
                        self.set_reg(4, ss, sp);
                        return Err(e);
                    }
                }
            }
            M::Pusha | M::Pushad => {
                let os = if m == M::Pusha { 2 } else { 4 };
                let sp = self.regs[4];
                for i in 0..8 {
                    let v = if i == 4 { sp } else { self.regs[i] };
                    self.push(os, v)?;
                }
            }
            M::Popa | M::Popad => {
                let os = if m == M::Popa { 2 } else { 4 };
                for i in (0..8).rev() {
                    let v = self.pop(os)?;
                    if i != 4 {
                        self.set_reg(i, os as u8, v);
                    }
                }
            }
            M::Pushf | M::Pushfd | M::Pushfq => {
                let os = match m {
                    M::Pushf => 2,
                    M::Pushfd => 4,
                    _ => 8,
                };
                let f = self.flags() & !(flags::VM | flags::RF);
                self.push(os, f)?;
            }
            M::Popf | M::Popfd | M::Popfq => {
                let os = match m {
                    M::Popf => 2,
                    M::Popfd => 4,
                    _ => 8,
                };
                let v = self.pop(os)?;
                self.popf(v, os);
                return Ok(Branch);
            }
            M::Enter => self.enter(ins)?,
            M::Leave => {
                let os = frame_op_size(ins, self.bitness);
                let ss = self.stack_size();
                let bp = self.reg(5, ss);
                // RSP changes only once the pop has succeeded.
                let v = self.read(SS, bp, os)?;
                self.set_reg(4, ss, bp.wrapping_add(os as u64) & mask(ss));
                self.set_reg(5, os as u8, v);
            }
            // A spin-wait: end the block, so that vCPUs taking turns (`ExecLock`) can hand the
            // turn to the one the spinner waits for.
            M::Pause => {
                self.paused = true;
                return Ok(Branch);
            }
            M::Nop
            | M::Lfence
            | M::Mfence
            | M::Sfence
            | M::Prefetch
            | M::Prefetchnta
            | M::Prefetcht0
            | M::Prefetcht1
            | M::Prefetcht2
            | M::Prefetchw
            | M::Endbr32
            | M::Endbr64
            | M::Wait => {
                if m == M::Wait {
                    self.fpu_check()?;
                    self.x87_pending()?;
                }
            }
            M::Reservednop => {}
            // CLFLUSH translates its address like a read (and faults like one).
            M::Clflush => {
                let seg = self.mem_seg(ins);
                let lin = self.lin(seg, self.ea(ins));
                self.probe_read(lin).map_err(|f| if seg == SS { on_stack(f) } else { f })?;
            }
            M::Hlt => {
                self.check_cpl0()?;
                self.halted = true;
                return Ok(Branch);
            }
            M::In => {
                let size = self.op_size(ins, 0) as usize;
                let port = self.rd(ins, 1)? as u16;
                self.check_io(port, size)?;
                let v = self.port_in(port, size);
                self.wr(ins, 0, v)?;
            }
            M::Out => {
                let size = self.op_size(ins, 1) as usize;
                let port = self.rd(ins, 0)? as u16;
                self.check_io(port, size)?;
                let v = self.rd(ins, 1)?;
                self.port_out(port, size, v);
                return Ok(Branch);
            }
            M::Movsb
            | M::Movsw
            | M::Movsq
            | M::Cmpsb
            | M::Cmpsw
            | M::Cmpsq
            | M::Stosb
            | M::Stosw
            | M::Stosd
            | M::Stosq
            | M::Lodsb
            | M::Lodsw
            | M::Lodsd
            | M::Lodsq
            | M::Scasb
            | M::Scasw
            | M::Scasd
            | M::Scasq
            | M::Insb
            | M::Insw
            | M::Insd
            | M::Outsb
            | M::Outsw
            | M::Outsd => return self.string(ins),
            // The string forms only: MOVSD and CMPSD are also SSE2 scalar-double mnemonics
            // (`movsd [mem], xmm` has a memory first operand too).
            M::Movsd | M::Cmpsd if matches!(ins.code(), Code::Movsd_m32_m32 | Code::Cmpsd_m32_m32) => {
                return self.string(ins)
            }
            M::Xlatb => {
                // [RBX + AL]: the index is AL alone, not RAX.
                let seg = self.mem_seg(ins);
                let base = self.get_reg(ins.memory_base());
                let ea = base.wrapping_add(self.regs[0] & 0xff) & mask(self.addr_size(ins));
                let v = self.read(seg, ea, 1)?;
                self.set_reg(0, 1, v);
            }
            M::Int | M::Int3 | M::Into | M::Int1 => {
                let v = match m {
                    M::Int => ins.immediate8(),
                    M::Int3 => 3,
                    M::Int1 => 1,
                    _ => {
                        if !self.flag(OF) {
                            return Ok(Next);
                        }
                        4
                    }
                };
                self.software_interrupt(v)?;
                return Ok(Branch);
            }
            M::Iret | M::Iretd | M::Iretq => {
                let os = match m {
                    M::Iret => 2,
                    M::Iretd => 4,
                    _ => 8,
                };
                self.iret(os)?;
                return Ok(Branch);
            }
            M::Lds | M::Les | M::Lfs | M::Lgs | M::Lss => {
                let os = self.op_size(ins, 0) as usize;
                let seg = self.mem_seg(ins);
                let ea = self.ea(ins);
                let off = self.read(seg, ea, os)?;
                let sel = self.read(seg, ea + os as u64, 2)? as u16;
                let s = match m {
                    M::Lds => DS,
                    M::Les => ES,
                    M::Lfs => FS,
                    M::Lgs => GS,
                    _ => SS,
                };
                self.load_seg(s, sel)?;
                self.wr(ins, 0, off)?;
            }
            M::Daa | M::Das => {
                let al = self.reg(0, 1);
                let f = self.flags();
                let (mut cf, mut af) = (f & CF != 0, f & AF != 0);
                let mut v = al;
                let add = m == M::Daa;
                if (al & 0xf) > 9 || af {
                    v = if add { v.wrapping_add(6) } else { v.wrapping_sub(6) } & 0xff;
                    af = true;
                } else {
                    af = false;
                }
                if al > 0x99 || cf {
                    v = if add { v.wrapping_add(0x60) } else { v.wrapping_sub(0x60) } & 0xff;
                    cf = true;
                } else {
                    cf = false;
                }
                self.set_reg(0, 1, v);
                let nf = szp(v, 1) | if cf { CF } else { 0 } | if af { AF } else { 0 };
                self.set_status(flags::STATUS, nf);
            }
            M::Aaa | M::Aas => {
                let f = self.flags();
                let al = self.reg(0, 1);
                if (al & 0xf) > 9 || f & AF != 0 {
                    let ax = if m == M::Aaa {
                        (self.reg(0, 2).wrapping_add(0x106)) & 0xffff
                    } else {
                        let a = self.reg(0, 2).wrapping_sub(6) & 0xffff;
                        (a & 0xff) | (((a >> 8).wrapping_sub(1) & 0xff) << 8)
                    };
                    self.set_reg(0, 2, ax & 0xff0f);
                    self.set_status(flags::STATUS, CF | AF | szp(ax & 0xf, 1));
                } else {
                    self.set_reg(0, 1, al & 0xf);
                    self.set_status(flags::STATUS, szp(al & 0xf, 1));
                }
            }
            M::Aam => {
                let base = ins.immediate8() as u64;
                if base == 0 {
                    return Err(Fault::Exc(DE, None));
                }
                let al = self.reg(0, 1);
                let v = ((al / base) << 8) | (al % base);
                self.set_reg(0, 2, v);
                self.set_status(flags::STATUS, szp(v & 0xff, 1));
            }
            M::Aad => {
                let base = ins.immediate8() as u64;
                let ax = self.reg(0, 2);
                let v = ((ax & 0xff) + (ax >> 8) * base) & 0xff;
                self.set_reg(0, 2, v);
                self.set_status(flags::STATUS, szp(v, 1));
            }
            M::Ud0 | M::Ud1 | M::Ud2 => return Err(ud()),
            _ => return self.exec_system(ins),
        }
        Ok(Next)
    }

    /// The operand size of a near/far call or return, from how far it moves the stack.
    fn branch_size(&self, ins: &Instruction) -> usize {
        let inc = ins.stack_pointer_increment().unsigned_abs() as usize;
        let imm = if matches!(ins.mnemonic(), M::Ret | M::Retf) && ins.op_count() > 0 {
            ins.immediate16() as usize
        } else {
            0
        };
        let far = match ins.mnemonic() {
            M::Retf => true,
            M::Call => matches!(ins.op0_kind(), OpKind::FarBranch16 | OpKind::FarBranch32) || is_far(ins),
            _ => false,
        };
        let n = inc.saturating_sub(imm);
        let n = if far { n / 2 } else { n };
        if n == 0 {
            (self.bitness / 8) as usize
        } else {
            n
        }
    }

    fn read_far_ptr(&mut self, ins: &Instruction) -> R<(u16, u64)> {
        let seg = self.mem_seg(ins);
        let ea = self.ea(ins);
        let os = ins.memory_size().size() - 2;
        let off = self.read(seg, ea, os)?;
        let sel = self.read(seg, ea + os as u64, 2)? as u16;
        Ok((sel, off))
    }

    fn mul1(&mut self, ins: &Instruction, signed: bool) -> R<()> {
        let size = self.op_size(ins, 0);
        let b = self.rd(ins, 0)?;
        let a = self.reg(0, size);
        let (lo, hi, of) = if signed {
            let p = (sx(a, size) as i128) * (sx(b, size) as i128);
            let lo = (p as u64) & mask(size);
            let hi = ((p >> (size as u32 * 8)) as u64) & mask(size);
            (lo, hi, sx(lo, size) as i128 != p)
        } else {
            let p = (a as u128) * (b as u128);
            let lo = (p as u64) & mask(size);
            let hi = ((p >> (size as u32 * 8)) as u64) & mask(size);
            (lo, hi, hi != 0)
        };
        if size == 1 {
            self.set_reg(0, 2, lo | (hi << 8));
        } else {
            self.set_reg(0, size, lo);
            self.set_reg(2, size, hi);
        }
        self.set_szp_flags(lo, size, of, of);
        Ok(())
    }

    fn div(&mut self, ins: &Instruction, signed: bool) -> R<()> {
        let size = self.op_size(ins, 0);
        let d = self.rd(ins, 0)? & mask(size);
        if d == 0 {
            return Err(Fault::Exc(DE, None));
        }
        let bits = size as u32 * 8;
        let (lo, hi) = if size == 1 {
            (self.reg(0, 2) & 0xff, self.reg(0, 2) >> 8)
        } else {
            (self.reg(0, size), self.reg(2, size))
        };
        let n: u128 = ((hi as u128) << bits) | lo as u128;
        let (q, r) = if signed {
            let total = bits * 2;
            let sn = ((n << (128 - total)) as i128) >> (128 - total);
            let sd = sx(d, size) as i128;
            let q = sn.checked_div(sd).ok_or(Fault::Exc(DE, None))?;
            let r = sn % sd;
            let min = -(1i128 << (bits - 1));
            let max = (1i128 << (bits - 1)) - 1;
            if q < min || q > max {
                return Err(Fault::Exc(DE, None));
            }
            ((q as u64) & mask(size), (r as u64) & mask(size))
        } else {
            let q = n / d as u128;
            if q >> bits != 0 {
                return Err(Fault::Exc(DE, None));
            }
            (q as u64, (n % d as u128) as u64)
        };
        if size == 1 {
            self.set_reg(0, 2, q | (r << 8));
        } else {
            self.set_reg(0, size, q);
            self.set_reg(2, size, r);
        }
        Ok(())
    }

    fn popf(&mut self, v: u64, os: usize) {
        let mut changeable = flags::STATUS | flags::TF | DF | flags::NT | flags::AC | flags::ID;
        if self.cpl == 0 || !self.protected() {
            changeable |= flags::IOPL | flags::IF;
        } else if self.cpl as u64 <= (self.rflags >> 12) & 3 {
            changeable |= flags::IF;
        }
        if os == 2 {
            changeable &= 0xffff;
        }
        let old = self.flags();
        let was_if = old & flags::IF != 0;
        self.set_flags((old & !changeable) | (v & changeable));
        if !was_if && self.rflags & flags::IF != 0 {
            self.inhibit_irq = true;
        }
    }

    fn check_iopl(&self) -> R<()> {
        if self.protected() && self.cpl as u64 > (self.rflags >> 12) & 3 {
            return Err(gp(0));
        }
        Ok(())
    }

    pub(crate) fn check_cpl0(&self) -> R<()> {
        if self.protected() && self.cpl != 0 {
            return Err(gp(0));
        }
        Ok(())
    }

    fn check_io(&mut self, port: u16, size: usize) -> R<()> {
        if !self.protected() || self.cpl as u64 <= (self.rflags >> 12) & 3 {
            return Ok(());
        }
        // The TSS I/O permission bitmap.
        if self.tr.limit < 0x67 {
            return Err(gp(0));
        }
        let base = self.sys_read(self.tr.base + 0x66, 2)?;
        let byte = base + (port as u64 >> 3);
        if byte + 1 > self.tr.limit as u64 {
            return Err(gp(0));
        }
        let bits = self.sys_read(self.tr.base + byte, 2)?;
        let m = ((1u64 << size) - 1) << (port & 7);
        if bits & m != 0 {
            return Err(gp(0));
        }
        Ok(())
    }

    /// Reads an I/O port.
    pub fn port_in(&mut self, port: u16, size: usize) -> u64 {
        let mut b = [0u8; 4];
        // A device may have written guest memory (DMA) before answering.
        self.new_slice();
        if let Some(io) = self.io {
            // SAFETY: see `Cpu::io`; the pointer is valid during `run`.
            unsafe { &*io }.pio_read(port, &mut b[..size]);
        } else {
            b.fill(0xff);
        }
        u32::from_le_bytes(b) as u64 & mask(size as u8)
    }

    /// Writes an I/O port.
    pub fn port_out(&mut self, port: u16, size: usize, v: u64) {
        let b = (v as u32).to_le_bytes();
        // A device may write guest memory (DMA) before this returns.
        self.new_slice();
        if let Some(io) = self.io {
            // SAFETY: see `Cpu::io`; the pointer is valid during `run`.
            unsafe { &*io }.pio_write(port, &b[..size]);
        }
    }

    /// String instructions, with REP prefixes done in a loop inside one step.
    fn string(&mut self, ins: &Instruction) -> R<Flow> {
        let m = ins.mnemonic();
        let size: usize = match m {
            M::Movsb | M::Cmpsb | M::Stosb | M::Lodsb | M::Scasb | M::Insb | M::Outsb => 1,
            M::Movsw | M::Cmpsw | M::Stosw | M::Lodsw | M::Scasw | M::Insw | M::Outsw => 2,
            M::Movsd | M::Cmpsd | M::Stosd | M::Lodsd | M::Scasd | M::Insd | M::Outsd => 4,
            _ => 8,
        };
        // The address size comes from the operand kind (SI/ESI/RSI or DI/EDI/RDI).
        let asz: u8 = match (0..ins.op_count()).map(|i| ins.op_kind(i)).find(|k| {
            matches!(
                k,
                OpKind::MemorySegSI
                    | OpKind::MemorySegESI
                    | OpKind::MemorySegRSI
                    | OpKind::MemoryESDI
                    | OpKind::MemoryESEDI
                    | OpKind::MemoryESRDI
            )
        }) {
            Some(OpKind::MemorySegSI) | Some(OpKind::MemoryESDI) => 2,
            Some(OpKind::MemorySegESI) | Some(OpKind::MemoryESEDI) => 4,
            _ => 8,
        };
        let am = mask(asz);
        let rep = ins.has_rep_prefix() || ins.has_repne_prefix();
        let src_seg = crate::operand::mem_segment(ins, self.bitness);
        let src_seg = if src_seg > 5 { DS } else { src_seg };
        let step: u64 = if self.rflags & DF != 0 { (size as u64).wrapping_neg() } else { size as u64 };
        let mut count = if rep { self.reg(1, asz) } else { 1 };
        if count == 0 {
            return Ok(Next);
        }
        let mut budget = 0x4000u32;
        loop {
            let si = self.reg(6, asz);
            let di = self.reg(7, asz);
            match m {
                M::Movsb | M::Movsw | M::Movsd | M::Movsq => {
                    if rep && step == size as u64 && count > 1 {
                        if let Some(n) = self.bulk_movs(src_seg, si, di, size, count, am)? {
                            count -= n;
                            self.set_reg(6, asz, si.wrapping_add(n * size as u64) & am);
                            self.set_reg(7, asz, di.wrapping_add(n * size as u64) & am);
                            self.set_reg(1, asz, count);
                            if count == 0 {
                                break;
                            }
                            continue;
                        }
                    }
                    let v = self.read(src_seg, si, size)?;
                    self.write(ES, di, size, v)?;
                    self.set_reg(6, asz, si.wrapping_add(step) & am);
                    self.set_reg(7, asz, di.wrapping_add(step) & am);
                }
                M::Stosb | M::Stosw | M::Stosd | M::Stosq => {
                    let v = self.regs[0];
                    if rep && step == size as u64 && count > 1 {
                        if let Some(n) = self.bulk_stos(di, size, count, v, am)? {
                            count -= n;
                            self.set_reg(7, asz, di.wrapping_add(n * size as u64) & am);
                            self.set_reg(1, asz, count);
                            if count == 0 {
                                break;
                            }
                            continue;
                        }
                    }
                    self.write(ES, di, size, v)?;
                    self.set_reg(7, asz, di.wrapping_add(step) & am);
                }
                M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq => {
                    let v = self.read(src_seg, si, size)?;
                    self.set_reg(0, size as u8, v);
                    self.set_reg(6, asz, si.wrapping_add(step) & am);
                }
                M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq => {
                    let a = self.read(src_seg, si, size)?;
                    let b = self.read(ES, di, size)?;
                    self.alu(M::Cmp, size as u8, a, b);
                    self.set_reg(6, asz, si.wrapping_add(step) & am);
                    self.set_reg(7, asz, di.wrapping_add(step) & am);
                }
                M::Scasb | M::Scasw | M::Scasd | M::Scasq => {
                    let a = self.reg(0, size as u8);
                    let b = self.read(ES, di, size)?;
                    self.alu(M::Cmp, size as u8, a, b);
                    self.set_reg(7, asz, di.wrapping_add(step) & am);
                }
                M::Insb | M::Insw | M::Insd => {
                    let port = self.reg(2, 2) as u16;
                    self.check_io(port, size)?;
                    self.probe_write(self.lin(ES, di), size)?;
                    let v = self.port_in(port, size);
                    self.write(ES, di, size, v)?;
                    self.set_reg(7, asz, di.wrapping_add(step) & am);
                }
                _ => {
                    let port = self.reg(2, 2) as u16;
                    self.check_io(port, size)?;
                    let v = self.read(src_seg, si, size)?;
                    self.port_out(port, size, v);
                    self.set_reg(6, asz, si.wrapping_add(step) & am);
                }
            }
            if !rep {
                break;
            }
            count = count.wrapping_sub(1) & am;
            self.set_reg(1, asz, count);
            if count == 0 {
                break;
            }
            if matches!(
                m,
                M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq | M::Scasb | M::Scasw | M::Scasd | M::Scasq
            ) {
                let z = self.flag(ZF);
                if (ins.has_repe_prefix() && !z) || (ins.has_repne_prefix() && z) {
                    break;
                }
            }
            budget -= 1;
            if budget == 0 {
                // Let interrupts in: restart the instruction later.
                self.rip = self.cur_ip;
                return Ok(Branch);
            }
        }
        Ok(Next)
    }

    /// Copies as many whole elements as fit in the current source and destination pages with
    /// one memmove; None when the pages are not plain RAM.
    fn bulk_movs(
        &mut self,
        seg: usize,
        si: u64,
        di: u64,
        size: usize,
        count: u64,
        am: u64,
    ) -> R<Option<u64>> {
        let sl = self.lin(seg, si);
        let dl = self.lin(ES, di);
        let room = (4096 - (sl & 0xfff)).min(4096 - (dl & 0xfff)).min(am - si.max(di) + 1);
        let n = (room / size as u64).min(count);
        if n == 0 {
            return Ok(None);
        }
        let bytes = n as usize * size;
        // Overlap within a forward copy must replicate element by element.
        if dl > sl && dl < sl + bytes as u64 {
            return Ok(None);
        }
        let s = self.tlb_lookup(sl, Access::Read)?;
        let d = self.tlb_lookup(dl, Access::Write)?;
        if s.host.is_null() || d.host.is_null() || d.read_only_rom {
            return Ok(None);
        }
        let dphys = d.phys | (dl & 0xfff);
        self.code_write(dphys, bytes);
        // SAFETY: both ranges lie within single mapped 4 KiB pages (room bounds them);
        // `copy` handles overlap.
        unsafe {
            std::ptr::copy(s.host.add((sl & 0xfff) as usize), d.host.add((dl & 0xfff) as usize), bytes)
        };
        Ok(Some(n))
    }

    fn bulk_stos(&mut self, di: u64, size: usize, count: u64, v: u64, am: u64) -> R<Option<u64>> {
        let dl = self.lin(ES, di);
        let room = (4096 - (dl & 0xfff)).min(am - di + 1);
        let n = (room / size as u64).min(count);
        if n == 0 {
            return Ok(None);
        }
        let d = self.tlb_lookup(dl, Access::Write)?;
        if d.host.is_null() || d.read_only_rom {
            return Ok(None);
        }
        let bytes = n as usize * size;
        self.code_write(d.phys | (dl & 0xfff), bytes);
        let pat = v.to_le_bytes();
        // SAFETY: the range lies within one mapped 4 KiB page (room bounds it).
        let dst = unsafe { std::slice::from_raw_parts_mut(d.host.add((dl & 0xfff) as usize), bytes) };
        if size == 1 {
            dst.fill(pat[0]);
        } else {
            for (i, b) in dst.iter_mut().enumerate() {
                *b = pat[i % size];
            }
        }
        Ok(Some(n))
    }
}

fn is_far(ins: &Instruction) -> bool {
    matches!(
        ins.memory_size(),
        iced_x86::MemorySize::SegPtr16 | iced_x86::MemorySize::SegPtr32 | iced_x86::MemorySize::SegPtr64
    )
}

fn stack_op_size(ins: &Instruction, bitness: u32) -> usize {
    let inc = ins.stack_pointer_increment();
    if inc != 0 {
        inc.unsigned_abs() as usize
    } else {
        (bitness / 8) as usize
    }
}

/// The operand size of ENTER and LEAVE, which iced gives no operand for: from their Code.
fn frame_op_size(ins: &Instruction, bitness: u32) -> usize {
    match ins.code() {
        Code::Enterw_imm16_imm8 | Code::Leavew => 2,
        Code::Enterd_imm16_imm8 | Code::Leaved => 4,
        Code::Enterq_imm16_imm8 | Code::Leaveq => 8,
        _ => (bitness / 8) as usize,
    }
}

impl Cpu {
    /// ENTER: the frame pointer, `level - 1` frame pointers copied from the enclosing frame
    /// and the new frame pointer pushed, then the final stack pointer checked for writing (in
    /// the host CPU's order). A fault leaves RSP and RBP as they were (the stores below RSP
    /// stay, as on the host).
    fn enter(&mut self, ins: &Instruction) -> R<()> {
        let os = frame_op_size(ins, self.bitness);
        let size = ins.immediate16() as u64;
        let level = (ins.immediate8_2nd() & 31) as u64;
        let ss = self.stack_size();
        let sm = mask(ss);
        let (sp, bp) = (self.reg(4, ss), self.reg(5, ss));
        let step = os as u64;
        let mut a = sp.wrapping_sub(step) & sm;
        let frame = a;
        self.write(SS, a, os, self.reg(5, os as u8))?;
        for i in 1..level {
            let v = self.read(SS, bp.wrapping_sub(i * step) & sm, os)?;
            a = a.wrapping_sub(step) & sm;
            self.write(SS, a, os, v)?;
        }
        if level > 0 {
            a = a.wrapping_sub(step) & sm;
            self.write(SS, a, os, frame)?;
        }
        let fin = a.wrapping_sub(size) & sm;
        self.probe_write(self.lin(SS, fin), 1).map_err(on_stack)?;
        self.set_reg(5, os as u8, frame);
        self.set_reg(4, ss, fin);
        Ok(())
    }
}
