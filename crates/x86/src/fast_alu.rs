//! Specialised handlers for the hot integer instructions, monomorphised per operation and
//! operand size: register, immediate and simple memory forms of ALU operations, MOV, MOVZX/
//! MOVSX, LEA, INC/DEC, NEG/NOT, shifts, IMUL, SETcc and CMOVcc.
//!
//! Each does exactly what `Cpu::exec` does for the same form, but with operands picked apart
//! at decode time. A handler that faults leaves registers, memory and flags untouched.

use crate::block::{leave, next, skip, step, step_mem, Op, Step};
use crate::cpu::{load, on_stack, store, Cpu, Fault, R, SS};
use crate::exec::Flow::Next;
use crate::flags::{mask, Lazy, LazyOp};
use iced_x86::{ConditionCode, Mnemonic};

pub(crate) const ADD: u8 = 0;
pub(crate) const OR: u8 = 1;
pub(crate) const ADC: u8 = 2;
pub(crate) const SBB: u8 = 3;
pub(crate) const AND: u8 = 4;
pub(crate) const SUB: u8 = 5;
pub(crate) const XOR: u8 = 6;
pub(crate) const CMP: u8 = 7;
pub(crate) const TEST: u8 = 8;

pub(crate) const SHL: u8 = 0;
pub(crate) const SHR: u8 = 1;
pub(crate) const SAR: u8 = 2;
pub(crate) const ROL: u8 = 3;
pub(crate) const ROR: u8 = 4;

/// The condition for a `cc_index` (o, no, b, ae, e, ne, be, a, s, ns, p, np, l, ge, le, g).
#[inline(always)]
pub(crate) const fn condition(c: u8) -> ConditionCode {
    use ConditionCode as C;
    match c {
        0 => C::o,
        1 => C::no,
        2 => C::b,
        3 => C::ae,
        4 => C::e,
        5 => C::ne,
        6 => C::be,
        7 => C::a,
        8 => C::s,
        9 => C::ns,
        10 => C::p,
        11 => C::np,
        12 => C::l,
        13 => C::ge,
        14 => C::le,
        _ => C::g,
    }
}

impl Cpu {
    /// The effective address of the op's memory operand.
    #[inline(always)]
    pub(crate) fn op_ea(&self, op: &Op) -> u64 {
        let mut a = op.disp;
        if let Some(b) = self.regs.get(op.base as usize) {
            a = a.wrapping_add(*b);
        }
        if let Some(x) = self.regs.get(op.index as usize) {
            a = a.wrapping_add(*x << op.scale);
        }
        a & op.amask
    }

    /// The linear address of the op's memory operand.
    #[inline(always)]
    pub(crate) fn op_lin(&self, op: &Op) -> u64 {
        let ea = self.op_ea(op);
        if op.flat {
            ea
        } else {
            self.lin(op.seg as usize, ea)
        }
    }

    /// Register `r` (0-15), zero-extended from `S` bytes.
    #[inline(always)]
    fn r<const S: u8>(&self, r: u8) -> u64 {
        self.regs[r as usize & 15] & mask(S)
    }

    /// Writes register `r` (0-15) at size `S` (32-bit writes clear the upper half).
    #[inline(always)]
    fn w<const S: u8>(&mut self, r: u8, v: u64) {
        self.set_reg(r as usize & 15, S, v);
    }

    #[inline(always)]
    fn mem_read<const S: u8>(&mut self, op: &Op) -> R<u64> {
        let l = self.op_lin(op);
        self.lin_read(l, S as usize).map_err(|f| op_fault(op, f))
    }
}

/// The fault of an access to the op's memory operand: #SS(0) rather than #GP(0) through SS.
#[inline]
pub(crate) fn op_fault(op: &Op, f: Fault) -> Fault {
    if op.seg == SS as u8 {
        on_stack(f)
    } else {
        f
    }
}

