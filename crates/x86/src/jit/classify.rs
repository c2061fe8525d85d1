//! Which instructions the compiler handles, and their operands: the integer subset (MOV, LEA,
//! ALU operations without carry-in, INC/DEC, NEG/NOT, MOVZX/MOVSX, near jumps, calls and
//! returns, PUSH/POP) in register, immediate and simple memory forms. Everything else ends
//! the compiled part of a block and runs in the interpreter.

use crate::block::{Op, NO_REG};
use crate::compile::{self, O};
use iced_x86::{Instruction, Mnemonic as M, OpKind};

/// ALU operations, as the interpreter's fast handlers number them.
pub(crate) use crate::fast_alu::{ADD, AND, CMP, OR, SUB, TEST, XOR};

/// A value an instruction reads: a register at the instruction's size, an immediate, or its
/// memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Val {
    R(u8),
    I(u64),
    M,
}

/// The memory operand: `disp + base + (index << scale)`, masked to the address size, in
/// segment `seg` (whose base is ignored when `flat`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Mem {
    pub(crate) base: u8,
    pub(crate) index: u8,
    pub(crate) scale: u8,
    pub(crate) disp: u64,
    pub(crate) amask: u64,
    pub(crate) seg: u8,
    pub(crate) flat: bool,
}

/// One instruction the compiler handles.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// ALU operation `k` of size `s`: destination (a register or memory), source.
    Alu {
        k: u8,
        s: u8,
        dst: Val,
        src: Val,
    },
    Mov {
        s: u8,
        dst: Val,
        src: Val,
    },
    /// MOVZX/MOVSX/MOVSXD into register `d`.
    Movx {
        sign: bool,
        ss: u8,
        ds: u8,
        d: u8,
        src: Val,
    },
    Lea {
        s: u8,
        d: u8,
    },
    IncDec {
        inc: bool,
        s: u8,
        dst: Val,
    },
    Neg {
        s: u8,
        d: u8,
    },
    Not {
        s: u8,
        d: u8,
    },
    Jcc {
        cc: u8,
        target: u64,
    },
    /// A direct JMP; `followed` when the block goes on at its target.
    Jmp {
        target: u64,
        followed: bool,
    },
    /// JMP through a register or memory of size `s`.
    JmpInd {
        s: u8,
        src: Val,
    },
    /// A direct CALL pushing `os` bytes.
    Call {
        os: u8,
        target: u64,
        followed: bool,
    },
    CallInd {
        os: u8,
        src: Val,
    },
    /// RET of `os` bytes, releasing `imm` more.
    Ret {
        os: u8,
        imm: u64,
    },
    Push {
        s: u8,
        src: Val,
    },
    Pop {
        s: u8,
        d: u8,
    },
    Nop,
}

/// A classified instruction with its memory operand and the RIP after it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JOp {
    pub(crate) kind: Kind,
    pub(crate) mem: Mem,
    pub(crate) next: u64,
}

impl Kind {
    /// Whether the instruction uses the stack (only compiled for 64-bit code, whose stack
    /// width does not depend on SS).
    pub(crate) fn uses_stack(&self) -> bool {
        matches!(
            self,
            Kind::Call { .. }
                | Kind::CallInd { .. }
                | Kind::Ret { .. }
                | Kind::Push { .. }
                | Kind::Pop { .. }
        )
    }
}

fn val(o: O) -> Option<(Val, u8)> {
    match o {
        O::R(r, s) => Some((Val::R(r), s)),
        O::M(s) => Some((Val::M, s)),
        O::I(v) => Some((Val::I(v), 0)),
        O::X => None,
    }
}

