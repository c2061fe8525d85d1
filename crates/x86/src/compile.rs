//! Turning a decoded instruction into an [`Op`]: the operands are picked apart once and a
//! handler specialised for the form (register, immediate or simple memory operands of the
//! hot integer instructions) is chosen; everything else gets the generic handler, which runs
//! `Cpu::exec` on the full instruction.

use crate::block::{step_mem, Handler, Op, Step, NO_REG};
use crate::cpu::{Cpu, DS, FS};
use crate::exec::Flow;
use crate::fast_alu::*;
use crate::fast_flow::*;
use crate::operand::{gpr, mem_segment};
use iced_x86::{ConditionCode, Instruction, MemorySize, Mnemonic as M, OpKind, Register};

/// Picks the monomorphised handler for a size in bytes (1, 2, 4, else 8).
macro_rules! with_size {
    ($s:expr, $S:ident => $body:expr) => {
        match $s {
            1 => {
                const $S: u8 = 1;
                $body
            }
            2 => {
                const $S: u8 = 2;
                $body
            }
            4 => {
                const $S: u8 = 4;
                $body
            }
            _ => {
                const $S: u8 = 8;
                $body
            }
        }
    };
}

/// Picks the monomorphised handler for an ALU operation (`fast_alu::ADD` ... `TEST`).
macro_rules! with_alu {
    ($k:expr, $K:ident => $body:expr) => {
        match $k {
            ADD => {
                const $K: u8 = ADD;
                $body
            }
            OR => {
                const $K: u8 = OR;
                $body
            }
            ADC => {
                const $K: u8 = ADC;
                $body
            }
            SBB => {
                const $K: u8 = SBB;
                $body
            }
            AND => {
                const $K: u8 = AND;
                $body
            }
            SUB => {
                const $K: u8 = SUB;
                $body
            }
            XOR => {
                const $K: u8 = XOR;
                $body
            }
            CMP => {
                const $K: u8 = CMP;
                $body
            }
            _ => {
                const $K: u8 = TEST;
                $body
            }
        }
    };
}

/// Picks the monomorphised handler for a condition (`fast_alu::cc_index`).
macro_rules! with_cc {
    ($c:expr, $C:ident => $body:expr) => {
        match $c {
            0 => {
                const $C: u8 = 0;
                $body
            }
            1 => {
                const $C: u8 = 1;
                $body
            }
            2 => {
                const $C: u8 = 2;
                $body
            }
            3 => {
                const $C: u8 = 3;
                $body
            }
            4 => {
                const $C: u8 = 4;
                $body
            }
            5 => {
                const $C: u8 = 5;
                $body
            }
            6 => {
                const $C: u8 = 6;
                $body
            }
            7 => {
                const $C: u8 = 7;
                $body
            }
            8 => {
                const $C: u8 = 8;
                $body
            }
            9 => {
                const $C: u8 = 9;
                $body
            }
            10 => {
                const $C: u8 = 10;
                $body
            }
            11 => {
                const $C: u8 = 11;
                $body
            }
            12 => {
                const $C: u8 = 12;
                $body
            }
            13 => {
                const $C: u8 = 13;
                $body
            }
            14 => {
                const $C: u8 = 14;
                $body
            }
            _ => {
                const $C: u8 = 15;
                $body
            }
        }
    };
}

/// One operand as the fast handlers see it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum O {
    /// A general-purpose register (not AH/CH/DH/BH): index and size.
    R(u8, u8),
    /// A memory operand of this size (its address is in the op's memory fields).
    M(u8),
    /// An immediate, zero-extended from its operand size.
    I(u64),
    /// Anything else.
    X,
}

/// The address size (2, 4 or 8) of the memory operand, as `Cpu::addr_size` computes it.
fn addr_size(ins: &Instruction, bitness: u32) -> u8 {
    let b = ins.memory_base();
    let r = if b != Register::None { b } else { ins.memory_index() };
    match r {
        Register::EIP => 4,
        Register::RIP => 8,
        Register::None => match ins.memory_displ_size() {
            2 => 2,
            4 => 4,
            8 => 8,
            _ => (bitness / 8) as u8,
        },
        r => r.size() as u8,
    }
}