/// The result and flags of ALU operation `K` at size `S`.
#[inline(always)]
fn alu<const K: u8, const S: u8>(c: &Cpu, a: u64, b: u64) -> (u64, Lazy) {
    let m = mask(S);
    let (a, b) = (a & m, b & m);
    let (r, op, cin) = match K {
        ADD => (a.wrapping_add(b), LazyOp::Add, false),
        OR => (a | b, LazyOp::Logic, false),
        ADC => {
            let ci = c.carry();
            (a.wrapping_add(b).wrapping_add(ci as u64), LazyOp::Adc, ci)
        }
        SBB => {
            let ci = c.carry();
            (a.wrapping_sub(b).wrapping_sub(ci as u64), LazyOp::Sbb, ci)
        }
        AND | TEST => (a & b, LazyOp::Logic, false),
        SUB | CMP => (a.wrapping_sub(b), LazyOp::Sub, false),
        _ => (a ^ b, LazyOp::Logic, false),
    };
    let r = r & m;
    (r, Lazy::new(op, S, a, b, r, cin))
}

/// Whether ALU operation `K` writes its destination.
const fn writes(k: u8) -> bool {
    k != CMP && k != TEST
}

pub(crate) fn alu_rr<const K: u8, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        let (r, l) = alu::<K, S>(c, c.r::<S>(op.d), c.r::<S>(op.s));
        if writes(K) {
            c.w::<S>(op.d, r);
        }
        c.lazy = l;
        Ok(Next)
    })
}

pub(crate) fn alu_ri<const K: u8, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        let (r, l) = alu::<K, S>(c, c.r::<S>(op.d), op.imm);
        if writes(K) {
            c.w::<S>(op.d, r);
        }
        c.lazy = l;
        Ok(Next)
    })
}

pub(crate) fn alu_rm<const K: u8, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if let Some(p) = c.read_ptr(c.op_lin(op), S as usize) {
        // SAFETY: `read_ptr` gives S readable bytes.
        let b = unsafe { load(p, S as usize) };
        let (r, l) = alu::<K, S>(c, c.r::<S>(op.d), b);
        if writes(K) {
            c.w::<S>(op.d, r);
        }
        c.lazy = l;
        return next(c, op);
    }
    alu_rm_slow::<K, S>(c, op)
}

#[inline(never)]
fn alu_rm_slow<const K: u8, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        let b = c.mem_read::<S>(op)?;
        let (r, l) = alu::<K, S>(c, c.r::<S>(op.d), b);
        if writes(K) {
            c.w::<S>(op.d, r);
        }
        c.lazy = l;
        Ok(Next)
    })
}

/// ALU operation `K` on a memory destination with a register source (or an immediate: `MI`).
pub(crate) fn alu_m<const K: u8, const S: u8, const MI: bool>(c: &mut Cpu, op: &Op) -> Step {
    let lin = c.op_lin(op);
    let p = if writes(K) {
        c.write_ptr(lin, S as usize)
    } else {
        c.read_ptr(lin, S as usize).map(|p| p as *mut u8)
    };
    if let Some(p) = p {
        // SAFETY: `write_ptr` gives S writable (and readable) bytes, `read_ptr` S readable
        // bytes (and nothing is written then).
        let a = unsafe { load(p, S as usize) };
        let (r, l) = alu::<K, S>(c, a, source::<S, MI>(c, op));
        if writes(K) {
            // SAFETY: as above.
            unsafe { store(p, S as usize, r) };
        }
        c.lazy = l;
        return next(c, op);
    }
    alu_m_slow::<K, S, MI>(c, op)
}

#[inline(never)]
fn alu_m_slow<const K: u8, const S: u8, const MI: bool>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        let lin = c.op_lin(op);
        let a = if writes(K) { c.lin_read_rmw(lin, S as usize) } else { c.lin_read(lin, S as usize) };
        let a = a.map_err(|f| op_fault(op, f))?;
        let (r, l) = alu::<K, S>(c, a, source::<S, MI>(c, op));
        if writes(K) {
            c.lin_write(lin, S as usize, r).map_err(|f| op_fault(op, f))?;
        }
        c.lazy = l;
        Ok(Next)
    })
}

/// The second operand: the immediate when `IMM`, else register `op.s`.
#[inline(always)]
fn source<const S: u8, const IMM: bool>(c: &Cpu, op: &Op) -> u64 {
    if IMM {
        op.imm
    } else {
        c.r::<S>(op.s)
    }
}