/// The compiled form of `ins` (decoded at `bitness`), whose interpreter op is `op`; None
/// when the compiler leaves it to the interpreter.
pub(crate) fn classify(ins: &Instruction, bitness: u32, op: &Op) -> Option<JOp> {
    if ins.has_lock_prefix() || ins.has_rep_prefix() || ins.has_repne_prefix() {
        return None;
    }
    let mut scratch = compile::compile(ins, bitness, op.next);
    let n = ins.op_count();
    let o0 = if n > 0 { val(compile::operand(ins, 0, bitness, &mut scratch)) } else { None };
    let o1 = if n > 1 { val(compile::operand(ins, 1, bitness, &mut scratch)) } else { None };
    let near = |i: &Instruction| {
        matches!(i.op0_kind(), OpKind::NearBranch16 | OpKind::NearBranch32 | OpKind::NearBranch64)
    };
    let kind = match ins.mnemonic() {
        m @ (M::Add | M::Or | M::And | M::Sub | M::Xor | M::Cmp | M::Test) if n == 2 => {
            let k = match m {
                M::Add => ADD,
                M::Or => OR,
                M::And => AND,
                M::Sub => SUB,
                M::Xor => XOR,
                M::Cmp => CMP,
                _ => TEST,
            };
            let ((dst, s0), (src, s1)) = (o0?, o1?);
            match (dst, src) {
                (Val::R(_), Val::R(_)) | (Val::R(_), Val::M) | (Val::M, Val::R(_)) if s0 == s1 => {}
                (Val::R(_) | Val::M, Val::I(_)) => {}
                _ => return None,
            }
            Kind::Alu { k, s: s0, dst, src }
        }
        M::Mov if n == 2 => {
            let ((dst, s0), (src, s1)) = (o0?, o1?);
            match (dst, src) {
                (Val::R(_), Val::R(_)) | (Val::R(_), Val::M) | (Val::M, Val::R(_)) if s0 == s1 => {}
                (Val::R(_) | Val::M, Val::I(_)) => {}
                _ => return None,
            }
            Kind::Mov { s: s0, dst, src }
        }
        m @ (M::Movzx | M::Movsx | M::Movsxd) if n == 2 => {
            let ((dst, ds), (src, ss)) = (o0?, o1?);
            let Val::R(d) = dst else { return None };
            if !(ds > ss && matches!(ss, 1 | 2 | 4) && matches!(src, Val::R(_) | Val::M)) {
                return None;
            }
            if m == M::Movzx && ss == 4 {
                return None;
            }
            Kind::Movx { sign: m != M::Movzx, ss, ds, d, src }
        }
        M::Lea if n == 2 => {
            let (Val::R(d), s) = o0? else { return None };
            if s < 2 || ins.op1_kind() != OpKind::Memory || !compile::mem(ins, bitness, &mut scratch) {
                return None;
            }
            Kind::Lea { s, d }
        }
        m @ (M::Inc | M::Dec) if n == 1 => {
            let (dst, s) = o0?;
            if matches!(dst, Val::I(_)) {
                return None;
            }
            Kind::IncDec { inc: m == M::Inc, s, dst }
        }
        m @ (M::Neg | M::Not) if n == 1 => {
            let (Val::R(d), s) = o0? else { return None };
            if m == M::Neg {
                Kind::Neg { s, d }
            } else {
                Kind::Not { s, d }
            }
        }
        _ if ins.is_jcc_short_or_near() => {
            Kind::Jcc { cc: compile::cc(ins)?, target: ins.near_branch_target() }
        }
        M::Jmp if near(ins) => Kind::Jmp { target: ins.near_branch_target(), followed: !op.link },
        M::Jmp => {
            let (src, s) = o0?;
            if s < 2 || matches!(src, Val::I(_)) {
                return None;
            }
            Kind::JmpInd { s, src }
        }
        M::Call => {
            let os = ins.stack_pointer_increment().unsigned_abs();
            if !matches!(os, 2 | 4 | 8) {
                return None;
            }
            if near(ins) {
                Kind::Call { os: os as u8, target: ins.near_branch_target(), followed: !op.link }
            } else {
                let (src, s) = o0?;
                if s as u32 != os || matches!(src, Val::I(_)) {
                    return None;
                }
                Kind::CallInd { os: os as u8, src }
            }
        }
        M::Ret => {
            let imm = if n > 0 { ins.immediate16() as i32 } else { 0 };
            let os = ins.stack_pointer_increment() - imm;
            if !matches!(os, 2 | 4 | 8) {
                return None;
            }
            Kind::Ret { os: os as u8, imm: imm as u64 }
        }
        M::Push if n == 1 => match o0? {
            (Val::R(r), s) if s >= 2 => Kind::Push { s, src: Val::R(r) },
            (Val::I(v), _) => {
                let os = ins.stack_pointer_increment().unsigned_abs();
                if !matches!(os, 2 | 4 | 8) {
                    return None;
                }
                Kind::Push { s: os as u8, src: Val::I(v) }
            }
            _ => return None,
        },
        M::Pop if n == 1 => match o0? {
            (Val::R(d), s) if s >= 2 => Kind::Pop { s, d },
            _ => return None,
        },
        M::Nop => Kind::Nop,
        _ => return None,
    };
    if kind.uses_stack() && bitness != 64 {
        return None;
    }
    let mem = Mem {
        base: scratch.base,
        index: scratch.index,
        scale: scratch.scale,
        disp: scratch.disp,
        amask: scratch.amask,
        seg: scratch.seg,
        flat: scratch.flat,
    };
    if mem.base > NO_REG || mem.index > NO_REG || mem.seg > 5 {
        return None;
    }
    Some(JOp { kind, mem, next: op.next })
}