/// Fills the op's memory fields from the instruction; false when the address uses
/// something the fast path does not handle.
pub(crate) fn mem(ins: &Instruction, bitness: u32, op: &mut Op) -> bool {
    let reg = |r: Register| -> Option<u8> {
        match r {
            Register::None | Register::RIP | Register::EIP => Some(NO_REG),
            r => match gpr(r) {
                (i, 2..=8, false) => Some(i as u8),
                _ => None,
            },
        }
    };
    let (Some(base), Some(index)) = (reg(ins.memory_base()), reg(ins.memory_index())) else {
        return false;
    };
    op.base = base;
    op.index = index;
    op.scale = ins.memory_index_scale().trailing_zeros() as u8;
    op.disp = ins.memory_displacement64();
    op.amask = match addr_size(ins, bitness) {
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    };
    let seg = mem_segment(ins, bitness);
    if seg > 5 {
        return false;
    }
    op.seg = seg as u8;
    op.flat = bitness == 64 && seg < FS;
    true
}

/// Operand `i` of `ins`.
pub(crate) fn operand(ins: &Instruction, i: u32, bitness: u32, op: &mut Op) -> O {
    match ins.op_kind(i) {
        OpKind::Register => match gpr(ins.op_register(i)) {
            (r, size @ (1 | 2 | 4 | 8), false) => O::R(r as u8, size),
            _ => O::X,
        },
        OpKind::Memory => {
            let size = ins.memory_size().size();
            let far = matches!(
                ins.memory_size(),
                MemorySize::SegPtr16 | MemorySize::SegPtr32 | MemorySize::SegPtr64
            );
            if matches!(size, 1 | 2 | 4 | 8) && !far && mem(ins, bitness, op) {
                O::M(size as u8)
            } else {
                O::X
            }
        }
        OpKind::Immediate8 => O::I(ins.immediate8() as u64),
        OpKind::Immediate16 => O::I(ins.immediate16() as u64),
        OpKind::Immediate32 => O::I(ins.immediate32() as u64),
        OpKind::Immediate64 => O::I(ins.immediate64()),
        OpKind::Immediate8to16 => O::I(ins.immediate8to16() as u16 as u64),
        OpKind::Immediate8to32 => O::I(ins.immediate8to32() as u32 as u64),
        OpKind::Immediate8to64 => O::I(ins.immediate8to64() as u64),
        OpKind::Immediate32to64 => O::I(ins.immediate32to64() as u64),
        _ => O::X,
    }
}

/// The condition of a Jcc/SETcc/CMOVcc as a `cc_index`.
pub(crate) fn cc(ins: &Instruction) -> Option<u8> {
    use ConditionCode as C;
    Some(match ins.condition_code() {
        C::o => 0,
        C::no => 1,
        C::b => 2,
        C::ae => 3,
        C::e => 4,
        C::ne => 5,
        C::be => 6,
        C::a => 7,
        C::s => 8,
        C::ns => 9,
        C::p => 10,
        C::np => 11,
        C::l => 12,
        C::ge => 13,
        C::le => 14,
        C::g => 15,
        C::None => return None,
    })
}

/// The op for `ins` decoded at `bitness`; `next` is the RIP after it.
pub(crate) fn compile(ins: &Instruction, bitness: u32, next: u64) -> Op {
    let mut op = Op {
        run: generic,
        next,
        imm: 0,
        disp: 0,
        amask: u64::MAX,
        d: NO_REG,
        s: NO_REG,
        base: NO_REG,
        index: NO_REG,
        scale: 0,
        seg: DS as u8,
        flat: false,
        link: false,
        fused: false,
        len: ins.len() as u8,
        ins: None,
    };
    // The hot SSE forms keep the instruction: their handlers fall back to the exact path.
    if let Some(h) = crate::fast_sse_pick::pick(ins, |o| mem(ins, bitness, o), &mut op) {
        op.run = h;
        op.ins = Some(Box::new(*ins));
        return op;
    }
    match pick(ins, bitness, &mut op) {
        Some((h, link)) => {
            op.run = h;
            op.link = link;
        }
        None => op.ins = Some(Box::new(*ins)),
    }
    op
}

/// If `ins` is a direct near JMP or CALL that a block may continue through (decoding on at
/// its target), switches `op` to the handler that does the jump's work without leaving the
/// block (nothing for a JMP, the push for a CALL) and returns the target.
pub(crate) fn follow(ins: &Instruction, op: &mut Op) -> Option<u64> {
    if !matches!(ins.op0_kind(), OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64) {
        return None;
    }
    match ins.mnemonic() {
        M::Jmp => op.run = nop,
        M::Call => {
            let os = ins.stack_pointer_increment().unsigned_abs();
            if !matches!(os, 2 | 4 | 8) {
                return None;
            }
            op.run = with_size!(os, S => call_on::<S>);
        }
        _ => return None,
    }
    op.link = false;
    Some(ins.near_branch_target())
}