/// CMP or TEST (`K`) of a register with a register (or an immediate: `RI`) fused with the
/// conditional jump (condition `C`) after it, to `op.disp`.
pub(crate) fn cmp_jcc<const K: u8, const S: u8, const C: u8, const RI: bool>(c: &mut Cpu, op: &Op) -> Step {
    let (_, l) = alu::<K, S>(c, c.r::<S>(op.d), source::<S, RI>(c, op));
    c.lazy = l;
    if c.cond(condition(C)) {
        c.rip = op.disp;
        return leave(c, op, Step::Branch);
    }
    skip(c, op)
}

pub(crate) fn mov_rr<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        let v = c.r::<S>(op.s);
        c.w::<S>(op.d, v);
        Ok(Next)
    })
}

pub(crate) fn mov_ri<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        c.w::<S>(op.d, op.imm);
        Ok(Next)
    })
}

pub(crate) fn mov_rm<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if let Some(p) = c.read_ptr(c.op_lin(op), S as usize) {
        // SAFETY: `read_ptr` gives S readable bytes.
        let v = unsafe { load(p, S as usize) };
        c.w::<S>(op.d, v);
        return next(c, op);
    }
    mov_rm_slow::<S>(c, op)
}

#[inline(never)]
fn mov_rm_slow<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        let v = c.mem_read::<S>(op)?;
        c.w::<S>(op.d, v);
        Ok(Next)
    })
}

pub(crate) fn mov_mr<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if let Some(p) = c.write_ptr(c.op_lin(op), S as usize) {
        // SAFETY: `write_ptr` gives S writable bytes.
        unsafe { store(p, S as usize, c.r::<S>(op.s)) };
        return next(c, op);
    }
    mov_mr_slow::<S>(c, op)
}

#[inline(never)]
fn mov_mr_slow<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        let l = c.op_lin(op);
        let v = c.r::<S>(op.s);
        c.lin_write(l, S as usize, v).map_err(|f| op_fault(op, f))?;
        Ok(Next)
    })
}

pub(crate) fn mov_mi<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if let Some(p) = c.write_ptr(c.op_lin(op), S as usize) {
        // SAFETY: `write_ptr` gives S writable bytes.
        unsafe { store(p, S as usize, op.imm) };
        return next(c, op);
    }
    mov_mi_slow::<S>(c, op)
}

#[inline(never)]
fn mov_mi_slow<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        let l = c.op_lin(op);
        c.lin_write(l, S as usize, op.imm).map_err(|f| op_fault(op, f))?;
        Ok(Next)
    })
}

/// `SS`-byte source widened to `DS` bytes, sign- or zero-extended.
#[inline(always)]
fn widen<const SIGN: bool, const SS: u8, const DS: u8>(v: u64) -> u64 {
    let v = v & mask(SS);
    if SIGN {
        let sh = 64 - SS as u32 * 8;
        (((v << sh) as i64) >> sh) as u64
    } else {
        v
    }
}

pub(crate) fn movx_rr<const SIGN: bool, const SS: u8, const DS: u8>(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        let v = widen::<SIGN, SS, DS>(c.r::<SS>(op.s));
        c.w::<DS>(op.d, v);
        Ok(Next)
    })
}

pub(crate) fn movx_rm<const SIGN: bool, const SS: u8, const DS: u8>(c: &mut Cpu, op: &Op) -> Step {
    if let Some(p) = c.read_ptr(c.op_lin(op), SS as usize) {
        // SAFETY: `read_ptr` gives SS readable bytes.
        let v = widen::<SIGN, SS, DS>(unsafe { load(p, SS as usize) });
        c.w::<DS>(op.d, v);
        return next(c, op);
    }
    movx_rm_slow::<SIGN, SS, DS>(c, op)
}

#[inline(never)]
fn movx_rm_slow<const SIGN: bool, const SS: u8, const DS: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        let v = widen::<SIGN, SS, DS>(c.mem_read::<SS>(op)?);
        c.w::<DS>(op.d, v);
        Ok(Next)
    })
}

pub(crate) fn lea<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        let ea = c.op_ea(op);
        c.w::<S>(op.d, ea);
        Ok(Next)
    })
}

#[inline(always)]
fn incdec<const INC: bool, const S: u8>(c: &Cpu, a: u64) -> (u64, Lazy) {
    let m = mask(S);
    let a = a & m;
    let (r, op) = if INC { (a.wrapping_add(1), LazyOp::Inc) } else { (a.wrapping_sub(1), LazyOp::Dec) };
    let r = r & m;
    (r, Lazy::new(op, S, a, 1, r, c.carry()))
}

