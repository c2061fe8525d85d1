//! Operand access for decoded instructions: registers, memory, immediates.

use crate::cpu::{Cpu, R};
use iced_x86::{Instruction, OpKind, Register};

/// A general-purpose register: (index, size in bytes, is AH/CH/DH/BH).
#[inline]
pub fn gpr(r: Register) -> (usize, u8, bool) {
    let n = r as usize;
    match n {
        1..=4 => (n - 1, 1, false),
        5..=8 => (n - 5, 1, true),
        9..=20 => (n - 9 + 4, 1, false),
        21..=36 => (n - 21, 2, false),
        37..=52 => (n - 37, 4, false),
        53..=68 => (n - 53, 8, false),
        _ => (0, 0, false),
    }
}

/// The segment of a memory operand: in 64-bit mode CS, DS, ES and SS overrides are ignored
/// (a non-canonical address through RSP or RBP raises #SS, any other #GP, whatever the
/// prefix), so the default segment stands unless the override is FS or GS.
#[inline]
pub fn mem_segment(ins: &Instruction, bitness: u32) -> usize {
    let s = seg_index(ins.memory_segment());
    if bitness == 64 && s < 4 {
        match ins.memory_base() {
            Register::RSP | Register::RBP => 2,
            _ => 3,
        }
    } else {
        s
    }
}

/// The segment register index (ES=0 ... GS=5) of `r`.
#[inline]
pub fn seg_index(r: Register) -> usize {
    (r as usize).wrapping_sub(Register::ES as usize).min(5)
}

impl Cpu {
    /// The size in bytes of operand `i`.
    #[inline]
    pub fn op_size(&self, ins: &Instruction, i: u32) -> u8 {
        match ins.op_kind(i) {
            OpKind::Register => ins.op_register(i).size() as u8,
            OpKind::Immediate8 | OpKind::Immediate8_2nd => 1,
            OpKind::Immediate16 | OpKind::Immediate8to16 => 2,
            OpKind::Immediate32 | OpKind::Immediate8to32 => 4,
            OpKind::Immediate64 | OpKind::Immediate8to64 | OpKind::Immediate32to64 => 8,
            _ => ins.memory_size().size() as u8,
        }
    }

    /// The address size (2, 4 or 8) of the memory operand.
    #[inline]
    pub fn addr_size(&self, ins: &Instruction) -> u8 {
        let b = ins.memory_base();
        let x = ins.memory_index();
        let r = if b != Register::None { b } else { x };
        match r {
            Register::EIP => 4,
            Register::RIP => 8,
            Register::None => match ins.memory_displ_size() {
                2 => 2,
                4 => 4,
                8 => 8,
                _ => (self.bitness / 8) as u8,
            },
            r => r.size() as u8,
        }
    }

    /// The effective address (offset within the segment) of the memory operand.
    #[inline]
    pub fn ea(&self, ins: &Instruction) -> u64 {
        let mut a = ins.memory_displacement64();
        let b = ins.memory_base();
        match b {
            Register::None | Register::RIP | Register::EIP => {}
            _ => a = a.wrapping_add(self.regs[gpr(b).0]),
        }
        let x = ins.memory_index();
        if x != Register::None {
            a = a.wrapping_add(self.regs[gpr(x).0] << ins.memory_index_scale().trailing_zeros());
        }
        match self.addr_size(ins) {
            2 => a & 0xffff,
            4 => a & 0xffff_ffff,
            _ => a,
        }
    }

    #[inline]
    pub fn mem_seg(&self, ins: &Instruction) -> usize {
        mem_segment(ins, self.bitness)
    }

    #[inline]
    pub fn get_reg(&self, r: Register) -> u64 {
        let (i, size, high) = gpr(r);
        if high {
            (self.regs[i] >> 8) & 0xff
        } else {
            self.reg(i, size)
        }
    }

    #[inline]
    pub fn put_reg(&mut self, r: Register, v: u64) {
        let (i, size, high) = gpr(r);
        if high {
            self.regs[i] = (self.regs[i] & !0xff00) | ((v & 0xff) << 8);
        } else {
            self.set_reg(i, size, v);
        }
    }

    /// Reads operand `i` (zero-extended).
    #[inline]
    pub fn rd(&mut self, ins: &Instruction, i: u32) -> R<u64> {
        match ins.op_kind(i) {
            OpKind::Register => Ok(self.get_reg(ins.op_register(i))),
            OpKind::Memory => {
                let size = ins.memory_size().size();
                let seg = self.mem_seg(ins);
                let ea = self.ea(ins);
                self.read(seg, ea, size)
            }
            OpKind::Immediate8 => Ok(ins.immediate8() as u64),
            OpKind::Immediate8_2nd => Ok(ins.immediate8_2nd() as u64),
            OpKind::Immediate16 => Ok(ins.immediate16() as u64),
            OpKind::Immediate32 => Ok(ins.immediate32() as u64),
            OpKind::Immediate64 => Ok(ins.immediate64()),
            OpKind::Immediate8to16 => Ok(ins.immediate8to16() as u16 as u64),
            OpKind::Immediate8to32 => Ok(ins.immediate8to32() as u32 as u64),
            OpKind::Immediate8to64 => Ok(ins.immediate8to64() as u64),
            OpKind::Immediate32to64 => Ok(ins.immediate32to64() as u64),
            _ => Ok(0),
        }
    }

    /// Reads operand `i`, the destination of a read-modify-write instruction: a memory
    /// operand is translated for writing (`Cpu::read_rmw`).
    #[inline]
    pub fn rd_rmw(&mut self, ins: &Instruction, i: u32) -> R<u64> {
        match ins.op_kind(i) {
            OpKind::Memory => {
                let size = ins.memory_size().size();
                let seg = self.mem_seg(ins);
                let ea = self.ea(ins);
                self.read_rmw(seg, ea, size)
            }
            _ => self.rd(ins, i),
        }
    }

    /// Writes operand `i`.
    #[inline]
    pub fn wr(&mut self, ins: &Instruction, i: u32, v: u64) -> R<()> {
        match ins.op_kind(i) {
            OpKind::Register => {
                self.put_reg(ins.op_register(i), v);
                Ok(())
            }
            OpKind::Memory => {
                let size = ins.memory_size().size();
                let seg = self.mem_seg(ins);
                let ea = self.ea(ins);
                self.write(seg, ea, size, v)
            }
            _ => Ok(()),
        }
    }
}