/// Fuses `prev` (compiled from `prev_ins`) with the conditional jump `jcc` that follows it,
/// when `prev` is a CMP or TEST of registers or a register and an immediate.
pub(crate) fn fuse(prev_ins: &Instruction, jcc: &Instruction, bitness: u32, prev: &mut Op) {
    let test = match prev_ins.mnemonic() {
        M::Cmp => false,
        M::Test => true,
        _ => return,
    };
    if !jcc.is_jcc_short_or_near() || prev_ins.op_count() != 2 {
        return;
    }
    let Some(c) = cc(jcc) else { return };
    let mut o = Op { ins: None, ..*prev };
    let o0 = operand(prev_ins, 0, bitness, &mut o);
    let o1 = operand(prev_ins, 1, bitness, &mut o);
    let h: Handler = match (o0, o1) {
        (O::R(_, s0), O::R(_, s1)) if s0 == s1 => match test {
            false => with_cc!(c, C => with_size!(s0, S => cmp_jcc::<CMP, S, C, false>)),
            true => with_cc!(c, C => with_size!(s0, S => cmp_jcc::<TEST, S, C, false>)),
        },
        (O::R(_, s0), O::I(_)) => match test {
            false => with_cc!(c, C => with_size!(s0, S => cmp_jcc::<CMP, S, C, true>)),
            true => with_cc!(c, C => with_size!(s0, S => cmp_jcc::<TEST, S, C, true>)),
        },
        _ => return,
    };
    // `prev` already holds the registers and the immediate (its own handler is the plain
    // CMP or TEST of the same form).
    prev.run = h;
    prev.disp = jcc.near_branch_target();
    prev.link = true;
    prev.fused = true;
}

/// Runs the instruction through `Cpu::exec`; ends the block if the mode changed.
pub(crate) fn generic(c: &mut Cpu, op: &Op) -> Step {
    step_mem(c, op, |c| {
        c.cur_ip = op.ip(c.bitness);
        c.rip = op.next;
        let (bits, cpl) = (c.bitness, c.cpl);
        let Some(ins) = &op.ins else { return Err(crate::cpu::ud()) };
        let f = c.exec(ins)?;
        // A mode change ends the block; so does an interrupt shadow (STI, MOV/POP SS), which
        // the run loop gives exactly one instruction.
        if c.cpl != cpl || c.code_bitness() != bits || c.inhibit_irq {
            return Ok(Flow::Branch);
        }
        Ok(f)
    })
}

