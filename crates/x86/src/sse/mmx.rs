//! MMX state: the checks and the x87 side effects of MMX instructions, EMMS, the MMX/XMM
//! transfers and the byte-masked stores.

use crate::cpu::*;
use iced_x86::{Instruction, Mnemonic as M, OpKind};

/// The x87 math-fault vector.
const MF: u8 = 16;
/// FSW.ES: an unmasked x87 exception is pending.
pub(crate) const FSW_ES: u16 = 0x80;
/// CR0.NE: pending x87 exceptions are raised as #MF (else through FERR#, not modelled).
const CR0_NE: u64 = 1 << 5;

impl Cpu {
    /// #UD with CR0.EM, #NM with CR0.TS, #MF while an unmasked x87 exception is pending
    /// (FSW.ES) and CR0.NE is set, as the x87 unit's waiting instructions do.
    pub(super) fn mmx_check(&self) -> R<()> {
        if self.cr0 & CR0_EM != 0 {
            return Err(ud());
        }
        if self.cr0 & CR0_TS != 0 {
            return Err(Fault::Exc(NM, None));
        }
        if self.fpu.fsw & FSW_ES != 0 && self.cr0 & CR0_NE != 0 {
            return Err(Fault::Exc(MF, None));
        }
        Ok(())
    }

    /// Every MMX instruction but EMMS: TOP becomes 0 and all registers are tagged valid.
    pub(super) fn mmx_enter(&mut self) {
        self.fpu.top = 0;
        self.fpu.ftw = 0xff;
    }

    pub(super) fn simd_mmx(&mut self, ins: &Instruction) -> R<bool> {
        match ins.mnemonic() {
            M::Movq2dq => {
                let v = self.vread(ins, 1)? as u64 as u128;
                self.vwrite(ins, 0, v)?;
            }
            M::Movdq2q => {
                let v = self.vread(ins, 1)? as u64 as u128;
                self.vwrite(ins, 0, v)?;
            }
            M::Maskmovq | M::Maskmovdqu => self.maskmov(ins)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// MASKMOVQ/MASKMOVDQU: the bytes of operand 1 whose mask byte (operand 2) has its top
    /// bit set are stored at DS:rDI.
    fn maskmov(&mut self, ins: &Instruction) -> R<()> {
        let (d, s) = (self.vop(ins, 1), self.vop(ins, 2));
        let data = self.vget(d).to_le_bytes();
        let mask = self.vget(s).to_le_bytes();
        let width = d.width();
        let (asize, di) = match ins.op0_kind() {
            OpKind::MemorySegDI => (2u8, 7usize),
            OpKind::MemorySegEDI => (4, 7),
            _ => (8, 7),
        };
        let seg = self.mem_seg(ins);
        let base = self.reg(di, asize);
        let lin = self.lin(seg, base);
        // As the host CPU does (the architecture leaves it open): each 8-byte half is checked
        // for writing in turn, whatever the mask (#GP if it leaves the canonical range).
        let stack = |f| if seg == SS { on_stack(f) } else { f };
        for half in (0..width).step_by(8) {
            self.probe_write(lin.wrapping_add(half as u64), 8).map_err(stack)?;
        }
        for i in 0..width {
            if mask[i] & 0x80 != 0 {
                let off = match asize {
                    2 => base.wrapping_add(i as u64) & 0xffff,
                    4 => base.wrapping_add(i as u64) & 0xffff_ffff,
                    _ => base.wrapping_add(i as u64),
                };
                self.write(seg, off, 1, data[i] as u64)?;
            }
        }
        Ok(())
    }
}
