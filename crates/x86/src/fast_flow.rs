//! Specialised handlers for near control transfers and the stack: Jcc, JMP, CALL, RET,
//! PUSH and POP of registers and immediates, and NOP.
//!
//! Branch targets were computed at decode time; a handler that faults leaves RIP and the
//! stack as they were.

use crate::block::{leave, next, step, step_mem, Op, Step};
use crate::cpu::Cpu;
use crate::exec::Flow::{Branch, Next};
use crate::fast_alu::{condition, op_fault};
use crate::flags::mask;

pub(crate) fn jcc<const C: u8>(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        if c.cond(condition(C)) {
            c.rip = op.imm;
            return Ok(Branch);
        }
        Ok(Next)
    })
}

pub(crate) fn jmp_rel(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        c.rip = op.imm;
        Ok(Branch)
    })
}

pub(crate) fn jmp_r<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step(c, op, |c| {
        c.rip = c.regs[op.d as usize & 15] & mask(S);
        Ok(Branch)
    })
}

pub(crate) fn jmp_m<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        let l = c.op_lin(op);
        c.rip = c.lin_read(l, S as usize).map_err(|f| op_fault(op, f))?;
        Ok(Branch)
    })
}

pub(crate) fn call_rel<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if c.push_fast(S as usize, op.next) {
        c.rip = op.imm;
        return leave(c, op, Step::Branch);
    }
    call_rel_slow::<S>(c, op)
}

#[inline(never)]
fn call_rel_slow<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        c.push(S as usize, op.next)?;
        c.rip = op.imm;
        Ok(Branch)
    })
}

/// A CALL whose target the block goes on with: only the return address is pushed.
pub(crate) fn call_on<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if c.push_fast(S as usize, op.next) {
        return next(c, op);
    }
    call_on_slow::<S>(c, op)
}

#[inline(never)]
fn call_on_slow<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    let gen = c.icache_gen;
    step(c, op, |c| {
        c.push(S as usize, op.next)?;
        if c.icache_gen != gen {
            // The push changed code or translations: end the block at the target.
            c.rip = op.imm;
            return Ok(Branch);
        }
        Ok(Next)
    })
}

pub(crate) fn call_r<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        let t = c.regs[op.d as usize & 15] & mask(S);
        c.push(S as usize, op.next)?;
        c.rip = t;
        Ok(Branch)
    })
}

pub(crate) fn call_m<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        let l = c.op_lin(op);
        let t = c.lin_read(l, S as usize).map_err(|f| op_fault(op, f))?;
        c.push(S as usize, op.next)?;
        c.rip = t;
        Ok(Branch)
    })
}

/// RET, releasing `op.imm` more bytes of stack.
pub(crate) fn ret<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if op.imm == 0 {
        if let Some(t) = c.pop_fast(S as usize) {
            c.rip = t;
            return leave(c, op, Step::Branch);
        }
    }
    ret_slow::<S>(c, op)
}

#[inline(never)]
fn ret_slow<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        let t = c.pop(S as usize)?;
        if op.imm != 0 {
            let ss = c.stack_size();
            let sp = c.reg(4, ss).wrapping_add(op.imm);
            c.set_reg(4, ss, sp);
        }
        c.rip = t;
        Ok(Branch)
    })
}

pub(crate) fn push_r<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if c.push_fast(S as usize, c.regs[op.d as usize & 15] & mask(S)) {
        return next(c, op);
    }
    push_r_slow::<S>(c, op)
}

#[inline(never)]
fn push_r_slow<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        let v = c.regs[op.d as usize & 15] & mask(S);
        c.push(S as usize, v)?;
        Ok(Next)
    })
}

pub(crate) fn push_i<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if c.push_fast(S as usize, op.imm) {
        return next(c, op);
    }
    push_i_slow::<S>(c, op)
}

#[inline(never)]
fn push_i_slow<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        c.push(S as usize, op.imm)?;
        Ok(Next)
    })
}

pub(crate) fn pop_r<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    if let Some(v) = c.pop_fast(S as usize) {
        c.set_reg(op.d as usize & 15, S, v);
        return next(c, op);
    }
    pop_r_slow::<S>(c, op)
}

#[inline(never)]
fn pop_r_slow<const S: u8>(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        let v = c.pop(S as usize)?;
        c.set_reg(op.d as usize & 15, S, v);
        Ok(Next)
    })
}

pub(crate) fn nop(c: &mut Cpu, op: &Op) -> Step {
    next(c, op)
}