/// The specialised handler for `ins`, and whether it may link to its successor.
fn pick(ins: &Instruction, bitness: u32, op: &mut Op) -> Option<(Handler, bool)> {
    let m = ins.mnemonic();
    let n = ins.op_count();
    let o0 = if n > 0 { operand(ins, 0, bitness, op) } else { O::X };
    let o1 = if n > 1 { operand(ins, 1, bitness, op) } else { O::X };
    let h: Handler = match m {
        M::Add | M::Or | M::Adc | M::Sbb | M::And | M::Sub | M::Xor | M::Cmp | M::Test if n == 2 => {
            let k = match m {
                M::Add => ADD,
                M::Or => OR,
                M::Adc => ADC,
                M::Sbb => SBB,
                M::And => AND,
                M::Sub => SUB,
                M::Xor => XOR,
                M::Cmp => CMP,
                _ => TEST,
            };
            match (o0, o1) {
                (O::R(d, s0), O::R(s, s1)) if s0 == s1 => {
                    op.d = d;
                    op.s = s;
                    with_alu!(k, K => with_size!(s0, S => alu_rr::<K, S>))
                }
                (O::R(d, s0), O::I(v)) => {
                    op.d = d;
                    op.imm = v;
                    with_alu!(k, K => with_size!(s0, S => alu_ri::<K, S>))
                }
                (O::R(d, s0), O::M(s1)) if s0 == s1 => {
                    op.d = d;
                    with_alu!(k, K => with_size!(s0, S => alu_rm::<K, S>))
                }
                (O::M(s0), O::R(s, s1)) if s0 == s1 => {
                    op.s = s;
                    with_alu!(k, K => with_size!(s0, S => alu_m::<K, S, false>))
                }
                (O::M(s0), O::I(v)) => {
                    op.imm = v;
                    with_alu!(k, K => with_size!(s0, S => alu_m::<K, S, true>))
                }
                _ => return None,
            }
        }
        M::Mov if n == 2 => match (o0, o1) {
            (O::R(d, s0), O::R(s, s1)) if s0 == s1 => {
                op.d = d;
                op.s = s;
                with_size!(s0, S => mov_rr::<S>)
            }
            (O::R(d, s0), O::I(v)) => {
                op.d = d;
                op.imm = v;
                with_size!(s0, S => mov_ri::<S>)
            }
            (O::R(d, s0), O::M(s1)) if s0 == s1 => {
                op.d = d;
                with_size!(s0, S => mov_rm::<S>)
            }
            (O::M(s0), O::R(s, s1)) if s0 == s1 => {
                op.s = s;
                with_size!(s0, S => mov_mr::<S>)
            }
            (O::M(s0), O::I(v)) => {
                op.imm = v;
                with_size!(s0, S => mov_mi::<S>)
            }
            _ => return None,
        },
        M::Movzx | M::Movsx | M::Movsxd if n == 2 => {
            let sign = m != M::Movzx;
            match (o0, o1) {
                (O::R(d, ds), O::R(s, ss)) if ds > ss => {
                    op.d = d;
                    op.s = s;
                    match (sign, ss, ds) {
                        (false, 1, 2) => movx_rr::<false, 1, 2>,
                        (false, 1, 4) => movx_rr::<false, 1, 4>,
                        (false, 1, 8) => movx_rr::<false, 1, 8>,
                        (false, 2, 4) => movx_rr::<false, 2, 4>,
                        (false, 2, 8) => movx_rr::<false, 2, 8>,
                        (true, 1, 2) => movx_rr::<true, 1, 2>,
                        (true, 1, 4) => movx_rr::<true, 1, 4>,
                        (true, 1, 8) => movx_rr::<true, 1, 8>,
                        (true, 2, 4) => movx_rr::<true, 2, 4>,
                        (true, 2, 8) => movx_rr::<true, 2, 8>,
                        (true, 4, 8) => movx_rr::<true, 4, 8>,
                        _ => return None,
                    }
                }
                (O::R(d, ds), O::M(ss)) if ds > ss => {
                    op.d = d;
                    match (sign, ss, ds) {
                        (false, 1, 2) => movx_rm::<false, 1, 2>,
                        (false, 1, 4) => movx_rm::<false, 1, 4>,
                        (false, 1, 8) => movx_rm::<false, 1, 8>,
                        (false, 2, 4) => movx_rm::<false, 2, 4>,
                        (false, 2, 8) => movx_rm::<false, 2, 8>,
                        (true, 1, 2) => movx_rm::<true, 1, 2>,
                        (true, 1, 4) => movx_rm::<true, 1, 4>,
                        (true, 1, 8) => movx_rm::<true, 1, 8>,
                        (true, 2, 4) => movx_rm::<true, 2, 4>,
                        (true, 2, 8) => movx_rm::<true, 2, 8>,
                        (true, 4, 8) => movx_rm::<true, 4, 8>,
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        M::Lea if n == 2 => match o0 {
            O::R(d, s0) if s0 >= 2 && ins.op1_kind() == OpKind::Memory && mem(ins, bitness, op) => {
                op.d = d;
                with_size!(s0, S => lea::<S>)
            }
            _ => return None,
        },
        M::Inc | M::Dec if n == 1 => {
            let inc = m == M::Inc;
            match o0 {
                O::R(d, s0) => {
                    op.d = d;
                    if inc {
                        with_size!(s0, S => incdec_r::<true, S>)
                    } else {
                        with_size!(s0, S => incdec_r::<false, S>)
                    }
                }
                O::M(s0) => {
                    if inc {
                        with_size!(s0, S => incdec_m::<true, S>)
                    } else {
                        with_size!(s0, S => incdec_m::<false, S>)
                    }
                }
                _ => return None,
            }
        }
        M::Neg | M::Not if n == 1 => match o0 {
            O::R(d, s0) => {
                op.d = d;
                if m == M::Neg {
                    with_size!(s0, S => neg_r::<S>)
                } else {
                    with_size!(s0, S => not_r::<S>)
                }
            }
            _ => return None,
        },
        M::Shl | M::Sal | M::Shr | M::Sar | M::Rol | M::Ror => {
            let k = match m {
                M::Shl | M::Sal => SHL,
                M::Shr => SHR,
                M::Sar => SAR,
                M::Rol => ROL,
                _ => ROR,
            };
            let O::R(d, s0) = o0 else { return None };
            op.d = d;
            match (n, o1) {
                (1, _) => op.imm = 1,
                (2, O::I(v)) => op.imm = v,
                (2, O::R(1, 1)) => op.s = 1,
                _ => return None,
            }
            match k {
                SHL => with_size!(s0, S => shift_r::<SHL, S>),
                SHR => with_size!(s0, S => shift_r::<SHR, S>),
                SAR => with_size!(s0, S => shift_r::<SAR, S>),
                ROL => with_size!(s0, S => shift_r::<ROL, S>),
                _ => with_size!(s0, S => shift_r::<ROR, S>),
            }
        }
        M::Imul if n >= 2 => {
            let O::R(d, s0) = o0 else { return None };
            if s0 == 1 {
                return None;
            }
            op.d = d;
            if n == 3 {
                let o2 = operand(ins, 2, bitness, op);
                let O::I(v) = o2 else { return None };
                op.imm = v;
            }
            match o1 {
                O::R(s, _) => {
                    op.s = s;
                    if n == 3 {
                        with_size!(s0, S => imul_r::<true, S>)
                    } else {
                        with_size!(s0, S => imul_r::<false, S>)
                    }
                }
                O::M(_) => {
                    if n == 3 {
                        with_size!(s0, S => imul_m::<true, S>)
                    } else {
                        with_size!(s0, S => imul_m::<false, S>)
                    }
                }
                _ => return None,
            }
        }
        M::Sete
        | M::Setne
        | M::Setb
        | M::Setae
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
            let c = cc(ins)?;
            match o0 {
                O::R(d, 1) => {
                    op.d = d;
                    with_cc!(c, C => setcc_r::<C>)
                }
                O::M(1) => with_cc!(c, C => setcc_m::<C>),
                _ => return None,
            }
        }
        M::Cmove
        | M::Cmovne
        | M::Cmovb
        | M::Cmovae
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
            let c = cc(ins)?;
            match (o0, o1) {
                (O::R(d, s0), O::R(s, _)) if s0 >= 2 => {
                    op.d = d;
                    op.s = s;
                    with_cc!(c, C => with_size!(s0, S => cmov_r::<C, S>))
                }
                (O::R(d, s0), O::M(_)) if s0 >= 2 => {
                    op.d = d;
                    with_cc!(c, C => with_size!(s0, S => cmov_m::<C, S>))
                }
                _ => return None,
            }
        }
        _ if ins.is_jcc_short_or_near() => {
            let c = cc(ins)?;
            op.imm = ins.near_branch_target();
            return Some((with_cc!(c, C => jcc::<C>), true));
        }
        M::Jmp => match ins.op0_kind() {
            OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                op.imm = ins.near_branch_target();
                return Some((jmp_rel, true));
            }
            _ => match o0 {
                O::R(d, s0) if s0 >= 2 => {
                    op.d = d;
                    return Some((with_size!(s0, S => jmp_r::<S>), true));
                }
                O::M(s0) if s0 >= 2 => return Some((with_size!(s0, S => jmp_m::<S>), true)),
                _ => return None,
            },
        },
        M::Call => {
            let os = ins.stack_pointer_increment().unsigned_abs();
            if !matches!(os, 2 | 4 | 8) {
                return None;
            }
            let h: Handler = match ins.op0_kind() {
                OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64 => {
                    op.imm = ins.near_branch_target();
                    with_size!(os, S => call_rel::<S>)
                }
                _ => match o0 {
                    O::R(d, s0) if s0 as u32 == os => {
                        op.d = d;
                        with_size!(os, S => call_r::<S>)
                    }
                    O::M(s0) if s0 as u32 == os => with_size!(os, S => call_m::<S>),
                    _ => return None,
                },
            };
            return Some((h, true));
        }
        M::Ret => {
            let imm = if n > 0 { ins.immediate16() as i32 } else { 0 };
            let os = ins.stack_pointer_increment() - imm;
            if !matches!(os, 2 | 4 | 8) {
                return None;
            }
            op.imm = imm as u64;
            return Some((with_size!(os, S => ret::<S>), true));
        }
        M::Push if n == 1 => match o0 {
            O::R(d, s0) if s0 >= 2 => {
                op.d = d;
                with_size!(s0, S => push_r::<S>)
            }
            O::I(v) => {
                let os = ins.stack_pointer_increment().unsigned_abs();
                if !matches!(os, 2 | 4 | 8) {
                    return None;
                }
                op.imm = v;
                with_size!(os, S => push_i::<S>)
            }
            _ => return None,
        },
        M::Pop if n == 1 => match o0 {
            O::R(d, s0) if s0 >= 2 => {
                op.d = d;
                with_size!(s0, S => pop_r::<S>)
            }
            _ => return None,
        },
        M::Nop if !ins.has_lock_prefix() => nop,
        _ => return None,
    };
    Some((h, false))
}
