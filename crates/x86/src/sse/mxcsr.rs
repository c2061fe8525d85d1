//! MXCSR: LDMXCSR/STMXCSR and turning an operation's exception flags into MXCSR bits or
//! a SIMD floating-point exception.

use super::softfloat::Env;
use crate::cpu::*;
use iced_x86::{Instruction, Mnemonic as M};

/// CR4.OSXMMEXCPT: the OS handles #XM (else unmasked SIMD exceptions raise #UD).
pub(crate) const CR4_OSXMMEXCPT: u64 = 1 << 10;
/// The SIMD floating-point exception vector.
pub(crate) const XM: u8 = 19;

impl Cpu {
    pub(super) fn ldst_mxcsr(&mut self, ins: &Instruction) -> R<()> {
        if ins.mnemonic() == M::Stmxcsr {
            let v = self.fpu.mxcsr as u64;
            return self.wr(ins, 0, v);
        }
        let v = self.rd(ins, 0)? as u32;
        if v & !0xffff != 0 {
            return Err(gp(0));
        }
        self.fpu.mxcsr = v;
        Ok(())
    }

    /// The rounding state for an SSE floating-point instruction.
    #[inline]
    pub(crate) fn fp_env(&self) -> Env {
        Env::from_mxcsr(self.fpu.mxcsr)
    }

    /// Records an instruction's exception flags in MXCSR (see `Env::end_stage`). An
    /// unmasked one raises #XM (#UD without CR4.OSXMMEXCPT) and the caller leaves the
    /// destination unchanged.
    #[inline]
    pub(crate) fn fp_commit(&mut self, env: &Env) -> R<()> {
        let mut env = *env;
        env.end_stage();
        self.fpu.mxcsr |= env.done;
        if env.fault {
            return Err(if self.cr4 & CR4_OSXMMEXCPT != 0 { Fault::Exc(XM, None) } else { ud() });
        }
        Ok(())
    }
}