pub(crate) fn incdec_r<const INC: bool, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        let (r, l) = incdec::<INC, S>(c, c.r::<S>(op.d));
        c.w::<S>(op.d, r);
        c.lazy = l;
        Ok(Next)
    })
}

pub(crate) fn incdec_m<const INC: bool, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        let lin = c.op_lin(op);
        let a = c.lin_read_rmw(lin, S as usize).map_err(|f| op_fault(op, f))?;
        let (r, l) = incdec::<INC, S>(c, a);
        c.lin_write(lin, S as usize, r).map_err(|f| op_fault(op, f))?;
        c.lazy = l;
        Ok(Next)
    })
}

pub(crate) fn neg_r<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        let (r, l) = alu::<SUB, S>(c, 0, c.r::<S>(op.d));
        c.w::<S>(op.d, r);
        c.lazy = l;
        Ok(Next)
    })
}

pub(crate) fn not_r<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        let v = !c.r::<S>(op.d) & mask(S);
        c.w::<S>(op.d, v);
        Ok(Next)
    })
}

/// Shift or rotate `K` of a register by an immediate count, or by CL when `op.s` is set.
pub(crate) fn shift_r<const K: u8, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        let count = if op.s == 1 { c.regs[1] } else { op.imm };
        let a = c.r::<S>(op.d);
        let m = match K {
            SHL => Mnemonic::Shl,
            SHR => Mnemonic::Shr,
            SAR => Mnemonic::Sar,
            ROL => Mnemonic::Rol,
            _ => Mnemonic::Ror,
        };
        match c.shift(m, S, a, count) {
            Some(r) => c.w::<S>(op.d, r),
            // A 32-bit register destination is zero-extended even by a zero count.
            None if S == 4 => c.w::<S>(op.d, a),
            None => {}
        }
        Ok(Next)
    })
}

#[inline(always)]
fn imul<const S: u8>(c: &mut Cpu, d: u8, a: u64, b: u64) {
    let sh = 64 - S as u32 * 8;
    let sa = ((a << sh) as i64 >> sh) as i128;
    let sb = ((b << sh) as i64 >> sh) as i128;
    let p = sa * sb;
    let r = (p as u64) & mask(S);
    let of = (((r << sh) as i64 >> sh) as i128) != p;
    c.w::<S>(d, r);
    c.set_szp_flags(r, S, of, of);
}

/// IMUL r, r (THREE: r, r, imm).
pub(crate) fn imul_r<const THREE: bool, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        let (a, b) = if THREE { (c.r::<S>(op.s), op.imm) } else { (c.r::<S>(op.d), c.r::<S>(op.s)) };
        imul::<S>(c, op.d, a, b);
        Ok(Next)
    })
}

/// IMUL r, m (THREE: r, m, imm).
pub(crate) fn imul_m<const THREE: bool, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        let v = c.mem_read::<S>(op)?;
        let (a, b) = if THREE { (v, op.imm) } else { (c.r::<S>(op.d), v) };
        imul::<S>(c, op.d, a, b);
        Ok(Next)
    })
}

pub(crate) fn setcc_r<const C: u8>(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        let v = c.cond(condition(C)) as u64;
        c.w::<1>(op.d, v);
        Ok(Next)
    })
}

pub(crate) fn setcc_m<const C: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        let v = c.cond(condition(C)) as u64;
        let l = c.op_lin(op);
        c.lin_write(l, 1, v).map_err(|f| op_fault(op, f))?;
        Ok(Next)
    })
}

pub(crate) fn cmov_r<const C: u8, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        let v = if c.cond(condition(C)) { c.r::<S>(op.s) } else { c.r::<S>(op.d) };
        c.w::<S>(op.d, v);
        Ok(Next)
    })
}

pub(crate) fn cmov_m<const C: u8, const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        // The source is read (and may fault) whether or not the move happens.
        let v = c.mem_read::<S>(op)?;
        let v = if c.cond(condition(C)) { v } else { c.r::<S>(op.d) };
        c.w::<S>(op.d, v);
        Ok(Next)
    })
}
